package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/bench"
	"github.com/bursar/bursar/bench/baseline"
	"github.com/bursar/bursar/bench/chart"
	"github.com/bursar/bursar/storage"
)

const compareBaseline = "baseline"

func runBench(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "baseline" {
		return runBaseline(args[1:], stdout)
	}
	var workloads strings.Builder
	for _, w := range bench.Workloads() {
		avail := ""
		if !w.Available {
			avail = " [not yet available]"
		}
		fmt.Fprintf(&workloads, "\n  %-16s %s%s", w.Name, w.Description, avail)
	}
	fs := newFlagSet("bench", "Drives load against a running node through the REST API: opens and funds --accounts accounts,\n"+
		"warms up, then measures for --duration. Closed loop with --concurrency workers, or open loop at\n"+
		"--rate ops/s (latency from each operation's due time, so a stalled server cannot hide its stall).\n"+
		"Reports ops/s, latency percentiles (µs), errors by code and a per-second series; --out writes JSON,\n"+
		"--charts writes charts. With --database-url it ends with the money audit.\n"+
		"Success is only the status an operation should return (201 for writes: a 202 pending transfer is an\n"+
		"error); INSUFFICIENT_FUNDS counts as an expected refusal only where the workload can legitimately\n"+
		"hit it (not under hot); every other answer is an error by code.\n"+
		"Workloads:"+workloads.String()+"\n\n"+
		"--compare baseline runs the same workload (same run ID, seed and account IDs) against Bursar (--target)\n"+
		"and then against the naive-PostgreSQL baseline (--baseline-target, or one started in this process on a\n"+
		"free loopback port over --baseline-database-url, default --database-url), and reports both and the\n"+
		"ratios Bursar / baseline of ops/s and p99. The baseline's run ends with its own conservation audit.\n"+
		"Run a baseline server on its own with 'bursar bench baseline serve --database-url URL --http-addr ADDR',\n"+
		"and audit its tables with 'bursar bench baseline audit --database-url URL'.\n\n"+
		"--sweep 1,8,64,256 runs the workload closed-loop at each concurrency against Bursar (--target), then\n"+
		"against the baseline at each --baseline-pools size (one 'bursar bench baseline serve' child process per\n"+
		"pool size over --baseline-database-url, default --database-url, stopped with SIGTERM afterwards) and\n"+
		"reports per point Bursar and the baseline's best pool: ops/s (transfers/s for transfer workloads), p50,\n"+
		"p99, CPU µs per op of the server (the node: --node-pid, or every local 'bursar serve' process), of every\n"+
		"postgres process on the machine (whatever it serves) and of the bench itself, from /proc, and the\n"+
		"machine's idle %, all over each measured window; the ratios; and Bursar's stage breakdown from the\n"+
		"node's bursar_stage_seconds at <target>/metrics. Each system's accounts are set up once and funded with\n"+
		"1000000 each unless --funding is given. It ends with both money audits. --out and --format json give\n"+
		"the JSON, --charts a sweep-<workload> chart. Workload batch has no baseline (no batch endpoint there).\n"+
		"Workload batch counts transfers (items answered 201) as ops and errors by item; latency is per request.\n"+
		"Exit 0 done; 1 failure or audit violation; 2 usage error or an audit could not check.")
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of a node with the ingress role")
	apiKey := fs.String("api-key", "", "API key sent to the target (scopes all); empty with --database-url: a key for this run is created there and revoked at the end")
	workload := fs.String("workload", bench.WorkloadCreditDebit, "operation mix (see above)")
	accounts := fs.Int("accounts", 1000, "accounts to open and fund at setup")
	partitions := fs.Int("partitions", 64, "partitions of the node's bursar.commands (must match the node's --partitions): the bench hashes its chosen account IDs with the node's slot map to build same-partition and cross-partition pairs")
	concurrency := fs.Int("concurrency", 64, "workers: requests in flight (closed loop) or their cap (open loop)")
	rate := fs.Float64("rate", 0, "open loop arrival rate in ops/s; 0 = closed loop")
	warmup := fs.Duration("warmup", 2*time.Second, "load before measuring (not measured)")
	duration := fs.Duration("duration", 10*time.Second, "measured window")
	seed := fs.Uint64("seed", 1, "seed of the workers' operation choices")
	runID := fs.String("run-id", "", "tag of the run's keys and account IDs (letters, digits, . _ : -); empty = random. Reusing one against the same database replays the earlier run's keys instead of doing new work")
	currency := fs.String("currency", "USD", "currency of the accounts (ISO 4217)")
	funding := fs.String("funding", "1000", "amount credited to each account at setup; 0 = none (hot: the paying account gets the largest amount one credit may carry)")
	timeout := fs.Duration("timeout", 30*time.Second, "limit of one request")
	out := fs.String("out", "", "write the result as JSON to this file (with --compare: the comparison, both runs and the ratios)")
	charts := fs.String("charts", "", "write charts to this directory (created if missing): <label>-<workload> per run (throughput, p50/p99 over time), compare-<workload> with --compare (bars of ops/s and p99 per target)")
	chartFormat := fs.String("chart-format", "png", "png|svg")
	dbURL := fs.String("database-url", "", "PostgreSQL URL: run the money audit after the load (exit 1 if it is not clean)")
	brokers := fs.String("kafka-brokers", "", "with --database-url: Kafka seed brokers, to wait until every command is flushed before auditing")
	settle := fs.Duration("settle", 2*time.Second, "with --database-url: wait this long for write-behind before auditing (with --kafka-brokers: the longest wait for unflushed work)")
	compare := fs.String("compare", "", "\"baseline\": also run the workload against the naive-PostgreSQL baseline and report the ratios")
	baselineTarget := fs.String("baseline-target", "", "with --compare baseline: base URL of a running baseline server; empty = start one in this process on a free loopback port")
	baselineDB := fs.String("baseline-database-url", "", "with --compare baseline: PostgreSQL of the baseline's tables (baseline_*), for the in-process server and the baseline's audit; empty = --database-url")
	baselineConns := fs.Int("baseline-max-conns", 0, "with --compare baseline and no --baseline-target: the in-process baseline's pool size; 0 = 4 × GOMAXPROCS")
	sweep := fs.String("sweep", "", "comma-separated concurrencies, e.g. 1,8,64,256: run the workload closed-loop at each against Bursar and the baseline (see above)")
	baselinePools := fs.String("baseline-pools", "8,16,32,64", "with --sweep: the baseline pool sizes tried at each concurrency (the best is reported)")
	nodePID := fs.Int("node-pid", 0, "with --sweep: PID of the node under test, for its CPU; 0 = every local process whose command line is `bursar serve`")
	consistency := fs.String("consistency", "strong", "balance reads (workloads reads, mixed): strong (the owner's memory) or eventual (?consistency=eventual: from Redis where the node has it)")
	batchSize := fs.Int("batch-size", bench.BatchSizeDefault, fmt.Sprintf("workload batch: transfers per batch request, in [1, %d]", bench.BatchSizeMax))
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	usage := func(format string, a ...any) error { return &exitError{code: 2, err: fmt.Errorf(format, a...)} }
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *chartFormat != "png" && *chartFormat != "svg" {
		return usage("--chart-format must be png or svg, got %q", *chartFormat)
	}
	var concurrencies, pools []int
	if *sweep != "" || set["sweep"] {
		var err error
		if concurrencies, err = bench.ParseIntList("--sweep", *sweep, bench.ConcurrencyMax, bench.SweepPointsMax); err != nil {
			return usage("%v", err)
		}
		if pools, err = bench.ParseIntList("--baseline-pools", *baselinePools, baseline.MaxConnsMax, bench.SweepPoolsMax); err != nil {
			return usage("%v", err)
		}
		for _, f := range []string{"concurrency", "rate", "compare", "baseline-target", "baseline-max-conns"} {
			if set[f] {
				return usage("--%s does not go with --sweep (a sweep is closed loop at each --sweep concurrency, against baselines it starts itself)", f)
			}
		}
		if *nodePID < 0 {
			return usage("--node-pid must be a PID or 0, got %d", *nodePID)
		}
		if !set["funding"] {
			*funding = sweepFundingDefault
		}
	} else if set["baseline-pools"] || set["node-pid"] {
		return usage("--baseline-pools and --node-pid need --sweep")
	}
	if *workload == bench.WorkloadBatch && *compare != "" {
		return usage("--compare baseline: the baseline has no batch endpoint; compare with workload uniform (single transfers) instead")
	}
	if *compare != "" && *compare != compareBaseline {
		return usage("--compare must be empty or %q, got %q", compareBaseline, *compare)
	}
	if *baselineDB == "" {
		*baselineDB = *dbURL
	}
	if *compare != "" && *baselineTarget == "" && *baselineDB == "" {
		return usage("--compare baseline needs --baseline-target, or --baseline-database-url (or --database-url) to start a baseline in this process")
	}
	if *compare == "" && (*baselineTarget != "" || *baselineConns != 0) {
		return usage("--baseline-target and --baseline-max-conns need --compare baseline")
	}
	if *baselineConns < 0 || *baselineConns > baseline.MaxConnsMax {
		return usage("--baseline-max-conns must be in [0, %d], got %d", baseline.MaxConnsMax, *baselineConns)
	}
	if *runID == "" {
		// One ID for both targets of a comparison: the same account IDs
		// and the same sequence of operations on each.
		var b [5]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		*runID = hex.EncodeToString(b[:])
	}
	if *charts != "" {
		if err := os.MkdirAll(*charts, 0o755); err != nil {
			return usage("--charts: %v", err)
		}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := bench.Config{
		Target: *target, Label: "bursar", Partitions: *partitions, Workload: *workload, Accounts: *accounts,
		Concurrency: *concurrency, Rate: *rate, Warmup: *warmup, Duration: *duration, Seed: *seed,
		RunID: *runID, Currency: *currency, Funding: *funding, RequestTimeout: *timeout, Log: log,
		BatchSize: *batchSize, Consistency: *consistency,
	}
	if *compare == "" {
		cfg.Out = *out
	}
	if *dbURL != "" {
		cfg.Audit = bursarAudit(log, *dbURL, splitList(*brokers), *settle)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.APIKey = *apiKey
	if err := cfg.Check(); err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg.APIKey == "" && *dbURL != "" {
		key, revoke, err := runKey(*dbURL, "bench "+*runID)
		if err != nil {
			return err
		}
		defer revoke()
		cfg.APIKey = key
	}
	if concurrencies != nil {
		return runSweep(ctx, log, cfg, sweepFlags{
			concurrencies: concurrencies, pools: pools, nodePID: *nodePID, baselineDB: *baselineDB, dbURL: *dbURL,
			brokers: splitList(*brokers), settle: *settle, out: *out, charts: *charts, chartFormat: *chartFormat, format: *format,
		}, stdout)
	}

	// Start the in-process baseline before anything runs, so that a bad
	// database URL fails at once rather than after Bursar's run. Idle, it
	// costs only its pool's idle connections.
	var inproc *baseline.Running
	if *compare != "" && *baselineTarget == "" {
		var err error
		inproc, err = baseline.Start(ctx, baseline.Config{DatabaseURL: *baselineDB, MaxConns: int32(*baselineConns), Log: log}, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = inproc.Shutdown(sctx)
		}()
		*baselineTarget = inproc.URL
	}

	res, err := bench.Run(ctx, cfg)
	if res == nil {
		var ce *bench.ConfigError
		if errors.As(err, &ce) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	results := []*bench.Result{res}
	runErr := err // the result file could not be written
	if *compare != "" && !res.Interrupted {
		bcfg := cfg
		bcfg.Label, bcfg.Target, bcfg.Out, bcfg.Audit, bcfg.APIKey = compareBaseline, *baselineTarget, "", nil, ""
		switch {
		case inproc != nil:
			bcfg.Audit = baselineAudit(inproc.Audit)
		case *baselineDB != "":
			url := *baselineDB
			bcfg.Audit = baselineAudit(func(ctx context.Context) (*baseline.AuditReport, error) { return baseline.AuditURL(ctx, url) })
		default:
			log.Warn("no --baseline-database-url: the baseline's run is not audited")
		}
		bres, err := bench.Run(ctx, bcfg)
		if bres == nil {
			return fmt.Errorf("baseline run: %w", err)
		}
		results = append(results, bres)
	}

	var cmp *bench.Comparison
	if len(results) == 2 {
		if cmp, err = bench.Compare(results...); err != nil {
			return err
		}
		if *out != "" {
			if err := cmp.WriteFile(*out); err != nil && runErr == nil {
				runErr = err
			}
		}
	}
	if *format == "json" {
		var v any = res
		if cmp != nil {
			v = cmp
		}
		if err := writeJSONOut(stdout, v); err != nil {
			return err
		}
	} else {
		for i, r := range results {
			if i > 0 {
				fmt.Fprintln(stdout)
				fmt.Fprintln(stdout, strings.Repeat("─", 72))
				fmt.Fprintln(stdout)
			}
			printBench(stdout, r)
		}
		if cmp != nil {
			fmt.Fprintln(stdout)
			printComparison(stdout, cmp)
		}
	}
	if *charts != "" {
		for _, r := range results {
			path, err := chart.Run(*charts, *chartFormat, r)
			if err != nil {
				return err
			}
			log.Info("chart written", "path", path)
		}
		if cmp != nil {
			path, err := chart.Compare(*charts, *chartFormat, cmp)
			if err != nil {
				return err
			}
			log.Info("chart written", "path", path)
		}
	}
	if runErr != nil {
		return runErr
	}
	for _, r := range results {
		if a := r.Audit; a != nil {
			switch {
			case a.Report != nil && !a.Clean:
				return &exitError{code: 1, err: fmt.Errorf("the money audit of %s found violations", r.Label)}
			case a.Error != "":
				return &exitError{code: 2, err: fmt.Errorf("audit of %s could not check: %s", r.Label, a.Error)}
			}
		}
	}
	for _, r := range results {
		if r.Interrupted {
			// Partial numbers are printed, but a script must not take them
			// for a complete run.
			return &exitError{code: 1, err: errors.New("interrupted before the end of the measured window")}
		}
	}
	return nil
}

// runKey creates an API key with every scope but admin for one bench
// run, and returns it with the function that revokes it.
func runKey(dbURL, name string) (string, func(), error) {
	ctx, store, done, err := openKeyStore(dbURL)
	if err != nil {
		return "", nil, err
	}
	scopes, _ := auth.ParseScopes("all")
	token, id, hash := auth.NewToken()
	if err := store.CreateAPIKey(ctx, storage.APIKey{ID: id, Name: name, Hash: hash[:], Scopes: auth.Names(scopes)}); err != nil {
		done()
		return "", nil, err
	}
	return token, func() {
		defer done()
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := store.RevokeAPIKey(rctx, id); err != nil {
			slog.Warn("revoking the bench's API key", "key_id", id, "err", err)
		}
	}, nil
}

// bursarAudit is the money audit of Bursar's tables after a run.
func bursarAudit(log *slog.Logger, url string, brokers []string, wait time.Duration) func(context.Context) (bench.AuditOutcome, error) {
	return func(ctx context.Context) (bench.AuditOutcome, error) {
		if len(brokers) == 0 {
			// Without the log's end offsets the audit cannot tell what
			// is unflushed; give write-behind (flush interval 10ms by
			// default) a generous moment instead.
			log.Info("waiting for write-behind before the audit", "settle", wait)
			time.Sleep(wait)
		}
		ctx, cancel := context.WithTimeout(ctx, wait+5*time.Minute)
		defer cancel()
		rep, err := audit(ctx, url, brokers, nil, wait)
		if err != nil {
			return bench.AuditOutcome{}, err
		}
		out := bench.AuditOutcome{Clean: rep.Clean, Report: rep}
		if rep.Unflushed > 0 { // as bursar audit: not a violation, but not a full check
			out.Error = fmt.Sprintf("%d log records are not flushed yet; the audit covers only what is", rep.Unflushed)
		}
		return out, nil
	}
}

// baselineAudit is the baseline's conservation audit after its run. Every
// baseline operation has committed before it is answered, so there is
// nothing to wait for.
func baselineAudit(run func(context.Context) (*baseline.AuditReport, error)) func(context.Context) (bench.AuditOutcome, error) {
	return func(ctx context.Context) (bench.AuditOutcome, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		rep, err := run(ctx)
		if err != nil {
			return bench.AuditOutcome{}, err
		}
		return bench.AuditOutcome{Clean: rep.Clean, Report: rep}, nil
	}
}

// runBaseline runs the baseline's subcommands.
func runBaseline(args []string, stdout io.Writer) error {
	const help = "Usage: bursar bench baseline serve|audit [flags]\n\n" +
		"  serve  run the naive-PostgreSQL baseline server (the same endpoints the bench workloads use)\n" +
		"  audit  check the baseline's money conservation in its tables (exit 1 on a violation, 2 if it could not check)\n"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, help)
		if len(args) == 0 {
			return &exitError{code: 2}
		}
		return nil
	}
	switch args[0] {
	case "serve":
		return runBaselineServe(args[1:])
	case "audit":
		return runBaselineAudit(args[1:], stdout)
	}
	fmt.Fprint(os.Stderr, help)
	return &exitError{code: 2, err: fmt.Errorf("unknown baseline command %q", args[0])}
}

func runBaselineServe(args []string) error {
	fs := newFlagSet("bench baseline serve", "Serves the naive-PostgreSQL baseline: POST /api/v1/accounts, POST /api/v1/transactions/{credit,debit,transfer},\n"+
		"GET /api/v1/accounts/{id}/balance, /healthz and /readyz, with Bursar's JSON shapes and error codes. Each\n"+
		"operation is one PostgreSQL transaction (SELECT … FOR UPDATE in account ID order, check, INSERT the\n"+
		"transaction row under a unique idempotency key, UPDATE, COMMIT with synchronous_commit on). Its tables\n"+
		"(baseline_*) are created at start, so it can share Bursar's database. Runs until SIGINT or SIGTERM.")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (required)")
	addr := fs.String("http-addr", "127.0.0.1:8081", "listen address of the API")
	conns := fs.Int("max-conns", 0, "pgx pool size = transactions in flight; 0 = 4 × GOMAXPROCS")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return &exitError{code: 2, err: errors.New("--database-url is required")}
	}
	if *conns < 0 || *conns > baseline.MaxConnsMax {
		return &exitError{code: 2, err: fmt.Errorf("--max-conns must be in [0, %d], got %d", baseline.MaxConnsMax, *conns)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := baseline.Start(ctx, baseline.Config{DatabaseURL: *dbURL, MaxConns: int32(*conns), Log: log}, *addr)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-r.Done():
		r.Close()
		return fmt.Errorf("baseline: serve: %w", err)
	}
	log.Info("baseline shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.Shutdown(sctx)
}

func runBaselineAudit(args []string, stdout io.Writer) error {
	fs := newFlagSet("bench baseline audit", "Checks the baseline's tables: per currency, the sum of balances equals completed credits minus\n"+
		"completed debits; each balance equals its account's transactions; no balance is below its overdraft\n"+
		"limit. Exit 0 clean, 1 violation, 2 could not check.")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (required)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return &exitError{code: 2, err: errors.New("--database-url is required")}
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := baseline.AuditURL(ctx, *dbURL)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := render(stdout, *format, rep, printBaselineAudit); err != nil {
		return err
	}
	if !rep.Clean {
		return &exitError{code: 1, err: errors.New("the baseline audit found violations")}
	}
	return nil
}

// printBench renders a result for people.
func printBench(w io.Writer, r *bench.Result) {
	loop := fmt.Sprintf("closed loop, %d workers", r.Concurrency)
	if r.Mode == "open" {
		loop = fmt.Sprintf("open loop at %g ops/s, up to %d in flight", r.RateTarget, r.Concurrency)
	}
	fmt.Fprintf(w, "bench %s [%s]: %s, %s, %d accounts, %d partitions, target %s\n", r.RunID, r.Label, r.Workload, loop, r.Accounts, r.Partitions, r.Target)
	fmt.Fprintf(w, "setup %.1fs (%d retries), warmup %.1fs, measured %.3fs, seed %d\n", r.SetupSeconds, r.SetupRetries, r.WarmupSeconds, r.DurationSeconds, r.Seed)
	if r.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: the numbers cover the measured part only")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ops/s\t%.1f\n", r.OpsPerSec)
	fmt.Fprintf(tw, "ops\t%d\t(succeeded %d, expected refusals %d)\n", r.Ops, r.Succeeded, r.Ops-r.Succeeded)
	fmt.Fprintf(tw, "errors\t%d\n", r.ErrorsTotal)
	if r.Mode == "open" {
		fmt.Fprintf(tw, "unsent\t%d\t(due before the end but never sent: the target fell behind the schedule)\n", r.Unsent)
	}
	tw.Flush()
	fmt.Fprintln(w)

	l := r.Latency
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency µs\tp50\tp90\tp99\tp99.9\tmax\t")
	fmt.Fprintf(tw, "\t%d\t%d\t%d\t%d\t%d\t\n", l.P50Us, l.P90Us, l.P99Us, l.P999Us, l.MaxUs)
	tw.Flush()

	printCodes(w, "ops by kind", r.OpsByKind)
	printCodes(w, "expected refusals by code", r.ExpectedRefusals)
	printCodes(w, "errors by code", r.Errors)
	if r.TransportErrorExample != "" {
		fmt.Fprintf(w, "  first transport error: %s\n", r.TransportErrorExample)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "second\tops/s\terrors\tp50 µs\tp99 µs\tmax µs\t")
	for _, s := range r.Series {
		fmt.Fprintf(tw, "%d\t%.1f\t%d\t%d\t%d\t%d\t\n", s.Second, s.OpsPerSec, s.Errors, s.P50Us, s.P99Us, s.MaxUs)
	}
	tw.Flush()

	if a := r.Audit; a != nil {
		fmt.Fprintln(w)
		switch rep := a.Report.(type) {
		case *storage.AuditReport:
			printAudit(w, rep)
		case *baseline.AuditReport:
			printBaselineAudit(w, rep)
		}
		if a.Error != "" {
			fmt.Fprintf(w, "audit: COULD NOT CHECK: %s\n", a.Error)
		}
	}
}

// printComparison renders the side-by-side table and the ratios.
func printComparison(w io.Writer, c *bench.Comparison) {
	fmt.Fprintf(w, "comparison: %s (same run ID, seed and accounts on each target, run back to back)\n\n", c.Workload)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tops/s\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tmax µs\terrors\taudit\t")
	for _, r := range c.Runs {
		verdict := "-"
		if a := r.Audit; a != nil {
			switch {
			case a.Error != "":
				verdict = "could not check"
			case a.Clean:
				verdict = "clean"
			default:
				verdict = "VIOLATIONS"
			}
		}
		l := r.Latency
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.Label, r.OpsPerSec, l.P50Us, l.P90Us, l.P99Us, l.P999Us, l.MaxUs, r.ErrorsTotal, verdict)
	}
	tw.Flush()
	if len(c.Runs) >= 2 {
		a, b := c.Runs[0].Label, c.Runs[1].Label
		fmt.Fprintf(w, "\nratio %s / %s: ops/s %s, p99 %s (below 1 is faster)\n", a, b, ratioText(c.OpsPerSecRatio), ratioText(c.P99Ratio))
	}
}

func ratioText(v float64) string {
	switch {
	case v == 0:
		return "n/a"
	case v < 0.01:
		return fmt.Sprintf("%.2g×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

func printBaselineAudit(w io.Writer, rep *baseline.AuditReport) {
	verdict := "CLEAN"
	if !rep.Clean {
		verdict = "VIOLATIONS FOUND"
	}
	fmt.Fprintf(w, "baseline audit: %s\n\n", verdict)
	printChecks(w, rep.Checks)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENCY\tACCOUNTS\tBALANCES\tCREDITS\tDEBITS\tDISCREPANCY\tTRANSACTIONS\tFAILED")
	for _, c := range rep.Currencies {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", c.Currency, c.Accounts, c.Balances, c.Credits, c.Debits, c.Discrepancy, c.Transactions, c.Failed)
	}
	tw.Flush()
}

func printCodes(w io.Writer, title string, m map[string]int64) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%d\n", k, m[k])
	}
	tw.Flush()
}
