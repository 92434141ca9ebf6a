package bench

import (
	"fmt"
	"image/color"
	"io"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// PlotFormat returns the image format for a plot file name by its
// extension: "svg" or "png".
func PlotFormat(name string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".svg", ".png":
		return ext[1:], nil
	default:
		return "", fmt.Errorf("%q: want a .svg or .png file name", name)
	}
}

// Panel sizes.
const (
	panelWidth  = 5.5 * vg.Inch
	panelHeight = 4 * vg.Inch
)

// Plot draws the report to w in the format named's extension asks for (see
// PlotFormat). The top row has one panel per mode, side by side on one
// scale: the requests each backend served, split by the gateways they came
// from (the most populous by name, the others together), with the mean as
// a dashed line. With --fail a second row follows: requests per second of
// each backend over the run, with each kill and recovery marked.
func (r *Report) Plot(w io.Writer, name string) error {
	format, err := PlotFormat(name)
	if err != nil {
		return err
	}
	if len(r.Runs) == 0 {
		return fmt.Errorf("the report has no run to plot")
	}
	rows := 1
	if r.hasEvents() {
		rows = 2
	}
	cols := len(r.Runs)
	width, height := vg.Length(cols)*panelWidth, vg.Length(rows)*panelHeight

	var panels [][]*plot.Plot
	loads, err := r.loadPlots()
	if err != nil {
		return err
	}
	panels = append(panels, loads)
	if rows == 2 {
		times, err := r.timelinePlots()
		if err != nil {
			return err
		}
		panels = append(panels, times)
	}

	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	switch format {
	case "svg":
		c := vgsvg.New(width, height)
		drawPanels(draw.New(c), tiles, panels)
		_, err = c.WriteTo(w)
	default:
		c := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
		drawPanels(draw.New(c), tiles, panels)
		_, err = vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	}
	return err
}

func drawPanels(dc draw.Canvas, tiles draw.Tiles, panels [][]*plot.Plot) {
	for y, row := range panels {
		for x, p := range row {
			p.Draw(tiles.At(dc, x, y))
		}
	}
}

// Colours: gateways in the load panels, backends in the time panels.
var (
	gatewayColors = []color.Color{
		color.RGBA{0xd6, 0x27, 0x28, 0xff}, // red: the biggest NAT
		color.RGBA{0xff, 0x7f, 0x0e, 0xff},
		color.RGBA{0xbc, 0xbd, 0x22, 0xff},
		color.RGBA{0x94, 0x67, 0xbd, 0xff},
		color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	}
	otherColor    = color.RGBA{0x9e, 0xc5, 0xe8, 0xff}
	backendColors = []color.Color{
		color.RGBA{0x1f, 0x77, 0xb4, 0xff},
		color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
		color.RGBA{0xe3, 0x77, 0xc2, 0xff},
		color.RGBA{0x17, 0xbe, 0xcf, 0xff},
		color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
		color.RGBA{0xbc, 0xbd, 0x22, 0xff},
		color.RGBA{0x8c, 0x56, 0x4b, 0xff},
		color.RGBA{0x94, 0x67, 0xbd, 0xff},
	}
	killColor    = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	recoverColor = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
)

// hasEvents reports whether the scenario failed a backend or any run
// marks an event on its timeline: then the plot shows the timelines.
func (r *Report) hasEvents() bool {
	if len(r.Scenario.Failures) > 0 {
		return true
	}
	for _, run := range r.Runs {
		if len(run.Timeline.Events) > 0 {
			return true
		}
	}
	return false
}

// eventMark is how the timeline marks an event: its colour and label.
func eventMark(e TimelineEvent) (color.Color, string) {
	switch e.Event {
	case "--fail":
		return killColor, e.Backend + " killed"
	case "--recover":
		return recoverColor, e.Backend + " back"
	case "--add":
		return recoverColor, e.Backend + " added"
	case "--drain", "--maint", "--ready":
		return color.RGBA{0xff, 0x7f, 0x0e, 0xff}, e.Backend + " " + e.Event[2:]
	}
	return color.Black, strings.TrimSuffix(e.Event[2:], "@")
}

