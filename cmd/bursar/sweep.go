package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bursar/bursar/bench"
	"github.com/bursar/bursar/bench/baseline"
	"github.com/bursar/bursar/bench/chart"
	"github.com/bursar/bursar/storage"
)

// Limits of the baseline child process.
const (
	// baselineStartWait bounds how long a started baseline child has to
	// answer GET /readyz 200 (it connects its whole pool first).
	baselineStartWait = 30 * time.Second
	// baselineStopWait bounds how long a child has, after SIGTERM, to
	// finish its requests and exit before it is killed.
	baselineStopWait = 15 * time.Second
	// baselineReadyPoll is the interval between readiness probes: the
	// child is another process, with nothing to wake the parent when it
	// is ready but its answer.
	baselineReadyPoll = 100 * time.Millisecond
)

// sweepFundingDefault replaces --funding's default in a sweep: a sweep
// runs every point on the same accounts, about 5 × (1 + pools) measured
// windows of random walks, and a 1000-unit balance can reach zero under
// such a load; with a million units a refusal for insufficient funds is
// practically impossible, so no point measures a ledger running dry.
const sweepFundingDefault = "1000000"

// sweepFlags are the flags of a sweep, beside the bench's own.
type sweepFlags struct {
	concurrencies []int
	pools         []int
	nodePID       int
	baselineDB    string
	dbURL         string
	brokers       []string
	settle        time.Duration
	out           string
	charts        string
	chartFormat   string
	format        string
}

// runSweep runs `bursar bench --sweep`.
func runSweep(ctx context.Context, log *slog.Logger, cfg bench.Config, f sweepFlags, stdout io.Writer) error {
	sc := bench.SweepConfig{Config: cfg, Concurrencies: f.concurrencies}
	switch {
	case cfg.Workload == bench.WorkloadBatch:
		sc.BaselineNote = "baseline not applicable: it has no batch endpoint (POST /api/v1/transactions/batch)"
	case f.baselineDB == "":
		sc.BaselineNote = "no baseline: no --baseline-database-url or --database-url"
	default:
		sc.BaselinePools = f.pools
		url := f.baselineDB
		sc.StartBaseline = func(ctx context.Context, pool int) (*bench.BaselineServer, error) {
			return startBaselineChild(ctx, log, url, pool)
		}
		sc.BaselineAudit = baselineAudit(func(ctx context.Context) (*baseline.AuditReport, error) { return baseline.AuditURL(ctx, url) })
	}
	if f.dbURL != "" {
		sc.BursarAudit = bursarAudit(log, f.dbURL, f.brokers, f.settle)
	}
	sc.NodePIDs, sc.NodePIDSource = nodePIDs(f.nodePID)
	if len(sc.NodePIDs) == 0 {
		log.Warn("no local `bursar serve` process found: the node's CPU is not reported (give --node-pid)")
	} else {
		log.Info("node CPU from", "pids", sc.NodePIDs, "source", sc.NodePIDSource)
	}
	if f.nodePID == 0 && len(sc.NodePIDs) > 1 {
		// Every node on the machine is summed, which is right for a
		// local cluster under test and wrong for someone else's node.
		log.Warn("several `bursar serve` processes found: the node CPU is their sum; give --node-pid to measure one", "pids", sc.NodePIDs)
	}

	sw, err := bench.RunSweep(ctx, sc)
	if sw == nil {
		var ce *bench.ConfigError
		if errors.As(err, &ce) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	runErr := err
	if f.out != "" {
		if err := sw.WriteFile(f.out); err != nil && runErr == nil {
			runErr = err
		}
	}
	if f.format == "json" {
		if err := writeJSONOut(stdout, sw); err != nil {
			return err
		}
	} else {
		printSweep(stdout, sw)
	}
	if f.charts != "" && len(sw.Points) > 0 {
		path, err := chart.Sweep(f.charts, f.chartFormat, sw)
		if err != nil && runErr == nil {
			runErr = err
		}
		if err == nil {
			log.Info("chart written", "path", path)
		}
	}
	if runErr != nil {
		return runErr
	}
	for _, a := range []struct {
		who string
		o   *bench.AuditOutcome
	}{{"bursar", sw.BursarAudit}, {"baseline", sw.BaselineAudit}} {
		switch {
		case a.o == nil:
		case a.o.Report != nil && !a.o.Clean:
			return &exitError{code: 1, err: fmt.Errorf("the money audit of %s found violations", a.who)}
		case a.o.Error != "":
			return &exitError{code: 2, err: fmt.Errorf("audit of %s could not check: %s", a.who, a.o.Error)}
		}
	}
	if sw.Interrupted {
		return &exitError{code: 1, err: errors.New("interrupted: the sweep is incomplete")}
	}
	return nil
}

// nodePIDs returns the node's processes and how they were found: the
// given PID, or with 0 every local process whose command line is
// `bursar serve` (argv[1] "serve", argv[0]'s base name ending in bursar).
func nodePIDs(pid int) ([]int, string) {
	if pid > 0 {
		return []int{pid}, "--node-pid"
	}
	if pids := bench.FindServePIDs(); len(pids) > 0 {
		return pids, "every process whose /proc/PID/cmdline is `bursar serve` (--node-pid 0)"
	}
	return nil, "none: no process runs `bursar serve` here (--node-pid 0)"
}

// startBaselineChild starts `bursar bench baseline serve` as a child
// process with a pool of pool connections on a free loopback port, and
// waits until it is ready. The child is its own process so that its CPU
// can be read from /proc apart from the bench's.
func startBaselineChild(ctx context.Context, log *slog.Logger, dbURL string, pool int) (*bench.BaselineServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("baseline child: %w", err)
	}
	// A free port: the kernel picks one, and it is released for the
	// child. Another process could take it in between; the child then
	// fails to listen and the error says so.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("baseline child: free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exe, "bench", "baseline", "serve", "--http-addr", addr, "--max-conns", strconv.Itoa(pool))
	// The database URL goes by the environment (DATABASE_URL, which
	// --database-url reads), not argv: argv is readable by every user
	// in /proc/PID/cmdline, and a URL may hold a password.
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// If the bench dies without stopping it (SIGKILL), the kernel sends
	// the child SIGTERM. Pdeathsig follows the thread that forked, and
	// Go's runtime keeps its threads unless a locked goroutine exits,
	// which the bench does not do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("baseline child: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { stopErr = stopChild(cmd, exited) })
		return stopErr
	}
	log.Info("baseline child started", "pid", cmd.Process.Pid, "addr", addr, "max_conns", pool)
	url := "http://" + addr
	if err := waitChildReady(ctx, url, exited); err != nil {
		_ = stop()
		return nil, fmt.Errorf("baseline child with %d connections: %w", pool, err)
	}
	return &bench.BaselineServer{URL: url, PIDs: []int{cmd.Process.Pid}, Stop: stop}, nil
}

