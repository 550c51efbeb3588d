package main

import (
	"context"
	"errors"
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

	"github.com/bursar/bursar/bench"
	"github.com/bursar/bursar/storage"
)

func runBench(args []string, stdout io.Writer) error {
	var workloads strings.Builder
	for _, w := range bench.Workloads() {
		avail := ""
		if !w.Available {
			avail = " [not yet: needs transfers]"
		}
		fmt.Fprintf(&workloads, "\n  %-16s %s%s", w.Name, w.Description, avail)
	}
	fs := newFlagSet("bench", "Drives load against a running node through the REST API: opens and funds --accounts accounts,\n"+
		"warms up, then measures for --duration. Closed loop with --concurrency workers, or open loop at\n"+
		"--rate ops/s (latency from each operation's due time, so a stalled server cannot hide its stall).\n"+
		"Reports ops/s, latency percentiles (µs), errors by code and a per-second series; --out writes JSON.\n"+
		"With --database-url it ends with the money audit.\n"+
		"Workloads:"+workloads.String()+"\n"+
		"Exit 0 done; 1 failure or audit violation; 2 usage error or the audit could not check.")
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of a node with the ingress role")
	workload := fs.String("workload", bench.WorkloadCreditDebit, "operation mix (see above)")
	accounts := fs.Int("accounts", 1000, "accounts to open and fund at setup")
	concurrency := fs.Int("concurrency", 64, "workers: requests in flight (closed loop) or their cap (open loop)")
	rate := fs.Float64("rate", 0, "open loop arrival rate in ops/s; 0 = closed loop")
	warmup := fs.Duration("warmup", 2*time.Second, "load before measuring (not measured)")
	duration := fs.Duration("duration", 10*time.Second, "measured window")
	seed := fs.Uint64("seed", 1, "seed of the workers' operation choices")
	currency := fs.String("currency", "USD", "currency of the accounts (ISO 4217)")
	funding := fs.String("funding", "1000", "amount credited to each account at setup; 0 = none")
	timeout := fs.Duration("timeout", 30*time.Second, "limit of one request")
	out := fs.String("out", "", "write the result as JSON to this file")
	dbURL := fs.String("database-url", "", "PostgreSQL URL: run the money audit after the load (exit 1 if it is not clean)")
	brokers := fs.String("kafka-brokers", "", "with --database-url: Kafka seed brokers, to wait until every command is flushed before auditing")
	settle := fs.Duration("settle", 2*time.Second, "with --database-url: wait this long for write-behind before auditing (with --kafka-brokers: the longest wait for unflushed work)")
	format := fs.String("format", "table", "table|json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return &exitError{code: 2, err: fmt.Errorf("--format must be table or json, got %q", *format)}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := bench.Config{
		Target: *target, Workload: *workload, Accounts: *accounts, Concurrency: *concurrency,
		Rate: *rate, Warmup: *warmup, Duration: *duration, Seed: *seed, Currency: *currency,
		Funding: *funding, RequestTimeout: *timeout, Out: *out, Log: log,
	}
	if *dbURL != "" {
		url, brokerList, wait := *dbURL, splitList(*brokers), *settle
		cfg.Audit = func(ctx context.Context) (bench.AuditOutcome, error) {
			if len(brokerList) == 0 {
				// Without the log's end offsets the audit cannot tell what
				// is unflushed; give write-behind (flush interval 10ms by
				// default) a generous moment instead.
				log.Info("waiting for write-behind before the audit", "settle", wait)
				time.Sleep(wait)
			}
			ctx, cancel := context.WithTimeout(ctx, wait+5*time.Minute)
			defer cancel()
			rep, err := audit(ctx, url, brokerList, wait)
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg)
	if res == nil {
		var ce *bench.ConfigError
		if errors.As(err, &ce) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	if *format == "json" {
		if werr := writeJSONOut(stdout, res); werr != nil {
			return werr
		}
	} else {
		printBench(stdout, res)
	}
	if err != nil { // the result file could not be written
		return err
	}
	if a := res.Audit; a != nil {
		switch {
		case a.Report != nil && !a.Clean:
			return &exitError{code: 1, err: errors.New("the money audit found violations")}
		case a.Error != "":
			return &exitError{code: 2, err: fmt.Errorf("audit could not check: %s", a.Error)}
		}
	}
	if res.Interrupted {
		// Partial numbers are printed, but a script must not take them for
		// a complete run.
		return &exitError{code: 1, err: errors.New("interrupted before the end of the measured window")}
	}
	return nil
}

// printBench renders a result for people.
func printBench(w io.Writer, r *bench.Result) {
	loop := fmt.Sprintf("closed loop, %d workers", r.Concurrency)
	if r.Mode == "open" {
		loop = fmt.Sprintf("open loop at %g ops/s, up to %d in flight", r.RateTarget, r.Concurrency)
	}
	fmt.Fprintf(w, "bench %s: %s, %s, %d accounts, target %s\n", r.RunID, r.Workload, loop, r.Accounts, r.Target)
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
	fmt.Fprintln(tw, "second\tops/s\terrors\tp99 µs\tmax µs\t")
	for _, s := range r.Series {
		fmt.Fprintf(tw, "%d\t%.1f\t%d\t%d\t%d\t\n", s.Second, s.OpsPerSec, s.Errors, s.P99Us, s.MaxUs)
	}
	tw.Flush()

	if a := r.Audit; a != nil {
		fmt.Fprintln(w)
		if rep, ok := a.Report.(*storage.AuditReport); ok {
			printAudit(w, rep)
		}
		if a.Error != "" {
			fmt.Fprintf(w, "audit: COULD NOT CHECK: %s\n", a.Error)
		}
	}
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
