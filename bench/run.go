package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Result is a bench run's outcome; it is also the JSON result file.
type Result struct {
	RunID       string    `json:"run_id"`
	Workload    string    `json:"workload"`
	Label       string    `json:"label"`
	Target      string    `json:"target"`
	Partitions  int       `json:"partitions"`
	Mode        string    `json:"mode"` // "closed" or "open"
	Concurrency int       `json:"concurrency"`
	RateTarget  float64   `json:"rate_target_ops_per_sec,omitempty"` // open loop only
	Accounts    int       `json:"accounts"`
	Currency    string    `json:"currency"`
	Seed        uint64    `json:"seed"`
	StartedAt   time.Time `json:"started_at"`

	SetupSeconds  float64 `json:"setup_seconds"`
	SetupRetries  int64   `json:"setup_retries"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	// DurationSeconds is the measured window actually covered.
	DurationSeconds float64 `json:"duration_seconds"`
	Interrupted     bool    `json:"interrupted,omitempty"`

	// Ops counts correct answers that arrived in the measured window:
	// successes (the exact expected status) and expected refusals.
	// OpsPerSec is Ops over DurationSeconds.
	//
	// Under workload batch an op is a transfer (an item answered 201),
	// and Latency is per batch request (BatchRequests of them, each of
	// BatchSize items); errors count items.
	Ops       int64            `json:"ops"`
	OpsUnit   string           `json:"ops_unit"`
	OpsPerSec float64          `json:"ops_per_sec"`
	Succeeded int64            `json:"succeeded"`
	OpsByKind map[string]int64 `json:"ops_by_kind"`
	// ExpectedRefusals are refusals that are correct business answers for
	// the workload (a debit the balance does not cover), by code.
	ExpectedRefusals map[string]int64 `json:"expected_refusals"`
	// Errors are every other answer by code: the API's error code,
	// HTTP_<status> for an answer without one (HTTP_202: accepted but not
	// answered within the API's wait), TRANSPORT for no answer.
	Errors                map[string]int64 `json:"errors"`
	ErrorsTotal           int64            `json:"errors_total"`
	TransportErrorExample string           `json:"transport_error_example,omitempty"`
	// Unsent (open loop) counts operations due before the end that were
	// never sent: the target fell that far behind the schedule.
	Unsent int64 `json:"unsent,omitempty"`

	// Latency covers correct answers, from the scheduled start (send time
	// in a closed loop, due time in an open loop) to the answer.
	BatchSize     int   `json:"batch_size,omitempty"`
	BatchRequests int64 `json:"batch_requests,omitempty"`

	Latency Latency  `json:"latency_us"`
	Series  []Second `json:"series"`

	Audit *AuditOutcome `json:"audit,omitempty"`
}

// Run sets up the accounts, runs warmup and measurement, runs the audit
// hook when set, and writes cfg.Out when set. Cancelling ctx during the
// measurement ends it early: the result covers what was measured and says
// Interrupted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	s, err := newSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	res, err := s.measure(ctx, s.cfg.Concurrency, nil)
	if err != nil {
		return nil, err
	}
	if s.cfg.Audit != nil {
		out := runAudit(ctx, s.cfg.Audit)
		res.Audit = &out
	}
	if s.cfg.Out != "" {
		if err := res.WriteFile(s.cfg.Out); err != nil {
			return res, err
		}
	}
	return res, nil
}

// runAudit runs an audit hook. The audit gets its own context: it should
// run even after an interrupt ended the load, and it has its own time
// limits.
func runAudit(ctx context.Context, audit func(context.Context) (AuditOutcome, error)) AuditOutcome {
	out, err := audit(context.WithoutCancel(ctx))
	if err != nil {
		out = AuditOutcome{Error: err.Error()}
	}
	return out
}

// session is one target set up once: its accounts opened and funded, and
// a client sized for cfg.Concurrency workers. A sweep measures one
// session at several concurrencies, so that every point runs on the same
// accounts.
type session struct {
	cfg      Config
	cl       *fasthttp.Client
	accounts []string
	ss       setupStats
	// measurements counts measure calls: from the second on, each tags
	// its keys with its number so that it does new work rather than
	// replaying an earlier measurement's keys.
	measurements int
}

// newSession validates cfg, waits for the target to be ready and runs the
// setup.
func newSession(ctx context.Context, cfg Config) (*session, error) { return openSession(ctx, cfg, nil) }

// openSession is newSession; with prev, the target serves the accounts
// prev set up (another server over the same tables): the setup is not run
// again, and the measurement count goes on from prev's so that no key is
// reused.
func openSession(ctx context.Context, cfg Config, prev *session) (*session, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	s := &session{cfg: cfg, cl: newHTTPClient(&cfg)}
	s.cfg.Log = cfg.Log.With("run_id", cfg.RunID, "target", cfg.Label)
	log := s.cfg.Log
	if err := waitReady(ctx, s.cl, s.cfg.Target, s.cfg.ReadyWait); err != nil {
		s.close()
		return nil, err
	}
	if prev != nil {
		s.accounts, s.ss, s.measurements = prev.accounts, prev.ss, prev.measurements
		return s, nil
	}
	log.Info("setup starting", "accounts", s.cfg.Accounts, "target", s.cfg.Target)
	accounts, ss, err := setup(ctx, &s.cfg, s.cl)
	if err != nil {
		s.close()
		return nil, err
	}
	log.Info("setup done", "accounts", len(accounts), "seconds", ss.elapsed.Seconds(), "retries", ss.retries)
	s.accounts, s.ss = accounts, ss
	return s, nil
}

func (s *session) close() { s.cl.CloseIdleConnections() }

// measure runs warmup and measurement with concurrency workers (at most
// the session's cfg.Concurrency, which sized the client). marks, when not
// nil, is called at the edges of the measured window.
func (s *session) measure(ctx context.Context, concurrency int, marks *windowMarks) (*Result, error) {
	if concurrency < 1 || concurrency > s.cfg.Concurrency {
		return nil, fmt.Errorf("bench: concurrency %d outside the session's [1, %d]", concurrency, s.cfg.Concurrency)
	}
	cfg := s.cfg
	cfg.Concurrency, cfg.marks = concurrency, marks
	if s.measurements > 0 {
		cfg.keyTag = "m" + strconv.Itoa(s.measurements)
	}
	s.measurements++
	mode := "closed"
	if cfg.Rate > 0 {
		mode = "open"
	}
	started := time.Now()
	cfg.Log.Info("load starting", "workload", cfg.Workload, "mode", mode, "concurrency", cfg.Concurrency,
		"rate", cfg.Rate, "warmup", cfg.Warmup, "duration", cfg.Duration)
	rec, ls := runLoad(ctx, &cfg, s.cl, s.accounts)
	if ls.measured <= 0 {
		return nil, errors.New("bench: interrupted before the measured window")
	}
	res := buildResult(&cfg, rec, ls)
	res.Mode, res.StartedAt = mode, started.UTC()
	res.SetupSeconds, res.SetupRetries = round1(s.ss.elapsed.Seconds()), s.ss.retries
	if ls.interrupted {
		cfg.Log.Warn("interrupted; the result covers the measured part", "seconds", ls.measured.Seconds())
	}
	return res, nil
}

func buildResult(cfg *Config, rec *recorder, ls loadStats) *Result {
	res := &Result{
		RunID: cfg.RunID, Workload: cfg.Workload, Label: cfg.Label, Target: cfg.Target,
		Partitions: cfg.Partitions, Concurrency: cfg.Concurrency, RateTarget: cfg.Rate,
		Accounts: cfg.Accounts, Currency: cfg.Currency, Seed: cfg.Seed,
		WarmupSeconds: round1(cfg.Warmup.Seconds()), DurationSeconds: round3(ls.measured.Seconds()),
		Interrupted: ls.interrupted, Unsent: ls.unsent,
		OpsByKind: map[string]int64{}, ExpectedRefusals: map[string]int64{}, Errors: map[string]int64{},
	}
	res.OpsUnit = OpsUnit(cfg.Workload)
	if cfg.Workload == WorkloadBatch {
		res.BatchSize = cfg.BatchSize
	}
	res.Series = rec.series(ls.measured)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for k := range opKindCount {
		if n := rec.ok[k] + rec.refused[k]; n > 0 {
			res.OpsByKind[k.String()] = n
		}
		res.Succeeded += rec.ok[k]
		res.Ops += rec.ok[k] + rec.refused[k]
	}
	for c, n := range rec.refusals {
		res.ExpectedRefusals[c] = n
	}
	for c, n := range rec.errs {
		res.Errors[c] = n
	}
	res.ErrorsTotal = rec.errsTotal
	res.BatchRequests = rec.batches
	res.TransportErrorExample = rec.transport
	res.OpsPerSec = round1(float64(res.Ops) / ls.measured.Seconds())
	res.Latency = summarize(rec.all, rec.maxUs)
	return res
}

// WriteFile writes the result as indented JSON.
func (r *Result) WriteFile(path string) error { return writeJSONFile(path, "result", r) }

// writeJSONFile writes v as indented JSON; what names it in errors.
func writeJSONFile(path, what string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode %s: %w", what, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", what, err)
	}
	return nil
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
