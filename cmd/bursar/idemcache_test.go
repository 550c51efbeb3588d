package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
)

// metricNow reads one sample of metric at addr's /metrics (-1 if absent).
func metricNow(t *testing.T, addr, metric string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if k := keyFor(addr); k != "" {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, metric+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestIdempotencyFastPath: a retried keyed write is answered from Redis
// with exactly the first answer (Idempotent-Replayed added), without the
// log; the same key with another body still gets the log's 409; with
// Redis killed, retries are answered through the log, the same way, and
// nothing is applied twice.
func TestIdempotencyFastPath(t *testing.T) {
	rd := startRedisProcess(t)
	addr := freePort(t)
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, addr, "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4",
		"--redis-url", "redis://"+rd.Addr, "--redis-idempotency", "--flush-interval", "20ms")
	c := newClient(addr)
	acct := c.openAccount(t, "fast-open")
	other := c.openAccount(t, "fast-open-2")
	type write struct {
		name, path string
		body       map[string]any
		key        string
	}
	writes := []write{
		{"credit", "/api/v1/transactions/credit", map[string]any{"account_id": acct, "amount": "25.00", "currency": "USD", "description": "first"}, "fast-credit"},
		{"debit", "/api/v1/transactions/debit", map[string]any{"account_id": acct, "amount": "5.00", "currency": "USD"}, "fast-debit"},
		{"refused debit", "/api/v1/transactions/debit", map[string]any{"account_id": acct, "amount": "500.00", "currency": "USD"}, "fast-overdraw"},
		{"transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": acct, "destination_account_id": other, "amount": "3.00", "currency": "USD"}, "fast-transfer"},
		{"open", "/api/v1/accounts", map[string]any{"customer_id": "c9", "account_type": "checking", "currency": "USD"}, "fast-open-3"},
		{"refunded transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": acct, "destination_account_id": "00000000-0000-4000-8000-000000000009", "amount": "1.00", "currency": "USD"}, "fast-refunded"},
		{"refused transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": other, "destination_account_id": acct, "amount": "900.00", "currency": "USD"}, "fast-refused"},
	}
	send := func(w write, body map[string]any) *apiResponse {
		t.Helper()
		r, err := c.do(context.Background(), "POST", w.path, body, map[string]string{"Idempotency-Key": w.key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := make([]*apiResponse, len(writes))
	for i, w := range writes {
		first[i] = send(w, w.body)
		if first[i].status != 201 && first[i].status != 422 && first[i].status != 404 {
			t.Fatalf("%s: %d %s", w.name, first[i].status, first[i].raw)
		}
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		v := metricNow(t, addr, "bursar_idempotency_cache_stored_total")
		return v >= float64(len(writes)-1), "answers stored: " + strconv.FormatFloat(v, 'f', 0, 64)
	})
	// An answer is the first one's but for its own request_id.
	same := func(a, b *apiResponse) bool {
		rid := regexp.MustCompile(`"request_id":"[^"]*"`)
		return a.status == b.status && rid.ReplaceAllString(string(a.raw), "") == rid.ReplaceAllString(string(b.raw), "")
	}
	for i, w := range writes {
		hits := metricNow(t, addr, "bursar_idempotency_cache_hits_total")
		r := send(w, w.body)
		if !same(r, first[i]) || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s retried: %d %s (replayed %q), first %d %s", w.name, r.status, r.raw, r.header.Get("Idempotent-Replayed"), first[i].status, first[i].raw)
		}
		// A transfer its destination refused (no such account) is answered
		// by the destination's leg refusal, which the fast path does not
		// keep (an unrecorded refusal): its retry takes the log, and gets
		// the same answer there.
		want := hits + 1
		if w.name == "refunded transfer" {
			want = hits
		}
		if got := metricNow(t, addr, "bursar_idempotency_cache_hits_total"); got != want {
			t.Errorf("%s retried: cache hits %v, before %v", w.name, got, hits)
		}
	}
	// The same key, another request: the actor's 409, not the cached answer.
	changed := map[string]any{"account_id": acct, "amount": "26.00", "currency": "USD", "description": "first"}
	if r := send(writes[0], changed); r.status != 409 || r.errCode() != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("key reused with another body: %d %s", r.status, r.raw)
	}
	// Without Redis: the log answers the retries the same way.
	rd.Kill()
	for i, w := range writes {
		r := send(w, w.body)
		if !same(r, first[i]) || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s retried without Redis: %d %s, first %d %s", w.name, r.status, r.raw, first[i].status, first[i].raw)
		}
	}
	r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
	if err != nil || r.status != 200 || r.str("current_balance") != "17.00" {
		t.Fatalf("balance after credit 25, debit 5, transfer 3: %v %+v", err, r)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}