// waitChildReady probes url/readyz until it answers 200, the child exits,
// ctx ends or baselineStartWait passes.
func waitChildReady(ctx context.Context, url string, exited <-chan error) error {
	cl := &http.Client{Timeout: time.Second}
	defer cl.CloseIdleConnections()
	deadline := time.NewTimer(baselineStartWait)
	defer deadline.Stop()
	tick := time.NewTicker(baselineReadyPoll)
	defer tick.Stop()
	for {
		if resp, err := cl.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not ready after %s", baselineStartWait)
		case <-tick.C:
		}
	}
}

// stopChild sends SIGTERM, waits up to baselineStopWait, then kills.
func stopChild(cmd *exec.Cmd, exited <-chan error) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// Already gone: collect it.
		<-exited
		return nil
	}
	t := time.NewTimer(baselineStopWait)
	defer t.Stop()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) && !ee.Exited() {
			return nil // ended by the signal itself
		}
		return err
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("baseline child %d did not stop within %s of SIGTERM; killed", cmd.Process.Pid, baselineStopWait)
	}
}

// printSweep renders a sweep for people: one row per concurrency, then
// the stage breakdowns, the audits and the notes.
func printSweep(w io.Writer, s *bench.Sweep) {
	unit := s.OpsUnit
	fmt.Fprintf(w, "sweep %s: %s, %d accounts, %d partitions, funding %s each, warmup %.1fs + %.1fs measured per point, target %s\n",
		s.RunID, s.Workload, s.Accounts, s.Partitions, s.Funding, s.WarmupSeconds, s.DurationSeconds, s.Target)
	switch {
	case s.Workload == bench.WorkloadBatch:
		fmt.Fprintf(w, "%s/s counts transfers: batch items answered 201; latency is per batch request\n", unit)
	case unit == "transfers":
		fmt.Fprintln(w, "transfers/s: each operation is one transfer")
	}
	fmt.Fprintf(w, "node CPU: %s %v; clock %d ticks/s (%s)\n", s.NodePIDSource, s.NodePIDs, s.ClockTicksPerSec, s.ClockTicksSource)
	if s.BaselineNote != "" {
		fmt.Fprintln(w, s.BaselineNote)
	}
	if s.Interrupted {
		fmt.Fprintln(w, "INTERRUPTED: the sweep is incomplete")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "clients\tbursar %s/s\tp50 µs\tp99 µs\tnode µs/op\tPG µs/op\tbench µs/op\tidle %%\t", unit)
	fmt.Fprintf(tw, "| base pool\tbase %s/s\tp50 µs\tp99 µs\tserver µs/op\tPG µs/op\tidle %%\t| ratio %s/s\tratio p99\t\n", unit, unit)
	for _, p := range s.Points {
		fmt.Fprintf(tw, "%d\t", p.Clients)
		if b := p.Bursar; b != nil {
			fmt.Fprintf(tw, "%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t", b.OpsPerSec, b.P50Us, b.P99Us,
				usPtr(b.CPU, func(c *bench.CPUUse) *float64 { return c.ServerUsPerOp }),
				usPtr(b.CPU, func(c *bench.CPUUse) *float64 { return &c.PostgresUsPerOp }),
				usPtr(b.CPU, func(c *bench.CPUUse) *float64 { return &c.BenchUsPerOp }), idle(b.CPU))
		} else {
			fmt.Fprint(tw, "-\t-\t-\t-\t-\t-\t-\t")
		}
		if b := p.Baseline; b != nil {
			fmt.Fprintf(tw, "| %d\t%.1f\t%d\t%d\t%s\t%s\t%s\t| %s\t%s\t\n", b.Pool, b.OpsPerSec, b.P50Us, b.P99Us,
				usPtr(b.CPU, func(c *bench.CPUUse) *float64 { return c.ServerUsPerOp }),
				usPtr(b.CPU, func(c *bench.CPUUse) *float64 { return &c.PostgresUsPerOp }), idle(b.CPU),
				ratioText(p.OpsPerSecRatio), ratioText(p.P99Ratio))
		} else {
			fmt.Fprint(tw, "| -\t-\t-\t-\t-\t-\t-\t| -\t-\t\n")
		}
	}
	tw.Flush()

	printSweepErrors(w, s)
	printPools(w, s)
	printStages(w, s)

	for _, a := range []struct {
		who string
		o   *bench.AuditOutcome
	}{{"bursar", s.BursarAudit}, {"baseline", s.BaselineAudit}} {
		if a.o == nil {
			continue
		}
		fmt.Fprintln(w)
		switch rep := a.o.Report.(type) {
		case *storage.AuditReport:
			printAudit(w, rep)
		case *baseline.AuditReport:
			printBaselineAudit(w, rep)
		}
		if a.o.Error != "" {
			fmt.Fprintf(w, "%s audit: COULD NOT CHECK: %s\n", a.who, a.o.Error)
		}
	}
	fmt.Fprintln(w)
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// printSweepErrors lists the points that had errors, by code.
func printSweepErrors(w io.Writer, s *bench.Sweep) {
	for _, p := range s.Points {
		for _, sp := range append([]*bench.SystemPoint{p.Bursar}, p.BaselinePools...) {
			if sp == nil || sp.ErrorsTotal == 0 {
				continue
			}
			who := sp.Label
			if sp.Pool > 0 {
				who += " pool " + strconv.Itoa(sp.Pool)
			}
			printCodes(w, fmt.Sprintf("errors at %d clients, %s", p.Clients, who), sp.Run.Errors)
		}
	}
}

// printPools shows every baseline pool tried, so that the best pool's
// margin is visible.
func printPools(w io.Writer, s *bench.Sweep) {
	if len(s.BaselinePools) < 2 {
		return
	}
	fmt.Fprintf(w, "\nbaseline %s/s by pool size\n", s.OpsUnit)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "clients\t")
	for _, n := range s.BaselinePools {
		fmt.Fprintf(tw, "pool %d\t", n)
	}
	fmt.Fprintln(tw)
	for _, p := range s.Points {
		fmt.Fprintf(tw, "%d\t", p.Clients)
		for _, n := range s.BaselinePools {
			v := "-"
			for _, sp := range p.BaselinePools {
				if sp.Pool == n {
					v = fmt.Sprintf("%.1f", sp.OpsPerSec)
				}
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// printStages shows each Bursar point's stage breakdown: cumulative
// times since the ingress received the request.
func printStages(w io.Writer, s *bench.Sweep) {
	fmt.Fprintf(w, "\nbursar stages (%s: time from ingress receipt to each stage, cumulative; mean and bucket-interpolated p50, µs)\n", bench.StageMetric)
	for _, p := range s.Points {
		b := p.Bursar
		if b == nil || b.Stages == nil {
			continue
		}
		st := b.Stages
		if !st.Present || len(st.Stages) == 0 {
			why := ""
			if st.Error != "" {
				why = " (" + st.Error + ")"
			}
			fmt.Fprintf(w, "  %d clients: no stage metrics%s\n", p.Clients, why)
			continue
		}
		var parts []string
		for _, x := range st.Stages {
			parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", x.Stage, x.MeanUs, x.P50Us))
		}
		fmt.Fprintf(w, "  %d clients: %s\n", p.Clients, strings.Join(parts, "  "))
	}
}

func usPtr(c *bench.CPUUse, v func(*bench.CPUUse) *float64) string {
	if c == nil || v(c) == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v(c))
}

func idle(c *bench.CPUUse) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", c.IdleFraction*100)
}
