package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
)

// TestCrashRecovery runs credit/debit load against a node, kills it with
// SIGKILL in the middle, restarts it (twice), and checks that every
// acknowledged operation is in PostgreSQL exactly once, every retried
// operation has one outcome, balances equal the sum of their entries and the
// client's view, and the audit is clean.
func TestCrashRecovery(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	dataDir := t.TempDir()
	addr := freePort(t)
	args := []string{"--database-url", dbURL, "--data-dir", dataDir, "--partitions", "8", "--flush-interval", "20ms"}
	n := startNode(t, addr, args...)
	c := newClient(addr)

	const accounts = 24
	const fundCents = 100_000
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = c.openAccount(t, fmt.Sprintf("crash-open-%d", i))
		fund := &bankOp{key: fmt.Sprintf("fund-%d", i), src: ids[i], kind: "credit", cents: fundCents}
		if fund.send(context.Background(), t, c); fund.outcome != "completed" {
			t.Fatalf("funding failed: %+v", fund)
		}
	}

	var (
		log opLog
		seq atomic.Int64
	)
	// lost counts operations whose answer a kill swallowed.
	lost := 0
	const cycles = 2
	for cycle := 0; cycle < cycles; cycle++ {
		stop := make(chan struct{})
		wg := runWorkers(8, uint64(cycle), stop, func(_ int, rng *rand.Rand) {
			o := &bankOp{
				key:   fmt.Sprintf("op-%d", seq.Add(1)),
				src:   ids[rng.IntN(accounts)],
				kind:  []string{"credit", "debit"}[rng.IntN(2)],
				cents: 1 + rng.Int64N(60_000),
			}
			log.send(t, c, o, 3*time.Second, 20*time.Millisecond)
		})
		time.Sleep(1500 * time.Millisecond)
		n.kill()
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()

		n = startNode(t, addr, args...)
		c = newClient(addr)
		for _, o := range log.ops {
			if o.outcome == "unknown" {
				lost++
			}
		}
		// The retry with the same key either replays the outcome the log
		// already holds or applies it for the first time — never twice.
		resolveAll(t, c, log.ops, dbURL)
	}
	if lost == 0 {
		t.Fatal("no operation was in flight at a kill: the test did not kill mid-load")
	}

	// Acknowledged operations replay with their original transaction.
	acked := 0
	for i, o := range log.ops {
		if o.outcome != "completed" || i%7 != 0 {
			continue
		}
		acked++
		before := o.txID
		path, body := o.request()
		r, err := c.do(context.Background(), "POST", path, body, nil)
		if err != nil || r.status != 201 || !r.replayed || r.str("transaction_id") != before {
			t.Fatalf("retry of acknowledged %s: %v %+v, want a replay of %s", o.key, err, r, before)
		}
	}
	if acked == 0 {
		t.Fatal("no acknowledged operations sampled: the load did not run")
	}

	n.stop() // graceful: the final flush writes everything applied
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
	// Every operation has exactly one row under its key, acknowledged ones
	// with their acknowledged transaction ID, and balances are what the
	// outcomes imply.
	checkBank(t, dbURL, ids, fundCents, log.ops)
	t.Logf("%d operations over %d kills, %d answers lost and resolved by retry; audit clean", len(log.ops), cycles, lost)
}
