package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/storage"
	"github.com/twmb/franz-go/pkg/kgo"
)

func runMigrate(args []string, stdout io.Writer) error {
	fs := newFlagSet("migrate", "Applies the embedded PostgreSQL migrations (serve also does this at start).")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := storage.Open(ctx, storage.Config{URL: *url, MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	applied, err := store.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "applied", name)
	}
	return nil
}

func runBroker(args []string, stdout io.Writer) error {
	fs := newFlagSet("broker", "Runs the embedded Kafka-protocol broker (franz-go kfake, persisted with fsync) on its own so\nseveral local nodes can share it. A DEVELOPMENT broker: single node, no replication. Production\npoints KAFKA_BROKERS at a real Kafka or Redpanda cluster.")
	dir := fs.String("data-dir", "./bursar-data", "where the broker keeps its log")
	listen := fs.String("listen", "127.0.0.1:9092", "listen address")
	fsync := fs.Bool("fsync", true, "fsync every produced batch before acknowledging it (false: survive kill -9 but not power loss, much faster)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Batch, not group: the nodes using this broker cannot wait for its
	// group sync, so every acknowledgement must already be durable.
	mode := kafkalog.SyncNone
	if *fsync {
		mode = kafkalog.SyncBatch
	}
	b, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: *dir, Listen: *listen, Sync: mode})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintln(stdout, "development broker listening on", b.Addrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func runPartitions(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "ls" {
		return &exitError{code: 2, err: errors.New("usage: bursar partitions ls [--database-url URL] [--format table|json]")}
	}
	fs := newFlagSet("partitions ls", "Lists partitions: owner, epoch and committed offset (from PostgreSQL).")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := storage.Open(ctx, storage.Config{URL: *url, MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	rows, err := store.Partitions(ctx)
	if err != nil {
		return err
	}
	return render(stdout, *format, rows, printPartitions)
}

func printPartitions(w io.Writer, rows []storage.PartitionRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tEPOCH\tCOMMITTED OFFSET\tUPDATED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\n", r.Partition, r.Owner, r.Epoch, r.NextOffset, r.UpdatedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}

// formatFlag registers --format: how a command prints its result.
func formatFlag(fs *flag.FlagSet) *string { return fs.String("format", "table", "table|json") }

// checkFormat refuses a --format other than table or json (exit 2).
func checkFormat(format string) error {
	if format != "table" && format != "json" {
		return &exitError{code: 2, err: fmt.Errorf("--format must be table or json, got %q", format)}
	}
	return nil
}

// render prints v as indented JSON for --format=json, else as table prints it.
func render[T any](w io.Writer, format string, v T, table func(io.Writer, T)) error {
	if format == "json" {
		return writeJSONOut(w, v)
	}
	table(w, v)
	return nil
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runAudit(args []string, stdout io.Writer) error {
	fs := newFlagSet("audit", "Checks the money invariants in PostgreSQL: conservation per currency, no balance below its\noverdraft limit, balance = sum of entries, no gaps, no duplicated operation, transfer legs matched.\nWith --kafka-brokers it also compares committed offsets with the log and waits (up to --wait)\nfor unflushed work instead of judging a half-written state.\nExit 0 clean, 1 violation, 2 could not check.")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	brokers := fs.String("kafka-brokers", "", "Kafka seed brokers, to measure unflushed work (optional)")
	sec := kafkaSecurityFlags(fs)
	wait := fs.Duration("wait", 30*time.Second, "with --kafka-brokers: how long to wait for unflushed work to drain")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait+5*time.Minute)
	defer cancel()
	kafkaOpts, err := sec.Options()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	rep, err := audit(ctx, *url, splitList(*brokers), kafkaOpts, *wait)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := render(stdout, *format, rep, printAudit); err != nil {
		return err
	}
	if !rep.Clean {
		return &exitError{code: 1, err: errors.New("")}
	}
	if rep.Unflushed > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d log records are not flushed yet; the audit covers only what is", rep.Unflushed)}
	}
	return nil
}

// kafkaSecurityFlags registers the flags of the Kafka clients' TLS and
// SASL (kafkalog.Security), for a broker that asks for them.
func kafkaSecurityFlags(fs *flag.FlagSet) *kafkalog.Security {
	s := &kafkalog.Security{}
	fs.BoolVar(&s.TLS, "kafka-tls", false, "dial the Kafka brokers over TLS (implied by the other --kafka-tls-* flags)")
	fs.StringVar(&s.CAFile, "kafka-tls-ca", "", "PEM CA the brokers' certificates are checked against (default: the system's roots)")
	fs.StringVar(&s.CertFile, "kafka-tls-cert", "", "PEM client certificate, for brokers that want mutual TLS")
	fs.StringVar(&s.KeyFile, "kafka-tls-key", "", "PEM key of --kafka-tls-cert")
	fs.StringVar(&s.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN (over TLS only), SCRAM-SHA-256 or SCRAM-SHA-512; empty: none")
	fs.StringVar(&s.SASLUser, "kafka-sasl-user", "", "SASL user")
	fs.StringVar(&s.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer the environment variable to the flag: flags show in process lists)")
	return s
}

// audit runs the storage audit, first waiting for the log to be flushed
// when brokers are given.
func audit(ctx context.Context, url string, brokers []string, kafkaOpts []kgo.Opt, wait time.Duration) (*storage.AuditReport, error) {
	store, err := storage.Open(ctx, storage.Config{URL: url, MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	var ends map[int32]int64
	if len(brokers) > 0 {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafkaOpts...)...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		deadline := time.Now().Add(wait)
		for {
			if ends, err = kafkalog.EndOffsets(ctx, cl); err != nil {
				return nil, err
			}
			rep, err := store.Audit(ctx, ends)
			if err != nil {
				return nil, err
			}
			if rep.Unflushed == 0 || time.Now().After(deadline) {
				return rep, nil
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return store.Audit(ctx, nil)
}

// printChecks renders audit checks and their examples (Bursar's and the
// baseline's share the shape).
func printChecks(w io.Writer, checks []storage.AuditCheck) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tVIOLATIONS")
	for _, c := range checks {
		res := "ok"
		if !c.OK {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Name, res, c.Violations)
	}
	tw.Flush()
	for _, c := range checks {
		for _, ex := range c.Examples {
			fmt.Fprintf(w, "  %s: %s\n", c.Name, ex)
		}
	}
	fmt.Fprintln(w)
}

func printAudit(w io.Writer, rep *storage.AuditReport) {
	verdict := "CLEAN"
	if !rep.Clean {
		verdict = "VIOLATIONS FOUND"
	}
	fmt.Fprintf(w, "audit: %s\n\n", verdict)
	printChecks(w, rep.Checks)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENCY\tACCOUNTS\tBALANCES\tIN\tOUT\tIN FLIGHT\tDISCREPANCY")
	for _, c := range rep.Currencies {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", c.Currency, c.Accounts, c.Balances, c.ExternalIn, c.ExternalOut, c.InFlight, c.Discrepancy)
	}
	tw.Flush()
	if rep.Unflushed > 0 {
		fmt.Fprintf(w, "\nunflushed log records: %d (not yet in PostgreSQL; not judged)\n", rep.Unflushed)
	}
}
