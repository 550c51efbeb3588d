// Package chart draws bench results with gonum/plot: per run, throughput
// and latency percentiles over the measured window; per comparison, bars
// of ops/s and p99 across targets beside their series. It only renders:
// the numbers come from package bench.
package chart

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/bursar/bursar/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Formats are the file formats Run and Compare write.
var Formats = []string{"png", "svg"}

// Figure sizes. 96 dpi PNGs of these sizes are about 1100 × 850 pixels.
const (
	runWidth      = 11 * vg.Inch
	runHeight     = 8.5 * vg.Inch
	compareWidth  = 13 * vg.Inch
	compareHeight = 9 * vg.Inch
)

func checkFormat(format string) error {
	for _, f := range Formats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("chart: format must be png or svg, got %q", format)
}

// Run writes one run's chart to dir as <label>-<workload>.<format> and
// returns its path: throughput (correct answers and errors per second)
// above, latency p50 and p99 per second below.
func Run(dir, format string, r *bench.Result) (string, error) {
	if err := checkFormat(format); err != nil {
		return "", err
	}
	top := plot.New()
	top.Title.Text = fmt.Sprintf("%s · %s: %s ops/s, %d errors, %s", r.Label, r.Workload, humanRate(r.OpsPerSec), r.ErrorsTotal, loopText(r))
	top.X.Label.Text = "second of the measured window"
	top.Y.Label.Text = "answers per second"
	top.Y.Min = 0
	ops, errs := make(plotter.XYs, len(r.Series)), make(plotter.XYs, len(r.Series))
	for i, s := range r.Series {
		ops[i] = plotter.XY{X: float64(s.Second), Y: s.OpsPerSec}
		errs[i] = plotter.XY{X: float64(s.Second), Y: perSecond(s.Errors, s, r.DurationSeconds)}
	}
	if err := addLine(top, "correct (success + expected refusal)", ops, 0); err != nil {
		return "", err
	}
	if r.ErrorsTotal > 0 {
		if err := addLine(top, "errors", errs, 3); err != nil {
			return "", err
		}
	}
	top.Legend.Top = true
	headroom(top, ops, errs)

	bottom := plot.New()
	bottom.Title.Text = fmt.Sprintf("latency per second (overall p50 %s, p99 %s, max %s)",
		ms(r.Latency.P50Us), ms(r.Latency.P99Us), ms(r.Latency.MaxUs))
	bottom.X.Label.Text = "second of the measured window"
	bottom.Y.Label.Text = "latency (ms)"
	bottom.Y.Min = 0
	p50, p99 := latencyXYs(r.Series, func(s bench.Second) int64 { return s.P50Us }), latencyXYs(r.Series, func(s bench.Second) int64 { return s.P99Us })
	if err := addLine(bottom, "p50", p50, 1); err != nil {
		return "", err
	}
	if err := addLine(bottom, "p99", p99, 2); err != nil {
		return "", err
	}
	bottom.Legend.Top = true
	headroom(bottom, p50, p99)

	path := filepath.Join(dir, r.Label+"-"+r.Workload+"."+format)
	return path, save(path, format, runWidth, runHeight, [][]*plot.Plot{{top}, {bottom}})
}

// Compare writes a comparison's chart to dir as compare-<workload>.<format>
// and returns its path: bars of ops/s and of p99 per target above, the
// targets' throughput and p99 over time below.
func Compare(dir, format string, c *bench.Comparison) (string, error) {
	if err := checkFormat(format); err != nil {
		return "", err
	}
	if len(c.Runs) == 0 {
		return "", errors.New("chart: a comparison without runs")
	}
	labels := make([]string, len(c.Runs))
	for i, r := range c.Runs {
		labels[i] = r.Label
	}
	ratioText := func(v float64, what string) string {
		if v == 0 || len(c.Runs) < 2 {
			return ""
		}
		return fmt.Sprintf(" (%s / %s = %s×%s)", labels[0], labels[1], strconv.FormatFloat(v, 'f', -1, 64), what)
	}

	opsBars, err := bars(c.Runs, labels, "completed ops/s"+ratioText(c.OpsPerSecRatio, ""), "ops/s",
		func(r *bench.Result) float64 { return r.OpsPerSec }, humanRate)
	if err != nil {
		return "", err
	}
	p99Bars, err := bars(c.Runs, labels, "p99 latency"+ratioText(c.P99Ratio, ", lower is better"), "ms",
		func(r *bench.Result) float64 { return float64(r.Latency.P99Us) / 1000 }, func(v float64) string { return ms(int64(v * 1000)) })
	if err != nil {
		return "", err
	}

	thr := plot.New()
	thr.Title.Text = c.Workload + ": throughput over time"
	thr.X.Label.Text = "second of the measured window"
	thr.Y.Label.Text = "ops/s"
	thr.Y.Min = 0
	lat := plot.New()
	lat.Title.Text = c.Workload + ": p99 over time (log scale)"
	lat.X.Label.Text = "second of the measured window"
	lat.Y.Label.Text = "p99 (ms)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = logTicks{}
	anyLatency := false
	var thrAll, latAll []plotter.XYs
	for i, r := range c.Runs {
		xy := make(plotter.XYs, len(r.Series))
		for j, s := range r.Series {
			xy[j] = plotter.XY{X: float64(s.Second), Y: s.OpsPerSec}
		}
		if err := addLine(thr, r.Label, xy, i); err != nil {
			return "", err
		}
		thrAll = append(thrAll, xy)
		// A log axis cannot show zero: seconds without an answer are gaps.
		p99 := latencyXYs(r.Series, func(s bench.Second) int64 { return s.P99Us })
		pos := p99[:0:0]
		for _, p := range p99 {
			if p.Y > 0 {
				pos = append(pos, p)
			}
		}
		if len(pos) > 0 {
			anyLatency = true
			latAll = append(latAll, pos)
			if err := addLine(lat, r.Label, pos, i); err != nil {
				return "", err
			}
		}
	}
	thr.Legend.Top, lat.Legend.Top = true, true
	headroom(thr, thrAll...)
	if anyLatency {
		// On a log axis, room for the legend is a factor.
		lo, hi := math.Inf(1), 0.0
		for _, xy := range latAll {
			for _, p := range xy {
				lo, hi = math.Min(lo, p.Y), math.Max(hi, p.Y)
			}
		}
		lat.Y.Min, lat.Y.Max = lo/1.5, hi*3
	} else {
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
	}

	path := filepath.Join(dir, "compare-"+c.Workload+"."+format)
	return path, save(path, format, compareWidth, compareHeight, [][]*plot.Plot{{opsBars, p99Bars}, {thr, lat}})
}

