package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// crashOp is one client operation and what the client learned of it.
type crashOp struct {
	key     string
	account string
	kind    string // credit or debit
	cents   int64
	outcome string // completed, refused or unknown
	txID    string
}

func (o *crashOp) body() map[string]any {
	return map[string]any{
		"account_id": o.account, "amount": fmt.Sprintf("%d.%02d", o.cents/100, o.cents%100),
		"currency": "USD", "description": "crash test", "reference_id": o.key,
	}
}

// send submits o and records the outcome; a lost answer is "unknown".
func (o *crashOp) send(ctx context.Context, t *testing.T, c *apiClient) *apiResponse {
	r, err := c.do(ctx, "POST", "/api/v1/transactions/"+o.kind, o.body(), nil)
	switch {
	case err != nil:
		o.outcome = "unknown"
	case r.status == 201:
		o.outcome, o.txID = "completed", r.str("transaction_id")
		if o.txID == "" {
			t.Errorf("201 without transaction_id: %s", r.raw)
		}
	case r.status == 422 && r.errCode() == "INSUFFICIENT_FUNDS":
		o.outcome = "refused"
	case r.status == 503 || r.status == 202:
		o.outcome = "unknown"
	default:
		t.Errorf("%s %s: unexpected %d %s", o.kind, o.key, r.status, r.raw)
		o.outcome = "unknown"
	}
	return r
}

// TestCrashRecovery runs load against a node, kills it with SIGKILL in the
// middle, restarts it (twice), and checks that every acknowledged operation
// is in PostgreSQL exactly once, every retried operation has one outcome,
// balances equal the sum of their entries and the audit is clean.
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
		fund := &crashOp{key: fmt.Sprintf("fund-%d", i), account: ids[i], kind: "credit", cents: fundCents}
		if fund.send(context.Background(), t, c); fund.outcome != "completed" {
			t.Fatalf("funding failed: %+v", fund)
		}
	}

	var (
		mu  sync.Mutex
		ops []*crashOp
		seq atomic.Int64
		// resolved counts operations whose answer the kill swallowed.
		resolved int
	)
	const cycles = 2
	for cycle := 0; cycle < cycles; cycle++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					o := &crashOp{
						key:     fmt.Sprintf("op-%d", seq.Add(1)),
						account: ids[rng.IntN(accounts)],
						kind:    []string{"credit", "debit"}[rng.IntN(2)],
						cents:   1 + rng.Int64N(60_000),
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					o.send(ctx, t, c)
					cancel()
					mu.Lock()
					ops = append(ops, o)
					mu.Unlock()
					if o.outcome == "unknown" {
						time.Sleep(20 * time.Millisecond) // the node is down; do not spin
					}
				}
			}(w)
		}
		time.Sleep(1500 * time.Millisecond)
		n.kill()
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()

		n = startNode(t, addr, args...)
		c = newClient(addr)
		// Resolve every operation whose answer was lost: the retry with the
		// same key either replays the outcome the log already holds or
		// applies it for the first time — never twice.
		for _, o := range ops {
			if o.outcome != "unknown" {
				continue
			}
			resolved++
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			o.send(ctx, t, c)
			cancel()
			if o.outcome == "unknown" {
				t.Fatalf("retry after restart still unknown: %+v", o)
			}
		}
	}

	if resolved == 0 {
		t.Fatal("no operation was in flight at a kill: the test did not kill mid-load")
	}

	// Acknowledged operations replay with their original transaction.
	acked := 0
	for i, o := range ops {
		if o.outcome != "completed" || i%7 != 0 {
			continue
		}
		acked++
		before := o.txID
		r := o.send(context.Background(), t, c)
		if !r.replayed || o.txID != before {
			t.Fatalf("retry of acknowledged %s: replayed=%v tx %s→%s", o.key, r.replayed, before, o.txID)
		}
	}
	if acked == 0 {
		t.Fatal("no acknowledged operations sampled: the load did not run")
	}

	n.stop() // graceful: the final flush writes everything applied
	code, out := auditProcess(t, dbURL)
	if code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}

	// Every operation has exactly one row, and balances are what the
	// client's view of outcomes says they must be.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	want := map[string]int64{}
	for _, id := range ids {
		want[id] = fundCents
	}
	completed := 0
	for _, o := range ops {
		var rows int
		var txID string
		err := conn.QueryRow(ctx, `SELECT count(*), coalesce(min(transaction_id::text), '') FROM transactions
			WHERE account_id = $1 AND idem_key = $2`, uuid.MustParse(o.account), o.key).Scan(&rows, &txID)
		if err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("operation %s (%s) has %d rows, want exactly 1", o.key, o.outcome, rows)
		}
		if o.outcome == "completed" {
			completed++
			if txID != o.txID {
				t.Fatalf("operation %s acknowledged as %s but stored as %s", o.key, o.txID, txID)
			}
			if o.kind == "credit" {
				want[o.account] += o.cents
			} else {
				want[o.account] -= o.cents
			}
		}
	}
	for id, cents := range want {
		var bal int64
		if err := conn.QueryRow(ctx, `SELECT balance FROM accounts WHERE account_id = $1`, uuid.MustParse(id)).Scan(&bal); err != nil {
			t.Fatal(err)
		}
		if bal != cents {
			t.Fatalf("account %s balance %d, want %d from acknowledged operations", id, bal, cents)
		}
	}
	t.Logf("%d operations over %d kills, %d completed, %d answers lost and resolved by retry; audit clean", len(ops), cycles, completed, resolved)
}
