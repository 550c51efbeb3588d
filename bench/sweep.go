package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A sweep runs one workload at several concurrencies against Bursar and
// against the naive-PostgreSQL baseline, the baseline at several pool
// sizes per concurrency (its best pool is reported, so that it is not
// handicapped by a pool that fits another load), and measures beside
// throughput and latency the CPU each operation cost the server, the
// database and the load generator, and how idle the machine was.

// Limits of a sweep.
const (
	// SweepPointsMax bounds the concurrencies of one sweep.
	SweepPointsMax = 32
	// SweepPoolsMax bounds the baseline pool sizes tried at each point.
	SweepPoolsMax = 16
)

// ParseIntList parses a comma-separated list of distinct integers in
// [1, hi] (at most countMax of them) and returns them in ascending order;
// name is the flag, for the messages.
func ParseIntList(name, text string, hi, countMax int) ([]int, error) {
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("%s: empty list; give comma-separated numbers like 1,8,64", name)
	}
	parts := strings.Split(text, ",")
	if len(parts) > countMax {
		return nil, fmt.Errorf("%s: %d values, at most %d", name, len(parts), countMax)
	}
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		n, err := strconv.Atoi(p)
		switch {
		case p == "":
			return nil, fmt.Errorf("%s: empty value in %q", name, text)
		case err != nil:
			return nil, fmt.Errorf("%s: %q is not a whole number", name, p)
		case n < 1 || n > hi:
			return nil, fmt.Errorf("%s: %d is outside [1, %d]", name, n, hi)
		case slices.Contains(out, n):
			return nil, fmt.Errorf("%s: %d appears twice", name, n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// BaselineServer is a baseline server a sweep runs against.
type BaselineServer struct {
	// URL is its base URL.
	URL string
	// PIDs are the processes whose CPU is the baseline server's.
	PIDs []int
	// Stop stops it and waits until it is gone.
	Stop func() error
}

// SweepConfig configures a sweep.
type SweepConfig struct {
	// Config is the workload and its parameters, as for Run; Concurrency,
	// Rate, Out and Audit are ignored (a sweep is closed loop).
	Config Config
	// Concurrencies are the points, ascending. Required.
	Concurrencies []int
	// BaselinePools are the baseline pool sizes tried at each point;
	// empty runs no baseline (BaselineNote says why).
	BaselinePools []int
	// StartBaseline starts a baseline server with the given pool size
	// over the same tables each time (so that the accounts set up once
	// serve every pool). Required with BaselinePools.
	StartBaseline func(ctx context.Context, pool int) (*BaselineServer, error)
	// BaselineNote is printed when no baseline runs.
	BaselineNote string
	// NodePIDs are the processes of the Bursar node under test, and
	// NodePIDSource says how they were found; empty: the node's CPU is
	// not reported.
	NodePIDs      []int
	NodePIDSource string
	// BursarAudit and BaselineAudit, when set, run at the end.
	BursarAudit   func(ctx context.Context) (AuditOutcome, error)
	BaselineAudit func(ctx context.Context) (AuditOutcome, error)

	// proc is where /proc is read; default /proc.
	proc procFS
}

// Sweep is a sweep's outcome; it is also its JSON result file.
type Sweep struct {
	RunID      string `json:"run_id"`
	Workload   string `json:"workload"`
	Target     string `json:"target"`
	Accounts   int    `json:"accounts"`
	Partitions int    `json:"partitions"`
	Funding    string `json:"funding"`
	Seed       uint64 `json:"seed"`
	// OpsUnit says what ops counts: "transfers" for the transfer
	// workloads and batch (whose ops are the items answered 201, while
	// latency is per batch request), "ops" otherwise.
	OpsUnit         string    `json:"ops_unit"`
	Concurrencies   []int     `json:"concurrencies"`
	BaselinePools   []int     `json:"baseline_pools,omitempty"`
	BaselineNote    string    `json:"baseline_note,omitempty"`
	WarmupSeconds   float64   `json:"warmup_seconds"`
	DurationSeconds float64   `json:"duration_seconds"`
	StartedAt       time.Time `json:"started_at"`
	// ClockTicksPerSec is USER_HZ, the unit of /proc's CPU times, and
	// ClockTicksSource where it came from (AT_CLKTCK or assumed).
	ClockTicksPerSec int64    `json:"clock_ticks_per_sec"`
	ClockTicksSource string   `json:"clock_ticks_source"`
	NodePIDs         []int    `json:"node_pids"`
	NodePIDSource    string   `json:"node_pid_source"`
	Notes            []string `json:"notes"`

	Points        []*SweepPoint `json:"points"`
	BursarAudit   *AuditOutcome `json:"bursar_audit,omitempty"`
	BaselineAudit *AuditOutcome `json:"baseline_audit,omitempty"`
	Interrupted   bool          `json:"interrupted,omitempty"`
}

// SweepPoint is one concurrency of a sweep.
type SweepPoint struct {
	Clients int          `json:"clients"`
	Bursar  *SystemPoint `json:"bursar,omitempty"`
	// Baseline is the best of BaselinePools (highest ops/s).
	Baseline      *SystemPoint   `json:"baseline,omitempty"`
	BaselinePools []*SystemPoint `json:"baseline_pools,omitempty"`
	// Ratios Bursar / best baseline: ops/s (above 1: Bursar delivers
	// more) and p99 (below 1: Bursar is faster); 0 when not known.
	OpsPerSecRatio float64 `json:"ops_per_sec_ratio"`
	P99Ratio       float64 `json:"p99_ratio"`
}

// SystemPoint is one system measured at one concurrency.
type SystemPoint struct {
	Label string `json:"label"`
	// Pool is the baseline's pool size; 0 for Bursar.
	Pool        int     `json:"pool,omitempty"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Ops         int64   `json:"ops"`
	P50Us       int64   `json:"p50_us"`
	P99Us       int64   `json:"p99_us"`
	ErrorsTotal int64   `json:"errors_total"`
	CPU         *CPUUse `json:"cpu,omitempty"`
	// Stages is Bursar's stage breakdown; nil for the baseline.
	Stages *StageBreakdown `json:"stages,omitempty"`
	Run    *Result         `json:"run"`
}

// CPUUse is the CPU time spent during a measured window, from /proc, in
// seconds and in µs per op (per op as counted in the result's ops).
type CPUUse struct {
	WindowSeconds float64 `json:"window_seconds"`
	// The server under test (the node, or the baseline's child process);
	// nil when its processes are not known.
	ServerPIDs      []int    `json:"server_pids"`
	ServerSeconds   *float64 `json:"server_seconds,omitempty"`
	ServerUsPerOp   *float64 `json:"server_us_per_op,omitempty"`
	PostgresSeconds float64  `json:"postgres_seconds"`
	PostgresUsPerOp float64  `json:"postgres_us_per_op"`
	// PostgresProcesses is how many postgres processes were seen at the
	// end of the window.
	PostgresProcesses int     `json:"postgres_processes"`
	BenchSeconds      float64 `json:"bench_seconds"`
	BenchUsPerOp      float64 `json:"bench_us_per_op"`
	// IdleFraction is the machine's idle (idle + iowait) share of all its
	// CPUs' time over the window.
	IdleFraction float64 `json:"idle_fraction"`
	// Error is set when a /proc read failed; the numbers may be partial.
	Error string `json:"error,omitempty"`
}

// cpuUse computes the CPU spent between two snapshots.
func cpuUse(a, b cpuSnapshot, hz int64, ops int64, window float64, serverPIDs []int) *CPUUse {
	secs := func(ticks int64) float64 { return float64(ticks) / float64(hz) }
	perOp := func(s float64) float64 {
		if ops <= 0 {
			return 0
		}
		return round1(s * 1e6 / float64(ops))
	}
	u := &CPUUse{
		WindowSeconds: window, ServerPIDs: serverPIDs,
		PostgresSeconds: round3(secs(ticksDelta(a.postgres, b.postgres))), PostgresProcesses: len(b.postgres),
		BenchSeconds: round3(secs(b.self - a.self)), IdleFraction: round3(idleFraction(a.machine, b.machine)),
	}
	u.PostgresUsPerOp = perOp(secs(ticksDelta(a.postgres, b.postgres)))
	u.BenchUsPerOp = perOp(secs(b.self - a.self))
	if len(serverPIDs) > 0 {
		s := secs(ticksDelta(a.server, b.server))
		sr, po := round3(s), perOp(s)
		u.ServerSeconds, u.ServerUsPerOp = &sr, &po
	}
	if err := errors.Join(a.err, b.err); err != nil {
		u.Error = err.Error()
	}
	return u
}

// bestPool picks the baseline pool of a point: the highest ops/s; on a
// tie, fewer errors, then the smaller pool (the same work with fewer
// connections). Nil when there is none.
func bestPool(pools []*SystemPoint) *SystemPoint {
	var best *SystemPoint
	for _, p := range pools {
		switch {
		case p == nil:
		case best == nil,
			p.OpsPerSec > best.OpsPerSec,
			p.OpsPerSec == best.OpsPerSec && p.ErrorsTotal < best.ErrorsTotal,
			p.OpsPerSec == best.OpsPerSec && p.ErrorsTotal == best.ErrorsTotal && p.Pool < best.Pool:
			best = p
		}
	}
	return best
}

// OpsUnit is what a workload's ops count.
func OpsUnit(workload string) string {
	switch workload {
	case WorkloadUniform, WorkloadSamePartition, WorkloadCrossPartition, WorkloadHot, WorkloadBatch:
		return "transfers"
	}
	return "ops"
}

// RunSweep runs the sweep: Bursar at every concurrency, then the baseline
// at every pool size and concurrency (one server per pool size), then the
// audits. Each system's accounts are set up once, before its first point.
// An interrupt ends the sweep after the point it cuts short; the result
// then says Interrupted, and the baseline server is stopped either way.
func RunSweep(ctx context.Context, sc SweepConfig) (*Sweep, error) {
	if len(sc.Concurrencies) == 0 || len(sc.Concurrencies) > SweepPointsMax {
		return nil, &ConfigError{Err: fmt.Errorf("bench: a sweep needs 1 to %d concurrencies, got %d", SweepPointsMax, len(sc.Concurrencies))}
	}
	if len(sc.BaselinePools) > SweepPoolsMax {
		return nil, &ConfigError{Err: fmt.Errorf("bench: at most %d baseline pools, got %d", SweepPoolsMax, len(sc.BaselinePools))}
	}
	if len(sc.BaselinePools) > 0 && sc.StartBaseline == nil {
		return nil, &ConfigError{Err: errors.New("bench: baseline pools without a way to start the baseline")}
	}
	if sc.proc.root == "" {
		sc.proc.root = "/proc"
	}
	cfg := sc.Config
	cfg.Concurrency = slices.Max(sc.Concurrencies)
	cfg.Rate, cfg.Out, cfg.Audit = 0, "", nil
	cfg.Label = "bursar"
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	hz, hzSource := ClockTicks()
	sw := &Sweep{
		RunID: cfg.RunID, Workload: cfg.Workload, Target: cfg.Target, Accounts: cfg.Accounts,
		Partitions: cfg.Partitions, Funding: cfg.Funding, Seed: cfg.Seed, OpsUnit: OpsUnit(cfg.Workload),
		Concurrencies: sc.Concurrencies, BaselinePools: sc.BaselinePools, BaselineNote: sc.BaselineNote,
		WarmupSeconds: round1(cfg.Warmup.Seconds()), DurationSeconds: round1(cfg.Duration.Seconds()),
		StartedAt: time.Now().UTC(), ClockTicksPerSec: hz, ClockTicksSource: hzSource,
		NodePIDs: sc.NodePIDs, NodePIDSource: sc.NodePIDSource,
		Notes: []string{
			"CPU from /proc: utime+stime of the server's processes, of every process whose comm is postgres (whatever database it serves), and of the bench; idle = (idle+iowait)/total of /proc/stat",
			"PostgreSQL processes that exit during a window are not counted; those that start during it count whole",
			"each point's keys are new: no point replays another's work",
		},
	}
	if hzSource != "AT_CLKTCK" {
		sw.Notes = append(sw.Notes, fmt.Sprintf("clock ticks per second assumed %d: the auxiliary vector could not be read", hz))
	}
	for _, c := range sc.Concurrencies {
		sw.Points = append(sw.Points, &SweepPoint{Clients: c})
	}
	// One client for the scrapes, apart from the load's.
	scrapes := &http.Client{Timeout: scrapeTimeout}
	defer scrapes.CloseIdleConnections()

	bursar, err := newSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, pt := range sw.Points {
		sp, err := measurePoint(ctx, bursar, &sc, pt.Clients, sc.NodePIDs, hz, scrapes)
		if err != nil && ctx.Err() != nil { // interrupted during the warmup
			sw.Interrupted = true
			break
		}
		if err != nil {
			bursar.close()
			return sw, err
		}
		pt.Bursar = sp
		if sp.Run.Interrupted {
			sw.Interrupted = true
			break
		}
	}
	bursar.close()

	if !sw.Interrupted && len(sc.BaselinePools) > 0 {
		err := sweepBaseline(ctx, sw, &sc, cfg, bursar.measurements, hz)
		switch {
		case err != nil && ctx.Err() != nil:
			sw.Interrupted = true
		case err != nil:
			return sw, err
		}
	}
	for _, pt := range sw.Points {
		if pt.Baseline = bestPool(pt.BaselinePools); pt.Baseline != nil && pt.Bursar != nil {
			pt.OpsPerSecRatio = ratio(pt.Bursar.OpsPerSec, pt.Baseline.OpsPerSec)
			pt.P99Ratio = ratio(float64(pt.Bursar.P99Us), float64(pt.Baseline.P99Us))
		}
	}
	if sc.BursarAudit != nil {
		out := runAudit(ctx, sc.BursarAudit)
		sw.BursarAudit = &out
	}
	if sc.BaselineAudit != nil && len(sc.BaselinePools) > 0 {
		out := runAudit(ctx, sc.BaselineAudit)
		sw.BaselineAudit = &out
	}
	return sw, nil
}

// sweepBaseline runs every pool size at every point, one server per pool
// size, stopped before the next starts. measurements is how many
// measurements Bursar's session made: the baseline's keys go on from
// there, although its tables are apart, so that one run ID never names
// two operations.
func sweepBaseline(ctx context.Context, sw *Sweep, sc *SweepConfig, cfg Config, measurements int, hz int64) error {
	var prev *session
	for _, pool := range sc.BaselinePools {
		srv, err := sc.StartBaseline(ctx, pool)
		if err != nil {
			return fmt.Errorf("bench: start the baseline with %d connections: %w", pool, err)
		}
		err = func() error {
			bcfg := cfg
			bcfg.Label, bcfg.Target, bcfg.APIKey = "baseline", srv.URL, "" // the baseline checks no credential
			bcfg.Log = cfg.Log.With("pool", pool)
			s, err := openSession(ctx, bcfg, prev)
			if err != nil {
				return err
			}
			defer s.close()
			if prev == nil {
				s.measurements = measurements
			}
			prev = s
			for _, pt := range sw.Points {
				sp, err := measurePoint(ctx, s, sc, pt.Clients, srv.PIDs, hz, nil)
				if err != nil {
					return err
				}
				sp.Pool = pool
				pt.BaselinePools = append(pt.BaselinePools, sp)
				if sp.Run.Interrupted {
					sw.Interrupted = true
					return nil
				}
			}
			return nil
		}()
		if serr := srv.Stop(); serr != nil {
			cfg.Log.Warn("baseline stop", "pool", pool, "err", serr)
		}
		if err != nil {
			return err
		}
		if sw.Interrupted {
			return nil
		}
	}
	return nil
}

// measurePoint measures s at concurrency c: CPU over the measured window,
// and with scrapes the node's stage breakdown over the same window.
func measurePoint(ctx context.Context, s *session, sc *SweepConfig, c int, serverPIDs []int, hz int64, scrapes *http.Client) (*SystemPoint, error) {
	var a, b cpuSnapshot
	var sa, sb stageScrape
	var scrapeErr error
	// The scrapes sit outside the CPU window: the node's work to render
	// /metrics is not an operation's.
	marks := &windowMarks{
		start: func() {
			if scrapes != nil {
				sa, scrapeErr = scrapeStages(context.WithoutCancel(ctx), scrapes, s.cfg.Target, s.cfg.APIKey)
			}
			a = sc.proc.snapshot(serverPIDs)
		},
		end: func() {
			b = sc.proc.snapshot(serverPIDs)
			if scrapes != nil && scrapeErr == nil {
				sb, scrapeErr = scrapeStages(context.WithoutCancel(ctx), scrapes, s.cfg.Target, s.cfg.APIKey)
			}
		},
	}
	res, err := s.measure(ctx, c, marks)
	if err != nil {
		return nil, err
	}
	sp := &SystemPoint{
		Label: s.cfg.Label, OpsPerSec: res.OpsPerSec, Ops: res.Ops,
		P50Us: res.Latency.P50Us, P99Us: res.Latency.P99Us, ErrorsTotal: res.ErrorsTotal,
		CPU: cpuUse(a, b, hz, res.Ops, res.DurationSeconds, serverPIDs), Run: res,
	}
	if scrapes != nil {
		sp.Stages = stageBreakdown(sa, sb)
		if scrapeErr != nil {
			sp.Stages.Error = scrapeErr.Error()
		}
	}
	return sp, nil
}

// WriteFile writes the sweep as indented JSON.
func (s *Sweep) WriteFile(path string) error { return writeJSONFile(path, "sweep", s) }
