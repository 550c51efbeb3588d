package bench

import (
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// within reports whether got is within the histogram's relative precision
// (0.1% for 3 significant digits, plus one unit) of want.
func within(got, want int64, rel float64) bool {
	d := float64(got - want)
	if d < 0 {
		d = -d
	}
	return d <= rel*float64(want)+1
}

func TestSummarizeUniform(t *testing.T) {
	h := hdrhistogram.New(latencyMinUs, latencyMaxUs, latencySigFigs)
	for v := int64(1); v <= 10_000; v++ {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	got := summarize(h, 10_000)
	want := Latency{Count: 10_000, MinUs: 1, P50Us: 5000, P90Us: 9000, P99Us: 9900, P999Us: 9990, MaxUs: 10_000}
	if got.Count != want.Count || got.MinUs != want.MinUs || got.MaxUs != want.MaxUs {
		t.Fatalf("count/min/max = %d/%d/%d, want %d/%d/%d", got.Count, got.MinUs, got.MaxUs, want.Count, want.MinUs, want.MaxUs)
	}
	for _, c := range []struct {
		name      string
		got, want int64
	}{{"p50", got.P50Us, want.P50Us}, {"p90", got.P90Us, want.P90Us}, {"p99", got.P99Us, want.P99Us}, {"p99.9", got.P999Us, want.P999Us}} {
		if !within(c.got, c.want, 0.001) {
			t.Errorf("%s = %d, want %d ±0.1%%", c.name, c.got, c.want)
		}
	}
	if got.MeanUs < 4995 || got.MeanUs > 5006 {
		t.Errorf("mean = %v, want about 5000.5", got.MeanUs)
	}
}

func TestSummarizeTail(t *testing.T) {
	// 998 fast answers and two stalls: the 999th value is a stall, so it
	// must show at p99.9 and max, not at p99 (the 990th).
	h := hdrhistogram.New(latencyMinUs, latencyMaxUs, latencySigFigs)
	for range 998 {
		_ = h.RecordValue(100)
	}
	_ = h.RecordValue(2_000_000)
	_ = h.RecordValue(2_000_000)
	got := summarize(h, 2_000_123)
	if got.P50Us != 100 || got.P99Us != 100 {
		t.Errorf("p50/p99 = %d/%d, want 100/100", got.P50Us, got.P99Us)
	}
	if !within(got.P999Us, 2_000_000, 0.001) {
		t.Errorf("p99.9 = %d, want about 2000000", got.P999Us)
	}
	if got.MaxUs != 2_000_123 {
		t.Errorf("max = %d, want the exact 2000123", got.MaxUs)
	}
}

func TestSummarizeCapsAtExactMax(t *testing.T) {
	// 123457 is recorded in a bucket whose highest equivalent value is
	// above it; no percentile may exceed the true maximum.
	h := hdrhistogram.New(latencyMinUs, latencyMaxUs, latencySigFigs)
	_ = h.RecordValue(123_457)
	got := summarize(h, 123_457)
	if got.P50Us != 123_457 || got.P999Us != 123_457 || got.MaxUs != 123_457 {
		t.Errorf("got %+v, want every percentile 123457", got)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	h := hdrhistogram.New(latencyMinUs, latencyMaxUs, latencySigFigs)
	if got := summarize(h, 0); got != (Latency{}) {
		t.Errorf("empty histogram: got %+v", got)
	}
}

func TestRecorder(t *testing.T) {
	r := newRecorder(2500 * time.Millisecond)
	if len(r.secs) != 3 {
		t.Fatalf("seconds = %d, want 3 for a 2.5s window", len(r.secs))
	}
	for i := range 100 {
		r.record(0, opCredit, outcomeOK, "", int64(100+i))
	}
	r.record(1, opDebit, outcomeRefused, "INSUFFICIENT_FUNDS", 300)
	r.record(1, opDebit, outcomeError, "UNAVAILABLE", 5)
	r.record(2, opCredit, outcomeError, codeTransport, 30_000_000)
	r.record(2, opBalance, outcomeOK, "", latencyMaxUs+5) // clamped in the histogram, exact in max
	r.record(7, opCredit, outcomeOK, "", 50)              // beyond the series: counted, not charted

	cfg := &Config{Workload: WorkloadCreditDebit, Concurrency: 1, Accounts: 1, Seed: 3, RunID: "x"}
	res := buildResult(cfg, r, loadStats{measured: 2500 * time.Millisecond})
	if res.Ops != 103 || res.Succeeded != 102 || res.ErrorsTotal != 2 {
		t.Errorf("ops/succeeded/errors = %d/%d/%d, want 103/102/2", res.Ops, res.Succeeded, res.ErrorsTotal)
	}
	if res.ExpectedRefusals["INSUFFICIENT_FUNDS"] != 1 || res.Errors["UNAVAILABLE"] != 1 || res.Errors[codeTransport] != 1 {
		t.Errorf("refusals %v errors %v", res.ExpectedRefusals, res.Errors)
	}
	if res.OpsByKind["credit"] != 101 || res.OpsByKind["debit"] != 1 || res.OpsByKind["balance"] != 1 {
		t.Errorf("by kind %v", res.OpsByKind)
	}
	if res.OpsPerSec != 41.2 {
		t.Errorf("ops/s = %v, want 103/2.5 = 41.2", res.OpsPerSec)
	}
	if res.Latency.MaxUs != latencyMaxUs+5 {
		t.Errorf("max = %d, want %d", res.Latency.MaxUs, latencyMaxUs+5)
	}
	s := res.Series
	if len(s) != 3 {
		t.Fatalf("series has %d points, want 3", len(s))
	}
	if s[0].Ops != 100 || s[0].OpsPerSec != 100 || s[0].Errors != 0 || !within(s[0].P99Us, 198, 0.01) || s[0].MaxUs != 199 {
		t.Errorf("second 0 = %+v", s[0])
	}
	if s[1].Ops != 1 || s[1].Refusals != 1 || s[1].Errors != 1 || s[1].P99Us != 300 {
		t.Errorf("second 1 = %+v", s[1])
	}
	// The last second is half long: 1 answer in 0.5s is 2 ops/s.
	if s[2].Ops != 1 || s[2].Errors != 1 || s[2].OpsPerSec != 2 {
		t.Errorf("second 2 = %+v", s[2])
	}
}

func TestRecorderSeriesTruncatedWhenInterrupted(t *testing.T) {
	r := newRecorder(10 * time.Second)
	r.record(0, opCredit, outcomeOK, "", 10)
	if got := len(r.series(1200 * time.Millisecond)); got != 2 {
		t.Errorf("series of a 1.2s window has %d points, want 2", got)
	}
}

func TestBumpBoundsCodes(t *testing.T) {
	m := map[string]int64{}
	for i := range codesMax + 10 {
		bump(m, "CODE_"+string(rune('A'+i%26))+string(rune('A'+i/26)))
	}
	if len(m) != codesMax+1 || m[codeOther] != 10 {
		t.Errorf("len = %d, OTHER = %d; want %d and 10", len(m), m[codeOther], codesMax+1)
	}
	bump(m, "CODE_AA") // a known code still counts as itself
	if m["CODE_AA"] != 2 {
		t.Errorf("CODE_AA = %d, want 2", m["CODE_AA"])
	}
}