// bars is one bar per run, each in its run's color and labelled with its
// value.
func bars(runs []*bench.Result, labels []string, title, unit string, value func(*bench.Result) float64, text func(float64) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Min = 0
	var tops plotter.XYs
	var texts []string
	top := 0.0
	for i, r := range runs {
		v := value(r)
		b, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(60))
		if err != nil {
			return nil, err
		}
		b.XMin = float64(i)
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		p.Add(b)
		tops = append(tops, plotter.XY{X: float64(i), Y: v})
		texts = append(texts, text(v))
		top = math.Max(top, v)
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: tops, Labels: texts})
	if err != nil {
		return nil, err
	}
	for i := range lbl.TextStyle {
		lbl.TextStyle[i].XAlign = draw.XCenter
	}
	lbl.Offset = vg.Point{Y: vg.Points(4)}
	p.Add(lbl)
	// Room above the tallest bar for its label.
	p.Y.Max = top * 1.15
	if top == 0 {
		p.Y.Max = 1
	}
	p.NominalX(labels...)
	return p, nil
}

// headroom sets the Y range from zero to a quarter above the highest
// point, so that the legend in the top corner does not cover the lines.
func headroom(p *plot.Plot, series ...plotter.XYs) {
	top := 0.0
	for _, xy := range series {
		for _, pt := range xy {
			top = math.Max(top, pt.Y)
		}
	}
	if top == 0 {
		top = 1
	}
	p.Y.Min, p.Y.Max = 0, top*1.25
}

// logTicks marks a log axis at 1, 2 and 5 times each power of ten, with
// labels, and at the other integers times a power of ten without: the
// latencies compared often lie within one or two decades, where powers of
// ten alone leave the axis almost bare.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			out = append(out, t)
		}
	}
	return out
}

func addLine(p *plot.Plot, name string, xy plotter.XYs, colorIndex int) error {
	if len(xy) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("chart: %s: %w", name, err)
	}
	l.Color = plotutil.Color(colorIndex)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// latencyXYs is a latency series in milliseconds; seconds without a
// correct answer have no point.
func latencyXYs(series []bench.Second, v func(bench.Second) int64) plotter.XYs {
	out := make(plotter.XYs, 0, len(series))
	for _, s := range series {
		if s.Ops == 0 {
			continue
		}
		out = append(out, plotter.XY{X: float64(s.Second), Y: float64(v(s)) / 1000})
	}
	return out
}

// perSecond is n answers of second s as a rate, the last second of the
// window possibly partial as in bench.Second.OpsPerSec.
func perSecond(n int64, s bench.Second, windowSeconds float64) float64 {
	span := math.Min(1, windowSeconds-float64(s.Second))
	if span <= 0 {
		return 0
	}
	return float64(n) / span
}

func loopText(r *bench.Result) string {
	if r.Mode == "open" {
		return fmt.Sprintf("open loop at %s/s", humanRate(r.RateTarget))
	}
	return fmt.Sprintf("closed loop, %d workers", r.Concurrency)
}

func humanRate(v float64) string {
	switch {
	case v >= 10_000:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func ms(us int64) string {
	switch {
	case us >= 100_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 0, 64) + " ms"
	case us >= 1000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) + " ms"
}

// save draws the plots in a grid (rows of columns) on one canvas and
// writes it.
func save(path, format string, w, h vg.Length, plots [][]*plot.Plot) (err error) {
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	// A white background: PNGs are otherwise transparent, which viewers
	// with dark themes show as black.
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{
		Rows: len(plots), Cols: len(plots[0]),
		PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3,
	}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("chart: %w", cerr)
		}
	}()
	if _, err := c.WriteTo(f); err != nil {
		return fmt.Errorf("chart: write %s: %w", path, err)
	}
	return nil
}
