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
	"github.com/bursar/bursar/ledger"
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
	if len(args) > 0 {
		switch args[0] {
		case "plan":
			return partitionsPlan(args[1:], stdout)
		case "scale":
			return partitionsScale(args[1:], stdout)
		case "move-slot":
			return partitionsMoveSlot(args[1:], stdout)
		}
	}
	if len(args) == 0 || args[0] != "ls" {
		return &exitError{code: 2, err: errors.New("usage: bursar partitions ls | plan --to N | scale --to N | move-slot SLOT --to P")}
	}
	fs := newFlagSet("partitions ls", "Lists partitions: the slots the slot map gives each, owner, epoch and committed offset (from PostgreSQL), and the slot map's version.")
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
	view := partitionsLs{Partitions: []partitionLsRow{}}
	m, err := store.SlotMap(ctx)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// No node has started on this database yet.
	case err != nil:
		return err
	default:
		view.SlotMap = &slotMapView{Version: m.Version, Partitions: m.Partitions}
		st, err := store.RouteState(ctx)
		if err != nil {
			return err
		}
		if st.Prev != nil {
			mig := ledger.NewMigration(st.Prev.Map, st.Slots.Map)
			if len(st.Handed) < len(mig.Groups()) {
				mv := &migrationLs{FromVersion: st.Prev.Map.Version, ToVersion: m.Version, Started: st.Slots.Created}
				for g, grp := range mig.Groups() {
					h, ok := st.Handed[g]
					row := migrationGroupLs{Group: g, From: grp.From, To: grp.To, Slots: len(grp.Slots), HandedOver: ok}
					if ok {
						row.HandedAt = &h.HandedAt
						mv.HandedOver++
					}
					mv.Groups = append(mv.Groups, row)
				}
				view.Migration = mv
			}
		}
	}
	byPart := map[int32]storage.PartitionRow{}
	for _, r := range rows {
		byPart[r.Partition] = r
	}
	n := int32(0)
	if m != nil {
		n = m.Partitions
	}
	for _, r := range rows {
		n = max(n, r.Partition+1)
	}
	var counts []int
	if m != nil {
		counts = m.Counts()
	}
	for p := range n {
		r := byPart[p]
		v := partitionLsRow{PartitionRow: r}
		v.Partition = p
		if int(p) < len(counts) {
			v.Slots = counts[p]
		}
		view.Partitions = append(view.Partitions, v)
	}
	return render(stdout, *format, view, printPartitions)
}

// partitionsLs is what partitions ls prints.
type partitionsLs struct {
	SlotMap    *slotMapView     `json:"slot_map"`  // null before any node started
	Migration  *migrationLs     `json:"migration"` // null when none is in flight
	Partitions []partitionLsRow `json:"partitions"`
}

// migrationLs is a slot migration in flight.
type migrationLs struct {
	FromVersion int64              `json:"from_version"`
	ToVersion   int64              `json:"to_version"`
	Started     time.Time          `json:"started"`
	HandedOver  int                `json:"handed_over"`
	Groups      []migrationGroupLs `json:"groups"`
}

type migrationGroupLs struct {
	Group      int        `json:"group"`
	From       int32      `json:"from"`
	To         int32      `json:"to"`
	Slots      int        `json:"slots"`
	HandedOver bool       `json:"handed_over"`
	HandedAt   *time.Time `json:"handed_at"`
}

type slotMapView struct {
	Version    int64 `json:"version"`
	Partitions int32 `json:"partitions"`
}

type partitionLsRow struct {
	storage.PartitionRow
	Slots int `json:"slots"`
}

