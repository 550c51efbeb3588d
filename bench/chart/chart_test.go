package chart

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/bursar/bursar/bench"
)

func result(label string, opsPerSec float64, p99Us int64) *bench.Result {
	r := &bench.Result{
		Label: label, Workload: "uniform", Mode: "closed", Concurrency: 64, DurationSeconds: 5.5,
		OpsPerSec: opsPerSec, Ops: int64(opsPerSec * 5.5), ErrorsTotal: 3,
		Latency: bench.Latency{P50Us: p99Us / 4, P99Us: p99Us, MaxUs: p99Us * 3},
	}
	for i := range 6 {
		s := bench.Second{Second: i, Ops: int64(opsPerSec), OpsPerSec: opsPerSec * (0.9 + 0.04*float64(i)), P50Us: p99Us / 4, P99Us: p99Us + int64(i)*100, MaxUs: p99Us * 2}
		if i == 2 {
			s.Errors = 3
		}
		if i == 4 { // a stalled second: no answers
			s = bench.Second{Second: i}
		}
		r.Series = append(r.Series, s)
	}
	return r
}

func TestRunAndCompare(t *testing.T) {
	dir := t.TempDir()
	a, b := result("bursar", 31_234.5, 4_200), result("baseline", 2_700, 48_000)
	c, err := bench.Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range Formats {
		for _, r := range []*bench.Result{a, b} {
			path, err := Run(dir, format, r)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, r.Label+"-uniform."+format); path != want {
				t.Errorf("path %s, want %s", path, want)
			}
			check(t, path, format)
		}
		path, err := Compare(dir, format, c)
		if err != nil {
			t.Fatal(err)
		}
		check(t, path, format)
	}
	if _, err := Run(dir, "gif", a); err == nil {
		t.Error("gif accepted")
	}
}

// An empty run (interrupted at once, every second empty) still draws.
func TestEmptySeries(t *testing.T) {
	r := &bench.Result{Label: "bursar", Workload: "hot", Series: []bench.Second{{Second: 0}}}
	c, _ := bench.Compare(r, &bench.Result{Label: "baseline", Workload: "hot"})
	dir := t.TempDir()
	if _, err := Run(dir, "png", r); err != nil {
		t.Fatal(err)
	}
	if _, err := Compare(dir, "png", c); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, path, format string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch format {
	case "png":
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if w := img.Bounds().Dx(); w < 800 {
			t.Errorf("%s: %d pixels wide", path, w)
		}
	case "svg":
		if !bytes.Contains(b[:min(len(b), 512)], []byte("<svg")) {
			t.Errorf("%s: not an SVG", path)
		}
	}
}

func TestSweepChart(t *testing.T) {
	sp := func(ops float64, p99 int64, pool int) *bench.SystemPoint {
		return &bench.SystemPoint{OpsPerSec: ops, P99Us: p99, Pool: pool}
	}
	s := &bench.Sweep{Workload: "uniform", OpsUnit: "transfers", Points: []*bench.SweepPoint{
		{Clients: 1, Bursar: sp(900, 1800, 0), Baseline: sp(400, 3000, 8)},
		{Clients: 8, Bursar: sp(6000, 2500, 0), Baseline: sp(2500, 5000, 16)},
		{Clients: 64, Bursar: sp(20000, 6000, 0), Baseline: sp(3000, 40000, 32)},
		{Clients: 256, Bursar: sp(24000, 20000, 0)}, // baseline not run at this point
	}}
	for _, format := range Formats {
		dir := t.TempDir()
		path, err := Sweep(dir, format, s)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(path) != "sweep-uniform."+format {
			t.Fatalf("path %s", path)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() < 1000 {
			t.Fatalf("%s: %v, %v", path, fi, err)
		}
	}
	// One point only, and no latency: still a chart.
	one := &bench.Sweep{Workload: "hot", OpsUnit: "transfers", Points: []*bench.SweepPoint{{Clients: 4, Bursar: sp(10, 0, 0)}}}
	if _, err := Sweep(t.TempDir(), "png", one); err != nil {
		t.Fatal(err)
	}
	if _, err := Sweep(t.TempDir(), "pdf", s); err == nil {
		t.Fatal("pdf accepted")
	}
}
