package baseline_test

import (
	"context"
	"testing"
	"time"

	"github.com/bursar/bursar/bench"
	"github.com/bursar/bursar/bench/baseline"
	"github.com/bursar/bursar/storage/pgtest"
)

// The bench client drives the baseline through every workload: the
// shapes and codes match what it expects of Bursar, nothing counts as an
// error, and the audit is clean afterwards. Counts and rates are not
// asserted (no timed assertions).
func TestBenchDrivesBaseline(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	r, err := baseline.Start(ctx, baseline.Config{DatabaseURL: url, MaxConns: 4}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(ctx) //nolint:errcheck // test teardown
	for i, w := range bench.Workloads() {
		if w.Name == bench.WorkloadBatch {
			continue // the baseline has no batch endpoint
		}
		res, err := bench.Run(ctx, bench.Config{
			Target: r.URL, Label: "baseline", Workload: w.Name, Accounts: 40, Partitions: 4, Concurrency: 4,
			Duration: time.Second, RunID: "t" + string(rune('a'+i)), Audit: func(ctx context.Context) (bench.AuditOutcome, error) {
				rep, err := r.Audit(ctx)
				if err != nil {
					return bench.AuditOutcome{}, err
				}
				return bench.AuditOutcome{Clean: rep.Clean, Report: rep}, nil
			},
		})
		if err != nil {
			t.Fatalf("%s: %v", w.Name, err)
		}
		if res.ErrorsTotal != 0 || res.Ops == 0 {
			t.Errorf("%s: %d ops, errors %v (first transport error %q)", w.Name, res.Ops, res.Errors, res.TransportErrorExample)
		}
		if res.Audit == nil || !res.Audit.Clean {
			t.Errorf("%s: audit %+v", w.Name, res.Audit)
		}
	}
}
