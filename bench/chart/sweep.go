package chart

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"

	"github.com/bursar/bursar/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Sweep figure size: two panels side by side.
const (
	sweepWidth  = 14 * vg.Inch
	sweepHeight = 6.5 * vg.Inch
)

// Sweep writes a sweep's chart to dir as sweep-<workload>.<format> and
// returns its path: throughput against clients on the left, p99 against
// clients on the right, Bursar and the baseline's best pool (labelled
// with its size) on each; clients on a log scale.
func Sweep(dir, format string, s *bench.Sweep) (string, error) {
	if err := checkFormat(format); err != nil {
		return "", err
	}
	if len(s.Points) == 0 {
		return "", errors.New("chart: a sweep without points")
	}
	ticks := make([]plot.Tick, 0, len(s.Points))
	var thrB, thrBase, p99B, p99Base plotter.XYs
	var pools []string
	for _, p := range s.Points {
		x := float64(p.Clients)
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.Itoa(p.Clients)})
		if b := p.Bursar; b != nil {
			thrB = append(thrB, plotter.XY{X: x, Y: b.OpsPerSec})
			if b.P99Us > 0 {
				p99B = append(p99B, plotter.XY{X: x, Y: float64(b.P99Us) / 1000})
			}
		}
		if b := p.Baseline; b != nil {
			thrBase = append(thrBase, plotter.XY{X: x, Y: b.OpsPerSec})
			pools = append(pools, fmt.Sprintf("pool %d", b.Pool))
			if b.P99Us > 0 {
				p99Base = append(p99Base, plotter.XY{X: x, Y: float64(b.P99Us) / 1000})
			}
		}
	}
	clientsAxis := func(p *plot.Plot) {
		p.X.Label.Text = "clients (closed loop, log scale)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		lo, hi := ticks[0].Value, ticks[len(ticks)-1].Value
		if lo == hi {
			lo, hi = lo/2, hi*2
		}
		p.X.Min, p.X.Max = lo/1.3, hi*1.3
	}

	thr := plot.New()
	thr.Title.Text = fmt.Sprintf("%s: %s/s against clients", s.Workload, s.OpsUnit)
	thr.Y.Label.Text = s.OpsUnit + "/s"
	clientsAxis(thr)
	if err := addPoints(thr, "bursar", thrB, 0); err != nil {
		return "", err
	}
	if err := addPoints(thr, "baseline (best pool)", thrBase, 1); err != nil {
		return "", err
	}
	if len(thrBase) > 0 {
		lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: thrBase, Labels: pools})
		if err != nil {
			return "", fmt.Errorf("chart: %w", err)
		}
		for i := range lbl.TextStyle {
			lbl.TextStyle[i].XAlign = draw.XCenter
		}
		lbl.Offset = vg.Point{Y: vg.Points(6)}
		thr.Add(lbl)
	}
	thr.Legend.Top, thr.Legend.Left = true, true
	headroom(thr, thrB, thrBase)

	lat := plot.New()
	lat.Title.Text = s.Workload + ": p99 latency against clients (log scale)"
	lat.Y.Label.Text = "p99 (ms)"
	clientsAxis(lat)
	if err := addPoints(lat, "bursar", p99B, 0); err != nil {
		return "", err
	}
	if err := addPoints(lat, "baseline (best pool)", p99Base, 1); err != nil {
		return "", err
	}
	lat.Legend.Top, lat.Legend.Left = true, true
	if lo, hi := yRange(p99B, p99Base); hi > 0 {
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		// On a log axis, room for the legend is a factor.
		lat.Y.Min, lat.Y.Max = lo/1.5, hi*3
	} else {
		lat.Y.Min, lat.Y.Max = 0, 1
	}

	path := filepath.Join(dir, "sweep-"+s.Workload+"."+format)
	return path, save(path, format, sweepWidth, sweepHeight, [][]*plot.Plot{{thr, lat}})
}

// addPoints adds a line with a marker at each point.
func addPoints(p *plot.Plot, name string, xy plotter.XYs, colorIndex int) error {
	if len(xy) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("chart: %s: %w", name, err)
	}
	l.Color, s.Color = plotutil.Color(colorIndex), plotutil.Color(colorIndex)
	l.Width = vg.Points(1.5)
	s.Shape = plotutil.Shape(colorIndex)
	s.Radius = vg.Points(3)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// yRange is the smallest and largest positive Y of the series (0, 0 when
// none).
func yRange(series ...plotter.XYs) (float64, float64) {
	lo, hi := math.Inf(1), 0.0
	for _, xy := range series {
		for _, p := range xy {
			if p.Y > 0 {
				lo, hi = math.Min(lo, p.Y), math.Max(hi, p.Y)
			}
		}
	}
	if hi == 0 {
		return 0, 0
	}
	return lo, hi
}
