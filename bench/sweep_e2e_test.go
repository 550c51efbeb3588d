package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/bursar/bursar/bench/baseline"
	"github.com/bursar/bursar/storage/pgtest"
)

// A small sweep end to end: the fake node stands in for Bursar (in this
// process, so its CPU is this process's), the baseline runs in process
// over a fresh database at two pool sizes. What is asserted is the
// shape of the outcome and its accounting, not speed.
func TestSweepEndToEnd(t *testing.T) {
	url := pgtest.NewDatabase(t)
	node := newFakeNode(t)
	var started []int
	sc := SweepConfig{
		Config: Config{
			Target: node.URL, Workload: WorkloadUniform, Accounts: 20, Partitions: 4,
			Duration: time.Second, RunID: "sweeptest",
		},
		Concurrencies: []int{1, 2},
		BaselinePools: []int{2, 4},
		StartBaseline: func(ctx context.Context, pool int) (*BaselineServer, error) {
			started = append(started, pool)
			r, err := baseline.Start(ctx, baseline.Config{DatabaseURL: url, MaxConns: int32(pool)}, "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			return &BaselineServer{URL: r.URL, PIDs: []int{os.Getpid()}, Stop: func() error { return r.Shutdown(context.Background()) }}, nil
		},
		BaselineAudit: func(ctx context.Context) (AuditOutcome, error) {
			rep, err := baseline.AuditURL(ctx, url)
			if err != nil {
				return AuditOutcome{}, err
			}
			return AuditOutcome{Clean: rep.Clean, Report: rep}, nil
		},
		NodePIDs: []int{os.Getpid()}, NodePIDSource: "test",
	}
	sw, err := RunSweep(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(started) != 2 || started[0] != 2 || started[1] != 4 {
		t.Fatalf("baselines started %v, want one per pool size", started)
	}
	if sw.Interrupted || len(sw.Points) != 2 || sw.OpsUnit != "transfers" || sw.ClockTicksPerSec <= 0 {
		t.Fatalf("sweep %+v", sw)
	}
	if sw.BaselineAudit == nil || !sw.BaselineAudit.Clean {
		t.Fatalf("baseline audit %+v", sw.BaselineAudit)
	}
	for _, p := range sw.Points {
		b := p.Bursar
		if b == nil || b.Ops == 0 || b.ErrorsTotal != 0 || b.Run.Concurrency != p.Clients {
			t.Fatalf("%d clients: bursar %+v", p.Clients, b)
		}
		if b.CPU == nil || b.CPU.ServerSeconds == nil || b.CPU.IdleFraction < 0 || b.CPU.IdleFraction > 1 || b.CPU.Error != "" {
			t.Fatalf("%d clients: cpu %+v", p.Clients, b.CPU)
		}
		// The fake node observes decoded and answered per transfer.
		if b.Stages == nil || !b.Stages.Present || len(b.Stages.Stages) != 2 ||
			b.Stages.Stages[0].Stage != "decoded" || b.Stages.Stages[1].Stage != "answered" {
			t.Fatalf("%d clients: stages %+v", p.Clients, b.Stages)
		}
		// Stages count observations in the window only: about the ops
		// answered in it, never the warmup's or another point's (which
		// would be as many again). The scrapes and the bench's window do
		// not start at the same instant: a small slack either way.
		slack := int64(2*p.Clients) + b.Ops/50
		if n := int64(b.Stages.Stages[0].Count); n < b.Ops-slack || n > b.Ops+slack {
			t.Errorf("%d clients: %d decoded observations for %d ops", p.Clients, n, b.Ops)
		}
		if len(p.BaselinePools) != 2 || p.Baseline == nil {
			t.Fatalf("%d clients: pools %+v", p.Clients, p.BaselinePools)
		}
		for _, bp := range p.BaselinePools {
			if bp.Ops == 0 || bp.ErrorsTotal != 0 || bp.Stages != nil || bp.Run.Label != "baseline" {
				t.Fatalf("%d clients, pool %d: %+v", p.Clients, bp.Pool, bp)
			}
		}
		if best := bestPool(p.BaselinePools); best != p.Baseline {
			t.Errorf("%d clients: best pool %d, reported %d", p.Clients, best.Pool, p.Baseline.Pool)
		}
		if p.OpsPerSecRatio <= 0 || p.P99Ratio <= 0 {
			t.Errorf("%d clients: ratios %v %v", p.Clients, p.OpsPerSecRatio, p.P99Ratio)
		}
	}
	// The baseline's accounts were set up once: a second pool's server
	// found them (no setup error) and the audit counts 20 accounts.
	rep := sw.BaselineAudit.Report.(*baseline.AuditReport)
	if len(rep.Currencies) != 1 || rep.Currencies[0].Accounts != 20 {
		t.Fatalf("baseline accounts %+v", rep.Currencies)
	}
	// 4 baseline measurements of distinct keys: every transfer row is new
	// (the counts add up to the transactions, plus 20 funding credits).
	var ops int64
	for _, p := range sw.Points {
		for _, bp := range p.BaselinePools {
			ops += bp.Run.Succeeded
		}
	}
	if rep.Currencies[0].Transactions < ops+20 {
		t.Errorf("%d transactions for at least %d measured transfers + 20 credits: keys replayed?", rep.Currencies[0].Transactions, ops)
	}
}
