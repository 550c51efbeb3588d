package bench

import (
	"fmt"
)

// Comparison is the same workload run against several targets back to
// back; it is also the JSON result file of a --compare run.
type Comparison struct {
	Workload string    `json:"workload"`
	Runs     []*Result `json:"runs"`
	// Ratios of the first run (Bursar) to the second (the baseline): how
	// many times the baseline's completed ops/s Bursar delivered, and its
	// p99 as a multiple of the baseline's (below 1 is better). Zero when a
	// denominator is zero.
	OpsPerSecRatio float64 `json:"ops_per_sec_ratio"`
	P99Ratio       float64 `json:"p99_ratio"`
}

// Compare assembles runs (at least two, of one workload) and computes the
// ratios of the first to the second.
func Compare(runs ...*Result) (*Comparison, error) {
	if len(runs) < 2 {
		return nil, fmt.Errorf("bench: a comparison needs at least two runs, got %d", len(runs))
	}
	for _, r := range runs[1:] {
		if r.Workload != runs[0].Workload {
			return nil, fmt.Errorf("bench: cannot compare workload %s with %s", runs[0].Workload, r.Workload)
		}
	}
	c := &Comparison{Workload: runs[0].Workload, Runs: runs}
	a, b := runs[0], runs[1]
	c.OpsPerSecRatio = ratio(a.OpsPerSec, b.OpsPerSec)
	c.P99Ratio = ratio(float64(a.Latency.P99Us), float64(b.Latency.P99Us))
	return c, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	// Not rounded: a ratio far below 0.01 (a p99 hundreds of times
	// smaller) is still a ratio, not "none"; printers round.
	return a / b
}

// WriteFile writes the comparison as indented JSON.
func (c *Comparison) WriteFile(path string) error { return writeJSONFile(path, "comparison", c) }
