package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startBroker runs `bursar broker` as its own process, as several local
// nodes would share it, and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binPath, "broker", "--data-dir", t.TempDir(), "--listen", addr)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // cleanup
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("broker did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

// TestBadInputChangesNothing sends every kind of bad request to a node
// running against a separate broker and checks each gets its stable code
// and HTTP status, and that none of them appended to the log or changed a
// row.
func TestBadInputChangesNothing(t *testing.T) {
	broker := startBroker(t)
	dbURL := pgtest.NewDatabase(t)
	addr := freePort(t)
	startNode(t, addr, "--database-url", dbURL, "--kafka-brokers", broker, "--partitions", "4", "--max-body-bytes", "4096")
	c := newClient(addr)
	id := c.openAccount(t, "bad-input-acct")
	ctx := context.Background()
	if r, err := c.do(ctx, "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": id, "amount": "10.00", "currency": "USD"}, nil); err != nil || r.status != 201 {
		t.Fatalf("credit: %v %+v", err, r)
	}

	kc, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	endsBefore, err := kafkalog.EndOffsets(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rowCount := func() (n int64) {
		if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM transactions) + (SELECT count(*) FROM accounts)").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Let the credit's flush land before counting.
	time.Sleep(300 * time.Millisecond)
	rowsBefore := rowCount()

	credit := "/api/v1/transactions/credit"
	other := "6b1d3c9e-6f1a-4c55-9a3e-2b2f1f0b8a11" // valid, never opened
	tests := []struct {
		name         string
		method, path string
		body         any
		headers      map[string]string
		status       int
		code         string
	}{
		{"malformed json", "POST", credit, `{"account_id":`, nil, 400, "MALFORMED_REQUEST"},
		{"not an object", "POST", credit, `[1,2]`, nil, 400, "MALFORMED_REQUEST"},
		{"unknown field", "POST", credit, map[string]any{"account_id": id, "amount": "1", "currency": "USD", "memo": "x"}, nil, 400, "MALFORMED_REQUEST"},
		{"wrong type", "POST", credit, map[string]any{"account_id": 7, "amount": "1", "currency": "USD"}, nil, 400, "MALFORMED_REQUEST"},
		{"missing amount", "POST", credit, map[string]any{"account_id": id, "currency": "USD"}, nil, 400, "MISSING_FIELD"},
		{"invalid uuid", "POST", credit, map[string]any{"account_id": "not-a-uuid", "amount": "1", "currency": "USD"}, nil, 400, "INVALID_FIELD"},
		{"zero amount", "POST", credit, map[string]any{"account_id": id, "amount": "0", "currency": "USD"}, nil, 400, "INVALID_AMOUNT"},
		{"negative amount", "POST", credit, map[string]any{"account_id": id, "amount": -5, "currency": "USD"}, nil, 400, "INVALID_AMOUNT"},
		{"over-precise amount", "POST", credit, map[string]any{"account_id": id, "amount": "1.001", "currency": "USD"}, nil, 400, "INVALID_AMOUNT"},
		{"overflowing amount", "POST", credit, `{"account_id":"` + id + `","amount":123456789012345678901234567890,"currency":"USD"}`, nil, 400, "INVALID_AMOUNT"},
		{"exponent amount", "POST", credit, `{"account_id":"` + id + `","amount":1e3,"currency":"USD"}`, nil, 400, "INVALID_AMOUNT"},
		{"unknown currency", "POST", credit, map[string]any{"account_id": id, "amount": "1", "currency": "XYZ"}, nil, 400, "UNSUPPORTED_CURRENCY"},
		{"oversized body", "POST", credit, `{"account_id":"` + id + `","amount":"1","currency":"USD","description":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, "PAYLOAD_TOO_LARGE"},
		{"bad idempotency key", "POST", credit, map[string]any{"account_id": id, "amount": "1", "currency": "USD"}, map[string]string{"Idempotency-Key": "has space"}, 400, "INVALID_FIELD"},
		{"unknown route", "GET", "/api/v1/nope", nil, nil, 404, "NOT_FOUND"},
		{"wrong method", "DELETE", "/api/v1/accounts/" + id, nil, nil, 405, "METHOD_NOT_ALLOWED"},
		{"unknown account balance", "GET", "/api/v1/accounts/" + other + "/balance", nil, nil, 404, "ACCOUNT_NOT_FOUND"},
		{"unknown transaction", "GET", "/api/v1/transactions/" + other, nil, nil, 404, "TRANSACTION_NOT_FOUND"},
		{"bad history limit", "GET", "/api/v1/accounts/" + id + "/transactions?limit=0", nil, nil, 400, "INVALID_FIELD"},
		{"open: unknown currency", "POST", "/api/v1/accounts", map[string]any{"customer_id": "c", "account_type": "checking", "currency": "usd"}, nil, 400, "UNSUPPORTED_CURRENCY"},
		{"open: missing customer", "POST", "/api/v1/accounts", map[string]any{"account_type": "checking", "currency": "USD"}, nil, 400, "MISSING_FIELD"},
		// Strict JSON (issue 11): one reading of a body, the one applied.
		{"duplicate member", "POST", credit, `{"account_id":"` + id + `","amount":"1","currency":"USD","amount":"1000"}`, nil, 400, "MALFORMED_REQUEST"},
		{"case-variant member", "POST", credit, `{"account_id":"` + id + `","AMOUNT":"1","currency":"USD"}`, nil, 400, "MALFORMED_REQUEST"},
		{"transfer: source twice", "POST", "/api/v1/transactions/transfer", `{"source_account_id":"` + other + `","destination_account_id":"` + other + `","source_account_id":"` + id + `","amount":"1","currency":"USD"}`, nil, 400, "MALFORMED_REQUEST"},
		{"zero past the exponent", "POST", credit, map[string]any{"account_id": id, "amount": "0.010", "currency": "USD"}, nil, 400, "INVALID_AMOUNT"},
		{"leading zeros", "POST", credit, map[string]any{"account_id": id, "amount": "00001.00", "currency": "USD"}, nil, 400, "INVALID_AMOUNT"},
		{"upper-case uuid", "POST", credit, map[string]any{"account_id": strings.ToUpper(id), "amount": "1", "currency": "USD"}, nil, 400, "INVALID_FIELD"},
		{"bidi override in a description", "POST", credit, map[string]any{"account_id": id, "amount": "1", "currency": "USD", "description": "pay \u202erent"}, nil, 400, "INVALID_FIELD"},
		{"zero-width space in a description", "POST", credit, map[string]any{"account_id": id, "amount": "1", "currency": "USD", "description": "a\u200bb"}, nil, 400, "INVALID_FIELD"},
		{"open: unknown account type", "POST", "/api/v1/accounts", map[string]any{"customer_id": "c", "account_type": "bogus", "currency": "USD"}, nil, 400, "INVALID_FIELD"},
		{"batch: duplicate items", "POST", "/api/v1/transactions/batch", `{"items":[],"items":[{"type":"credit","account_id":"` + id + `","amount":"1","currency":"USD"}]}`, nil, 400, "MALFORMED_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.do(ctx, tt.method, tt.path, tt.body, tt.headers)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.status || r.errCode() != tt.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.errCode(), tt.status, tt.code, r.raw)
			}
			e, _ := r.body["error"].(map[string]any)
			if msg, _ := e["message"].(string); msg == "" {
				t.Fatalf("error without a message: %s", r.raw)
			}
			if rid, _ := e["request_id"].(string); rid == "" {
				t.Fatalf("error without a request_id: %s", r.raw)
			}
		})
	}

	// Business refusals that reach the ledger are answered with their code
	// but, unlike the requests above, are recorded; check them after the
	// "nothing changed" comparison.
	endsAfter, err := kafkalog.EndOffsets(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range endsAfter {
		if endsBefore[p] != end {
			t.Fatalf("bad input appended to partition %d: end %d → %d", p, endsBefore[p], end)
		}
	}
	if after := rowCount(); after != rowsBefore {
		t.Fatalf("bad input changed PostgreSQL: %d rows → %d", rowsBefore, after)
	}
	bal, err := c.do(ctx, "GET", "/api/v1/accounts/"+id+"/balance", nil, nil)
	if err != nil || bal.str("current_balance") != "10.00" || bal.body["version"].(float64) != 2 {
		t.Fatalf("balance after bad input: %v %s", err, bal.raw)
	}

	for _, tt := range []struct {
		name   string
		path   string
		body   map[string]any
		status int
		code   string
	}{
		{"insufficient funds", "/api/v1/transactions/debit", map[string]any{"account_id": id, "amount": "10.01", "currency": "USD"}, 422, "INSUFFICIENT_FUNDS"},
		{"currency mismatch", "/api/v1/transactions/credit", map[string]any{"account_id": id, "amount": "1", "currency": "EUR"}, 422, "CURRENCY_MISMATCH"},
		{"unknown account", "/api/v1/transactions/credit", map[string]any{"account_id": other, "amount": "1", "currency": "USD"}, 404, "ACCOUNT_NOT_FOUND"},
		{"account exists", "/api/v1/accounts", map[string]any{"customer_id": "c", "account_type": "checking", "currency": "USD", "account_id": id}, 409, "ACCOUNT_EXISTS"},
	} {
		r, err := c.do(ctx, "POST", tt.path, tt.body, nil)
		if err != nil || r.status != tt.status || r.errCode() != tt.code {
			t.Fatalf("%s: got %v %d %s, want %d %s", tt.name, err, r.status, r.errCode(), tt.status, tt.code)
		}
	}
	bal, err = c.do(ctx, "GET", "/api/v1/accounts/"+id+"/balance", nil, nil)
	if err != nil || bal.str("current_balance") != "10.00" {
		t.Fatalf("balance after refusals: %v %s", err, bal.raw)
	}

	// Same idempotency key with a different request: 409, nothing applied.
	h := map[string]string{"Idempotency-Key": "reuse-me"}
	if r, _ := c.do(ctx, "POST", credit, map[string]any{"account_id": id, "amount": "1.00", "currency": "USD"}, h); r.status != 201 {
		t.Fatalf("first use of key: %s", r.raw)
	}
	if r, _ := c.do(ctx, "POST", credit, map[string]any{"account_id": id, "amount": "2.00", "currency": "USD"}, h); r.status != 409 || r.errCode() != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("reused key: %d %s", r.status, r.raw)
	}
	bal, _ = c.do(ctx, "GET", "/api/v1/accounts/"+id+"/balance", nil, nil)
	if bal.str("current_balance") != "11.00" {
		t.Fatalf("balance after key reuse: %s", bal.raw)
	}
}