// loadPlots draws, per mode, the requests each backend served stacked by
// gateway.
func (r *Report) loadPlots() ([]*plot.Plot, error) {
	top := r.Scenario.TopGateways
	ymax := 0.0
	for _, run := range r.Runs {
		for _, b := range run.Backends {
			ymax = max(ymax, float64(b.Requests))
		}
	}
	var plots []*plot.Plot
	for ri, run := range r.Runs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: requests per backend, max/mean %.2f", modeTitle(run.Mode), run.MaxOverMean)
		p.Y.Label.Text = "requests served"
		p.Y.Min, p.Y.Max = 0, ymax*1.45
		names := make([]string, len(run.Backends))
		for i, b := range run.Backends {
			names[i] = b.ID
		}
		p.NominalX(names...)

		// One stacked layer per top gateway, then the rest.
		var below *plotter.BarChart
		layer := func(values plotter.Values, c color.Color, label string) error {
			bars, err := plotter.NewBarChart(values, vg.Points(28))
			if err != nil {
				return err
			}
			bars.Color = c
			bars.LineStyle.Width = 0
			if below != nil {
				bars.StackOn(below)
			}
			below = bars
			p.Add(bars)
			if ri == 0 {
				p.Legend.Add(label, bars)
			}
			return nil
		}
		for gi, g := range top {
			vals := make(plotter.Values, len(run.Backends))
			for i, b := range run.Backends {
				if gi < len(b.TopGatewayRequests) {
					vals[i] = float64(b.TopGatewayRequests[gi])
				}
			}
			if err := layer(vals, gatewayColors[gi%len(gatewayColors)],
				fmt.Sprintf("gateway %s (%.0f%% of users)", g.Addr, 100*g.Share)); err != nil {
				return nil, err
			}
		}
		rest := make(plotter.Values, len(run.Backends))
		for i, b := range run.Backends {
			rest[i] = float64(b.Requests)
			for _, n := range b.TopGatewayRequests {
				rest[i] -= float64(n)
			}
		}
		if err := layer(rest, otherColor, "other gateways"); err != nil {
			return nil, err
		}

		mean := float64(run.ServedRequests) / float64(max(len(run.Backends), 1))
		line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: mean}, {X: float64(len(run.Backends)) - 0.5, Y: mean}})
		if err != nil {
			return nil, err
		}
		line.Color = color.Black
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
		if ri == 0 {
			p.Legend.Add("mean", line)
		}
		p.Legend.Top = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		plots = append(plots, p)
	}
	return plots, nil
}

// timelinePlots draws, per mode, each backend's requests per second over
// the run with its events marked: kills, recoveries, added backends, admin
// states, reloads and restarts.
func (r *Report) timelinePlots() ([]*plot.Plot, error) {
	ymax := 0.0
	for _, run := range r.Runs {
		per := run.Timeline.BucketMS / 1000
		for _, s := range run.Timeline.Backends {
			for _, n := range s.Requests {
				ymax = max(ymax, float64(n)/per)
			}
		}
	}
	var plots []*plot.Plot
	for _, run := range r.Runs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: requests/s per backend", modeTitle(run.Mode))
		p.X.Label.Text = "seconds into the run"
		p.Y.Label.Text = "requests/s"
		p.Y.Min, p.Y.Max = 0, ymax*1.4
		per := run.Timeline.BucketMS / 1000
		for bi, s := range run.Timeline.Backends {
			xys := make(plotter.XYs, 0, len(s.Requests))
			for i, n := range s.Requests {
				// The last bucket is cut short by the end of the run: rate
				// it over what it covers, or leave it out when that is
				// too little to say anything.
				width := min(per, run.DurationMS/1000-float64(i)*per)
				if width < per/2 {
					continue
				}
				xys = append(xys, plotter.XY{X: float64(i)*per + width/2, Y: float64(n) / width})
			}
			line, err := plotter.NewLine(xys)
			if err != nil {
				return nil, err
			}
			line.Color = backendColors[bi%len(backendColors)]
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(s.ID, line)
		}
		mark := func(atMS float64, c color.Color, label string) error {
			x := atMS / 1000
			line, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax * 1.4}})
			if err != nil {
				return err
			}
			line.Color = c
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(line)
			p.Legend.Add(label, line)
			return nil
		}
		events := run.Timeline.Events
		if events == nil {
			// A report from before the timeline kept its events.
			for _, f := range run.Failovers {
				events = append(events, TimelineEvent{Event: "--fail", Backend: f.Backend, AtMS: f.AtMS})
			}
			for _, e := range r.Scenario.Recoveries {
				if e.AtMS <= run.DurationMS {
					events = append(events, TimelineEvent{Event: "--recover", Backend: e.Backend, AtMS: e.AtMS})
				}
			}
		}
		for _, e := range events {
			c, label := eventMark(e)
			if err := mark(e.AtMS, c, label); err != nil {
				return nil, err
			}
		}
		p.Legend.Top = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		plots = append(plots, p)
	}
	return plots, nil
}
