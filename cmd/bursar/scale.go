package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/ledger"
)

// partitionsScale is `bursar partitions scale --to N`: the node at --addr
// drives the migration (it grows the topic with its own Kafka client and
// credentials) and this command follows it until it ends.
func partitionsScale(args []string, stdout io.Writer) error {
	fs := newFlagSet("partitions scale", "Grows bursar.commands to --to partitions and moves about 1 − old/new of the slots to the new\nones, under load, one group at a time through a barrier (the README's runbook). Resumes a\nmigration in flight first; at --to partitions already it does nothing. The node at --addr drives\nit; this command prints its progress until it ends (interrupting it leaves the migration running).")
	to := fs.Int("to", 0, "the partition count to reach (required)")
	return runMigration(fs, args, stdout, "/internal/partitions/scale", func() (map[string]any, error) {
		if *to == 0 {
			return nil, errors.New("--to is required: the partition count to reach")
		}
		if err := engine.CheckScale(0, clamp32(*to)); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
		return map[string]any{"to": *to}, nil
	})
}

// partitionsMoveSlot is `bursar partitions move-slot SLOT --to P`.
func partitionsMoveSlot(args []string, stdout io.Writer) error {
	fs := newFlagSet("partitions move-slot", "Moves one slot (an account's is the FNV-1a hash of its ID's 16 bytes, modulo 16384) to\npartition --to through the same barrier as scale: hot-spot relief. Usage: bursar partitions move-slot SLOT --to P")
	to := fs.Int("to", -1, "the partition to move the slot to (required)")
	slot := -1
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("SLOT must be a number, got %q", args[0])}
		}
		slot, args = n, args[1:]
	}
	return runMigration(fs, args, stdout, "/internal/partitions/move-slot", func() (map[string]any, error) {
		if slot < 0 {
			return nil, errors.New("usage: bursar partitions move-slot SLOT --to P")
		}
		if *to < 0 {
			return nil, errors.New("--to is required: the partition to move the slot to")
		}
		// The node checks --to against its map; here only what no map allows.
		if err := engine.CheckMoveSlot(ledger.PartitionsMax, slot, clamp32(*to)); err != nil {
			return nil, err
		}
		return map[string]any{"slot": slot, "to": *to}, nil
	})
}

func runMigration(fs *flag.FlagSet, args []string, stdout io.Writer, path string, body func() (map[string]any, error)) error {
	addr := fs.String("addr", "127.0.0.1:9090", "admin address (--admin-addr) of the node to drive the migration")
	newAdmin := adminFlags(fs)
	wait := fs.Duration("wait", time.Hour, "how long to follow the migration before leaving it to run")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	req, err := body()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ac, err := newAdmin()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	b, _ := json.Marshal(req)
	hr, _ := http.NewRequestWithContext(ctx, "POST", ac.scheme+*addr+path, bytes.NewReader(b))
	hr.Header.Set("Content-Type", "application/json")
	if ac.key != "" {
		hr.Header.Set("Authorization", "Bearer "+ac.key)
	}
	resp, err := ac.hc.Do(hr)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	switch {
	case resp.StatusCode == 400:
		return &exitError{code: 2, err: fmt.Errorf("refused: %s", bytes.TrimSpace(msg))}
	case resp.StatusCode != 202:
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	printed := 0
	for {
		var st migrationView
		if err := ac.get(ctx, *addr, "/internal/partitions/migration", &st); err != nil {
			return fmt.Errorf("following the migration (it goes on; run the command again to follow or resume it): %w", err)
		}
		if *format == "table" {
			for ; printed < len(st.Driver.Steps); printed++ {
				fmt.Fprintln(stdout, st.Driver.Steps[printed])
			}
		}
		if !st.Driver.Running {
			if st.Driver.Error != "" {
				return fmt.Errorf("the migration stopped: %s (run the command again to resume it)", st.Driver.Error)
			}
			if *format == "json" {
				return json.NewEncoder(stdout).Encode(st)
			}
			fmt.Fprintf(stdout, "slot map version %d: %d partitions; %d slots moved in %s\n", st.SlotMapVersion, st.Partitions, st.Driver.SlotsMoved, st.Driver.Finished.Sub(st.Driver.Started).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following after --wait %s; the migration goes on (bursar partitions ls shows it)", *wait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clamp32 is n as an int32, saturated (a flag's int sent as a JSON int32).
func clamp32(n int) int32 { return int32(max(min(n, math.MaxInt32), math.MinInt32)) }
