package baseline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
)

// start runs a baseline on a fresh database and returns it.
func start(t *testing.T) *Running {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{DatabaseURL: url, MaxConns: 8}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	return r
}

type answer struct {
	status   int
	body     map[string]any
	replayed bool
}

func (a answer) code() string {
	if e, ok := a.body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func call(t testing.TB, method, url string, body any, header ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("%s %s: decode: %v", method, url, err)
	}
	return a
}

// client is a test's view of one baseline.
type client struct {
	t   testing.TB
	url string
}

func (c client) open(id uuid.UUID, key string) answer {
	body := map[string]any{"account_id": id.String(), "customer_id": "c-" + id.String()[:8], "account_type": "checking", "currency": "USD"}
	if key == "" {
		return call(c.t, "POST", c.url+pathOpen, body)
	}
	return call(c.t, "POST", c.url+pathOpen, body, "Idempotency-Key", key)
}

func (c client) money(path string, id uuid.UUID, amount, ref string) answer {
	return call(c.t, "POST", c.url+path, map[string]any{"account_id": id.String(), "amount": amount, "currency": "USD", "description": "test", "reference_id": ref})
}

func (c client) transfer(src, dst uuid.UUID, amount, ref string) answer {
	return call(c.t, "POST", c.url+pathTransfer, map[string]any{
		"source_account_id": src.String(), "destination_account_id": dst.String(),
		"amount": amount, "currency": "USD", "description": "test", "reference_id": ref,
	})
}

func (c client) balance(id uuid.UUID) string {
	c.t.Helper()
	a := call(c.t, "GET", c.url+pathAccountPrefix+id.String()+"/balance", nil)
	if a.status != 200 {
		c.t.Fatalf("balance of %s: %d %v", id, a.status, a.body)
	}
	return a.body["current_balance"].(string)
}

func expect(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.code() != code {
		t.Fatalf("%s: got %d %q %v, want %d %q", what, a.status, a.code(), a.body, status, code)
	}
}

func TestOperations(t *testing.T) {
	r := start(t)
	c := client{t, r.URL}
	a, b, missing := uuid.New(), uuid.New(), uuid.New()

	if got := call(t, "GET", r.URL+"/readyz", nil); got.status != 200 {
		t.Fatalf("readyz: %d %v", got.status, got.body)
	}
	expect(t, "open a", c.open(a, "open-a"), 201, "")
	expect(t, "open b", c.open(b, ""), 201, "")
	if got := c.open(a, "open-a"); got.status != 201 || !got.replayed {
		t.Fatalf("retried open: %d %v replayed=%v", got.status, got.body, got.replayed)
	}
	expect(t, "open a again with another key", c.open(a, "open-a2"), 409, "ACCOUNT_EXISTS")
	expect(t, "open b again without a key", c.open(b, ""), 409, "ACCOUNT_EXISTS")

	got := c.money(pathCredit, a, "100.00", "cr-1")
	expect(t, "credit", got, 201, "")
	if got.body["current_balance"] != "100.00" || got.body["type"] != "credit" || got.body["status"] != "completed" {
		t.Fatalf("credit answer: %v", got.body)
	}
	expect(t, "debit", c.money(pathDebit, a, "30", "db-1"), 201, "")
	expect(t, "debit too much", c.money(pathDebit, a, "1000", "db-2"), 422, "INSUFFICIENT_FUNDS")
	if s := c.balance(a); s != "70.00" {
		t.Fatalf("balance after credit and debits = %s, want 70.00", s)
	}

	tr := c.transfer(a, b, "20.50", "tr-1")
	expect(t, "transfer", tr, 201, "")
	if tr.body["status"] != "completed" || tr.body["source_account_id"] != a.String() || tr.body["destination_account_id"] != b.String() || tr.body["amount"] != "20.50" {
		t.Fatalf("transfer answer: %v", tr.body)
	}
	expect(t, "transfer too much", c.transfer(a, b, "1000", "tr-2"), 422, "INSUFFICIENT_FUNDS")
	expect(t, "same account", c.transfer(a, a, "1", "tr-3"), 422, "SAME_ACCOUNT")
	expect(t, "missing destination", c.transfer(a, missing, "1", "tr-4"), 404, "ACCOUNT_NOT_FOUND")
	expect(t, "missing source", c.transfer(missing, a, "1", "tr-5"), 404, "ACCOUNT_NOT_FOUND")
	expect(t, "missing credit", c.money(pathCredit, missing, "1", "cr-2"), 404, "ACCOUNT_NOT_FOUND")
	if got := call(t, "GET", r.URL+pathAccountPrefix+missing.String()+"/balance", nil); got.status != 404 || got.code() != "ACCOUNT_NOT_FOUND" {
		t.Fatalf("missing balance: %d %v", got.status, got.body)
	}
	expect(t, "bad amount", c.money(pathCredit, a, "1.001", "cr-3"), 400, "INVALID_AMOUNT")
	expect(t, "zero amount", c.money(pathCredit, a, "0", "cr-4"), 400, "INVALID_AMOUNT")
	expect(t, "currency mismatch", call(t, "POST", r.URL+pathCredit, map[string]any{"account_id": a.String(), "amount": "1", "currency": "EUR", "reference_id": "cr-5"}), 422, "CURRENCY_MISMATCH")
	expect(t, "unknown field", call(t, "POST", r.URL+pathCredit, map[string]any{"account_id": a.String(), "amount": "1", "currency": "USD", "x": 1}), 400, "MALFORMED_REQUEST")
	if s, s2 := c.balance(a), c.balance(b); s != "49.50" || s2 != "20.50" {
		t.Fatalf("balances after transfer = %s, %s, want 49.50, 20.50", s, s2)
	}

	// Retries return the original result and change nothing.
	again := c.transfer(a, b, "20.50", "tr-1")
	expect(t, "retried transfer", again, 201, "")
	if !again.replayed || again.body["transaction_id"] != tr.body["transaction_id"] {
		t.Fatalf("retried transfer: %v (replayed %v), original %v", again.body, again.replayed, tr.body)
	}
	expect(t, "retried credit", c.money(pathCredit, a, "100.00", "cr-1"), 201, "")
	// The refused debit stays refused on retry, though a's balance would
	// not cover it now either; the refused transfer likewise.
	expect(t, "retried refused debit", c.money(pathDebit, a, "1000", "db-2"), 422, "INSUFFICIENT_FUNDS")
	expect(t, "funding", c.money(pathCredit, a, "5000", "cr-6"), 201, "")
	expect(t, "retried refused transfer, now affordable", c.transfer(a, b, "1000", "tr-2"), 422, "INSUFFICIENT_FUNDS")
	// A key reused for another request is refused.
	expect(t, "reused key", c.transfer(a, b, "1.00", "tr-1"), 409, "IDEMPOTENCY_KEY_REUSED")
	expect(t, "reused key across kinds", c.money(pathDebit, a, "100.00", "cr-1"), 409, "IDEMPOTENCY_KEY_REUSED")
	// The header wins over reference_id, as in Bursar.
	h := call(t, "POST", r.URL+pathCredit, map[string]any{"account_id": a.String(), "amount": "1", "currency": "USD", "reference_id": "cr-7"}, "Idempotency-Key", "hdr-1")
	expect(t, "credit with header", h, 201, "")
	h2 := call(t, "POST", r.URL+pathCredit, map[string]any{"account_id": a.String(), "amount": "1", "currency": "USD", "reference_id": "cr-8"}, "Idempotency-Key", "hdr-1")
	if h2.status != 201 || !h2.replayed || h2.body["transaction_id"] != h.body["transaction_id"] {
		t.Fatalf("header replay: %d %v", h2.status, h2.body)
	}
	if s, s2 := c.balance(a), c.balance(b); s != "5050.50" || s2 != "20.50" {
		t.Fatalf("balances after retries = %s, %s, want 5050.50, 20.50", s, s2)
	}

	rep, err := r.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var usd *CurrencyTotals
	for i := range rep.Currencies {
		if rep.Currencies[i].Currency == "USD" {
			usd = &rep.Currencies[i]
		}
	}
	if !rep.Clean || usd == nil || usd.Balances != 507100 || usd.Credits != 510100 || usd.Debits != 3000 || usd.Discrepancy != 0 {
		t.Fatalf("audit: %+v", rep)
	}
}

