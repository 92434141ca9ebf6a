package bench

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

func TestPlotWritesSVGAndPNG(t *testing.T) {
	for _, withFailure := range []bool{false, true} {
		rep := sampleReport()
		rows := 2
		if !withFailure {
			rep.Scenario.Failures, rep.Scenario.Recoveries = nil, nil
			rows = 1
		}
		var svg bytes.Buffer
		if err := rep.Plot(&svg, "report.svg"); err != nil {
			t.Fatal(err)
		}
		if s := svg.String(); svg.Len() < 5000 || !strings.Contains(s, "<svg") || !strings.Contains(s, "app-01") {
			t.Errorf("svg: %d bytes, want a drawing of the backends", svg.Len())
		}
		var pic bytes.Buffer
		if err := rep.Plot(&pic, "REPORT.PNG"); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&pic)
		if err != nil {
			t.Fatalf("png does not decode: %v", err)
		}
		// Two columns (modes) of 5.5in, rows of 4in, at 110 dpi.
		if b := img.Bounds(); b.Dx() != 2*605 || b.Dy() != rows*440 {
			t.Errorf("png is %dx%d, want %dx%d", b.Dx(), b.Dy(), 2*605, rows*440)
		}
	}
}

func TestPlotFormat(t *testing.T) {
	for name, want := range map[string]string{"a.svg": "svg", "b/c.PNG": "png"} {
		if got, err := PlotFormat(name); got != want || err != nil {
			t.Errorf("PlotFormat(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, bad := range []string{"a.jpg", "svg", ""} {
		if _, err := PlotFormat(bad); err == nil {
			t.Errorf("PlotFormat(%q) succeeded", bad)
		}
	}
	if err := (&Report{}).Plot(&bytes.Buffer{}, "a.svg"); err == nil {
		t.Error("plotting an empty report succeeded")
	}
}
