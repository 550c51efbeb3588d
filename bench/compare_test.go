package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestCompare(t *testing.T) {
	a := &Result{Label: "bursar", Workload: WorkloadUniform, OpsPerSec: 30_000, Latency: Latency{P99Us: 5_000}}
	b := &Result{Label: "baseline", Workload: WorkloadUniform, OpsPerSec: 2_400, Latency: Latency{P99Us: 40_000}}
	c, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if c.OpsPerSecRatio != 12.5 || c.P99Ratio != 0.125 || c.Workload != WorkloadUniform || len(c.Runs) != 2 {
		t.Errorf("comparison = %+v", c)
	}
	// A baseline that completed nothing has no ratio rather than +Inf.
	c, _ = Compare(a, &Result{Label: "baseline", Workload: WorkloadUniform})
	if c.OpsPerSecRatio != 0 || c.P99Ratio != 0 {
		t.Errorf("ratios over zero = %v, %v", c.OpsPerSecRatio, c.P99Ratio)
	}
	if _, err := Compare(a); err == nil {
		t.Error("one run compared")
	}
	if _, err := Compare(a, &Result{Workload: WorkloadHot}); err == nil {
		t.Error("different workloads compared")
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Comparison
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Runs) != 2 || back.Runs[0].Label != "bursar" {
		t.Errorf("round trip: %v %+v", err, back)
	}
}
