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

// TestPlotMarksEvents draws a report whose only events are lifecycle ones:
// the timelines appear, each event marked and named.
func TestPlotMarksEvents(t *testing.T) {
	rep := sampleReport()
	rep.Scenario.Failures, rep.Scenario.Recoveries = nil, nil
	for i := range rep.Runs {
		rep.Runs[i].Failovers = nil
		rep.Runs[i].Timeline.Events = []TimelineEvent{
			{Event: "--add", Backend: "app-05", AtMS: 1000},
			{Event: "--drain", Backend: "app-01", AtMS: 1500},
			{Event: "--restart@", AtMS: 2500},
		}
	}
	var svg bytes.Buffer
	if err := rep.Plot(&svg, "report.svg"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app-05 added", "app-01 drain", "restart", "requests/s per backend"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}