func printPartitions(w io.Writer, v partitionsLs) {
	if v.SlotMap != nil {
		fmt.Fprintf(w, "slot map version %d: %d slots over %d partitions\n", v.SlotMap.Version, ledger.SlotCount, v.SlotMap.Partitions)
	} else {
		fmt.Fprintln(w, "no slot map yet (no node has started on this database)")
	}
	if mv := v.Migration; mv != nil {
		fmt.Fprintf(w, "migration in flight since %s: version %d → %d, %d of %d groups handed over (bursar partitions scale resumes it; nodes resume it by themselves after 10s without progress)\n",
			mv.Started.UTC().Format(time.RFC3339), mv.FromVersion, mv.ToVersion, mv.HandedOver, len(mv.Groups))
		for _, g := range mv.Groups {
			state := "waiting"
			if g.HandedOver {
				state = "handed over " + g.HandedAt.UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(w, "  group %d: %d slots %d → %d: %s\n", g.Group, g.Slots, g.From, g.To, state)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSLOTS\tOWNER\tEPOCH\tCOMMITTED OFFSET\tUPDATED")
	for _, r := range v.Partitions {
		updated := "-"
		if !r.UpdatedAt.IsZero() {
			updated = r.UpdatedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%s\n", r.Partition, r.Slots, r.Owner, r.Epoch, r.NextOffset, updated)
	}
	tw.Flush()
}

// partitionsPlan prints what scaling the slot map to --to partitions
// would move: the slots of each (from, to) group, in the order a
// migration moves them. It changes nothing.
func partitionsPlan(args []string, stdout io.Writer) error {
	cmd := newStoreCommand("partitions plan", "Shows what scaling to --to partitions moves: slots per (from, to) group, in migration order, from the slot map PostgreSQL holds. Changes nothing.")
	to := cmd.fs.Int("to", 0, "the partition count to plan for (more than the map's, at most 4096)")
	if err := cmd.parse(args); err != nil {
		return err
	}
	format := cmd.format
	if *to <= 0 || *to > ledger.PartitionsMax {
		return &exitError{code: 2, err: fmt.Errorf("--to must be 1 to %d", ledger.PartitionsMax)}
	}
	ctx, store, done, err := cmd.open()
	if err != nil {
		return err
	}
	defer done()
	m, err := store.SlotMap(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return &exitError{code: 1, err: errors.New("no slot map yet: start a node on this database first")}
	}
	if err != nil {
		return err
	}
	next, err := m.Scale(int32(*to))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--to %d from %d partitions: %w", *to, m.Partitions, err)}
	}
	plan := scalePlan{FromVersion: m.Version, ToVersion: next.Version, From: m.Partitions, To: next.Partitions, Groups: []scaleGroup{}}
	for _, g := range m.Moves(next) {
		plan.Groups = append(plan.Groups, scaleGroup{g.From, g.To, len(g.Slots)})
		plan.Moved += len(g.Slots)
	}
	return render(stdout, *format, plan, func(w io.Writer, plan scalePlan) {
		fmt.Fprintf(w, "slot map v%d (%d partitions) → v%d (%d partitions): %d of %d slots move (%.1f%%), in %d groups\n",
			plan.FromVersion, plan.From, plan.ToVersion, plan.To, plan.Moved, ledger.SlotCount, 100*float64(plan.Moved)/ledger.SlotCount, len(plan.Groups))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FROM\tTO\tSLOTS")
		for _, g := range plan.Groups {
			fmt.Fprintf(tw, "%d\t%d\t%d\n", g.From, g.To, g.Slots)
		}
		tw.Flush()
	})
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

// scalePlan is partitions plan's answer.
type scalePlan struct {
	FromVersion int64        `json:"from_version"`
	ToVersion   int64        `json:"to_version"`
	From        int32        `json:"from_partitions"`
	To          int32        `json:"to_partitions"`
	Moved       int          `json:"slots_moved"`
	Groups      []scaleGroup `json:"groups"`
}

// scaleGroup is the slots that move between one pair of partitions.
type scaleGroup struct {
	From  int32 `json:"from"`
	To    int32 `json:"to"`
	Slots int   `json:"slots"`
}
