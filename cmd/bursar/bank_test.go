package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// bankOp is one client operation of the bank workload.
type bankOp struct {
	key      string
	kind     string // credit, debit, transfer
	src, dst string // dst only for transfers
	cents    int64
	outcome  string // completed, refused, unknown
	code     string // refusal code
	txID     string
}

func (o *bankOp) request() (string, map[string]any) {
	amount := fmt.Sprintf("%d.%02d", o.cents/100, o.cents%100)
	if o.kind == "transfer" {
		return "/api/v1/transactions/transfer", map[string]any{
			"source_account_id": o.src, "destination_account_id": o.dst, "amount": amount,
			"currency": "USD", "reference_id": o.key,
		}
	}
	return "/api/v1/transactions/" + o.kind, map[string]any{
		"account_id": o.src, "amount": amount, "currency": "USD", "reference_id": o.key,
	}
}

// refusals are the business answers the workload provokes on purpose.
var bankRefusals = map[string]int{"INSUFFICIENT_FUNDS": 422, "ACCOUNT_NOT_FOUND": 404, "SAME_ACCOUNT": 422}

func (o *bankOp) send(ctx context.Context, t *testing.T, c *apiClient) {
	path, body := o.request()
	r, err := c.do(ctx, "POST", path, body, nil)
	switch {
	case err != nil, r.status == 503, r.status == 202:
		o.outcome = "unknown"
	case r.status == 201:
		o.outcome, o.txID = "completed", r.str("transaction_id")
	case bankRefusals[r.errCode()] == r.status:
		o.outcome, o.code = "refused", r.errCode()
	default:
		t.Errorf("%s %s: unexpected %d %s", o.kind, o.key, r.status, r.raw)
		o.outcome = "unknown"
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestBankWorkloadWithKills is a bank test in the spirit of Jepsen's:
// concurrent transfers among a few hundred accounts over many partitions,
// mixed with credits, debits and balance reads, including transfers that
// must fail, while the node is killed with SIGKILL and restarted several
// times. Every balance read is plausible; at the end every operation has
// exactly one outcome, nothing is in flight, balances match the client's
// view and the audit is clean. BANK_KILLS and BANK_SECONDS_PER_CYCLE scale
// it.
func TestBankWorkloadWithKills(t *testing.T) {
	kills := envInt("BANK_KILLS", 3)
	cycle := time.Duration(envInt("BANK_SECONDS_PER_CYCLE", 2)) * time.Second
	dbURL := pgtest.NewDatabase(t)
	dataDir := t.TempDir()
	addr := freePort(t)
	// The command log is trimmed every second (--commands-retention 1s)
	// while the node is killed and restarted: recovery must find every
	// command after the committed offset.
	args := []string{"--database-url", dbURL, "--data-dir", dataDir, "--partitions", "16", "--flush-interval", "20ms", "--wait-timeout", "3s",
		"--commands-retention", "1s"}
	n := startNode(t, addr, args...)
	c := newClient(addr)

	const accounts = 200
	const fundCents = 50_000
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = c.openAccount(t, fmt.Sprintf("bank-open-%d", i))
		fund := &bankOp{key: fmt.Sprintf("bank-fund-%d", i), kind: "credit", src: ids[i], cents: fundCents}
		if fund.send(context.Background(), t, c); fund.outcome != "completed" {
			t.Fatalf("funding: %+v", fund)
		}
	}
	ghosts := []string{uuid.NewString(), uuid.NewString()} // never opened

	var (
		log     opLog
		seq     atomic.Int64
		reads   atomic.Int64
		badRead atomic.Value
	)
	newOp := func(rng *rand.Rand) *bankOp {
		o := &bankOp{key: fmt.Sprintf("bank-%d", seq.Add(1)), src: ids[rng.IntN(accounts)], cents: 1 + rng.Int64N(30_000)}
		switch x := rng.IntN(100); {
		case x < 15:
			o.kind = "credit"
		case x < 30:
			o.kind = "debit"
		default:
			o.kind, o.dst = "transfer", ids[rng.IntN(accounts)]
			switch y := rng.IntN(100); {
			case y < 4:
				o.dst = ghosts[rng.IntN(len(ghosts))] // must fail and be refunded
			case y < 6:
				o.dst = o.src // must be refused
			}
		}
		return o
	}

	for k := 0; k < kills; k++ {
		stop := make(chan struct{})
		wg := runWorkers(12, uint64(k), stop, func(_ int, rng *rand.Rand) {
			if rng.IntN(10) == 0 {
				// A balance read: strongly consistent, never negative.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				id := ids[rng.IntN(accounts)]
				r, err := c.do(ctx, "GET", "/api/v1/accounts/"+id+"/balance", nil, nil)
				if err == nil && r.status == 200 {
					reads.Add(1)
					if b := r.str("current_balance"); len(b) > 0 && b[0] == '-' {
						badRead.Store(id + " read " + b)
					}
				}
				return
			}
			log.send(t, c, newOp(rng), 5*time.Second, 20*time.Millisecond)
		})
		time.Sleep(cycle)
		n.kill()
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		n = startNode(t, addr, args...)
		c = newClient(addr)
		resolveAll(t, c, log.ops, dbURL)
	}
	if v := badRead.Load(); v != nil {
		t.Fatalf("implausible balance read: %v", v)
	}

	trimmed := waitMetric(t, addr, "bursar_engine_commands_trimmed_total")
	n.stop()
	code, out := auditProcess(t, dbURL, "--format", "json")
	if code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
	var rep struct {
		Clean      bool `json:"clean"`
		Currencies []struct {
			InFlight int64 `json:"in_flight"`
		} `json:"currencies"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Clean {
		t.Fatalf("audit report: %v\n%s", err, out)
	}
	for _, cur := range rep.Currencies {
		if cur.InFlight != 0 {
			t.Fatalf("transfers stuck in flight after recovery: %s", out)
		}
	}
	checkBank(t, dbURL, ids, fundCents, log.ops)
	counts := map[string]int{}
	for _, o := range log.ops {
		counts[o.kind+"/"+o.outcome+"/"+o.code]++
	}
	t.Logf("%d operations, %d balance reads, %d kills, %.0f commands trimmed since the last start: %v", len(log.ops), reads.Load(), kills, trimmed, counts)
	if counts["transfer/completed/"] == 0 || counts["transfer/refused/ACCOUNT_NOT_FOUND"] == 0 || counts["transfer/refused/SAME_ACCOUNT"] == 0 {
		t.Fatalf("the workload did not exercise every transfer outcome: %v", counts)
	}
}

// resolveAll retries every operation whose answer was lost, with its
// idempotency key, until each has a final outcome.
func resolveAll(t *testing.T, c *apiClient, ops []*bankOp, dbURL string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, o := range ops {
		last := ""
		for o.outcome == "unknown" {
			if time.Now().After(deadline) {
				t.Fatalf("operation still unresolved after restart: %+v (last answer %s)\n%s", o, last, describeOp(dbURL, o))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			path, body := o.request()
			if r, err := c.do(ctx, "POST", path, body, nil); err != nil {
				last = err.Error()
			} else {
				last = fmt.Sprintf("%d %s", r.status, r.raw)
			}
			o.send(ctx, t, c)
			cancel()
		}
	}
}

// describeOp dumps what PostgreSQL holds of an operation, for a failure
// message.
func describeOp(dbURL string, o *bankOp) string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(ctx)
	var out strings.Builder
	rows, err := conn.Query(ctx, `SELECT t2.kind, t2.account_id::text, t2.status, t2.code, t2.partition, t2.kafka_offset
		FROM transactions t JOIN transactions t2 USING (transaction_id) WHERE t.account_id = $1 AND t.idem_key = $2`,
		uuid.MustParse(o.src), o.key)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	for rows.Next() {
		var kind, acct, status, code string
		var part int32
		var off int64
		rows.Scan(&kind, &acct, &status, &code, &part, &off) //nolint:errcheck // diagnostics
		fmt.Fprintf(&out, "  row %s %s %s %s p%d@%d\n", kind, acct, status, code, part, off)
	}
	prow, err := conn.Query(ctx, `SELECT partition, owner, epoch, next_offset FROM partitions ORDER BY 1`)
	if err == nil {
		defer prow.Close()
		for prow.Next() {
			var p int32
			var owner string
			var epoch, next int64
			prow.Scan(&p, &owner, &epoch, &next) //nolint:errcheck // diagnostics
			fmt.Fprintf(&out, "  partition %d owner %q epoch %d next %d\n", p, owner, epoch, next)
		}
	}
	return out.String()
}

// checkBank compares PostgreSQL with the client's view: every operation
// has its rows exactly once and every balance is what the outcomes imply.
func checkBank(t *testing.T, dbURL string, ids []string, fundCents int64, ops []*bankOp) {
	t.Helper()
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
	legs := func(tx string) map[string]int {
		rows, err := conn.Query(ctx, `SELECT kind, count(*) FROM transactions WHERE transaction_id = $1 GROUP BY kind`, uuid.MustParse(tx))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			out[k] = n
		}
		return out
	}
	for _, o := range ops {
		if o.outcome == "refused" && o.code == "SAME_ACCOUNT" {
			continue // refused at the door: nothing recorded
		}
		var rows int
		var txID string
		if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(min(transaction_id::text), '') FROM transactions
			WHERE account_id = $1 AND idem_key = $2`, uuid.MustParse(o.src), o.key).Scan(&rows, &txID); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("%s %s (%s %s): %d rows under its key, want 1", o.kind, o.key, o.outcome, o.code, rows)
		}
		if o.outcome == "completed" && txID != o.txID {
			t.Fatalf("%s acknowledged as %s, stored as %s", o.key, o.txID, txID)
		}
		if o.kind == "transfer" {
			l := legs(txID)
			switch {
			case o.outcome == "completed" && (l["transfer_debit"] != 1 || l["transfer_credit"] != 1 || l["transfer_refund"] != 0):
				t.Fatalf("completed transfer %s has legs %v", o.key, l)
			case o.code == "ACCOUNT_NOT_FOUND" && (l["transfer_debit"] != 1 || l["transfer_refund"] != 1):
				t.Fatalf("transfer %s to a missing account has legs %v, want debit and refund", o.key, l)
			}
		}
		if o.outcome != "completed" {
			continue
		}
		switch o.kind {
		case "credit":
			want[o.src] += o.cents
		case "debit":
			want[o.src] -= o.cents
		case "transfer":
			want[o.src] -= o.cents
			want[o.dst] += o.cents
		}
	}
	for id, cents := range want {
		var bal int64
		if err := conn.QueryRow(ctx, `SELECT balance FROM accounts WHERE account_id = $1`, uuid.MustParse(id)).Scan(&bal); err != nil {
			t.Fatal(err)
		}
		if bal != cents {
			t.Fatalf("account %s balance %d, want %d from the operations' outcomes", id, bal, cents)
		}
	}
}

// runWorkers starts n load workers: until stop is closed, worker w calls
// step over and over with its own random source (seeded by seed and w).
func runWorkers(n int, seed uint64, stop <-chan struct{}, step func(w int, rng *rand.Rand)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				step(w, rng)
			}
		}()
	}
	return &wg
}

// opLog is every operation the workers sent.
type opLog struct {
	mu  sync.Mutex
	ops []*bankOp
}

// send sends o within timeout and logs it; when the node did not answer
// (it is down), it waits backoff so the worker does not spin.
func (l *opLog) send(t *testing.T, c *apiClient, o *bankOp, timeout, backoff time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	o.send(ctx, t, c)
	cancel()
	l.mu.Lock()
	l.ops = append(l.ops, o)
	l.mu.Unlock()
	if o.outcome == "unknown" {
		time.Sleep(backoff)
	}
}

// snapshot returns the operations logged so far.
func (l *opLog) snapshot() []*bankOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*bankOp(nil), l.ops...)
}