// Concurrent transfers in both directions over a few accounts (lock order
// matters), concurrent duplicates of one request (exactly one applies),
// and at the end every unit is where the ledger says.
func TestConcurrentTransfersConserve(t *testing.T) {
	r := start(t)
	c := client{t, r.URL}
	const accounts, workers, perWorker = 8, 16, 60
	ids := make([]uuid.UUID, accounts)
	for i := range ids {
		ids[i] = uuid.New()
		expect(t, "open", c.open(ids[i], ""), 201, "")
		expect(t, "fund", c.money(pathCredit, ids[i], "100", fmt.Sprintf("fund-%d", i)), 201, "")
	}
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				s := rnd.IntN(accounts)
				d := (s + 1 + rnd.IntN(accounts-1)) % accounts
				// Every fifth request of a worker shares its key with the
				// same request of the next worker: concurrent duplicates.
				ref := fmt.Sprintf("w%d-%d", w, i)
				amount := fmt.Sprintf("%d.%02d", 1+rnd.IntN(30), rnd.IntN(100))
				if i%5 == 0 {
					ref = fmt.Sprintf("dup-%d-%d", w/2, i)
					s, d, amount = (w/2+i)%accounts, (w/2+i+1)%accounts, "1.00"
				}
				a := c.transfer(ids[s], ids[d], amount, ref)
				mu.Lock()
				counts[fmt.Sprint(a.status, a.code())]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for k := range counts {
		if k != "201" && k != "422INSUFFICIENT_FUNDS" {
			t.Errorf("unexpected answers %s: %v", k, counts)
		}
	}
	var total int64
	for _, id := range ids {
		var units, cents int64
		if _, err := fmt.Sscanf(c.balance(id), "%d.%d", &units, &cents); err != nil {
			t.Fatal(err)
		}
		if units < 0 {
			t.Errorf("account %s is negative", id)
		}
		total += units*100 + cents
	}
	if total != accounts*100*100 {
		t.Errorf("total = %d, want %d", total, accounts*100*100)
	}
	rep, err := r.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean {
		t.Fatalf("audit: %+v", rep)
	}
	// Each duplicated key was recorded once.
	var dups, distinct int64
	err = r.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT idem_key) FROM baseline_transactions WHERE idem_key LIKE 'dup-%'`).Scan(&dups, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if dups != distinct || distinct != workers/2*perWorker/5 {
		t.Errorf("duplicate keys: %d rows, %d distinct, want %d each", dups, distinct, workers/2*perWorker/5)
	}
}
