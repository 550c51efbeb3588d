package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
)

// TestRecordAgreesWithItself: a replayed refusal carries
// Idempotent-Replayed and the original's code and message; the history of
// an unknown account is 404 like its balance, and an account with no
// movements has an empty history.
func TestRecordAgreesWithItself(t *testing.T) {
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "4")
	c := newClient(n.addr)
	ctx := context.Background()
	acct := c.openAccount(t, "record-open")
	withdraw := func() *apiResponse {
		t.Helper()
		r, err := c.do(ctx, "POST", "/api/v1/transactions/debit",
			map[string]any{"account_id": acct, "amount": "10.00", "currency": "USD", "reference_id": "too-much"},
			map[string]string{"Idempotency-Key": "too-much"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first, again := withdraw(), withdraw()
	if first.status != 422 || first.errCode() != "INSUFFICIENT_FUNDS" || first.replayed {
		t.Fatalf("first refusal: %d replayed=%v %s", first.status, first.replayed, first.raw)
	}
	msg := func(r *apiResponse) any { e, _ := r.body["error"].(map[string]any); return e["message"] }
	if again.status != 422 || again.errCode() != "INSUFFICIENT_FUNDS" || !again.replayed || msg(again) != msg(first) {
		t.Fatalf("replayed refusal: %d replayed=%v %s, want the first's answer (%s) with Idempotent-Replayed", again.status, again.replayed, again.raw, first.raw)
	}
	// A transfer its destination refuses is refunded; the answer names the
	// transfer, and a retry gives the same answer, marked as a replay.
	if r, err := c.do(ctx, "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": acct, "amount": "5.00", "currency": "USD", "reference_id": "fund"},
		map[string]string{"Idempotency-Key": "fund"}); err != nil || r.status != 201 {
		t.Fatalf("funding: %v %+v", err, r)
	}
	transfer := func() *apiResponse {
		t.Helper()
		r, err := c.do(ctx, "POST", "/api/v1/transactions/transfer",
			map[string]any{"source_account_id": acct, "destination_account_id": "00000000-0000-4000-8000-000000000001", "amount": "1.00", "currency": "USD", "reference_id": "to-nobody"},
			map[string]string{"Idempotency-Key": "to-nobody"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	refused, replayed := transfer(), transfer()
	if refused.status != 404 || refused.errCode() != "ACCOUNT_NOT_FOUND" || !strings.Contains(fmt.Sprint(msg(refused)), "(transaction ") {
		t.Fatalf("transfer refused by its destination: %d %s, want 404 ACCOUNT_NOT_FOUND naming the transaction", refused.status, refused.raw)
	}
	if replayed.status != refused.status || !replayed.replayed || msg(replayed) != msg(refused) {
		t.Fatalf("retried refused transfer: %d replayed=%v %s, want the first answer (%s) marked as a replay", replayed.status, replayed.replayed, replayed.raw, refused.raw)
	}
	for _, tc := range []struct {
		name, id string
		status   int
		code     string
	}{
		{"unknown account", uuid.NewString(), 404, "ACCOUNT_NOT_FOUND"},
		{"account with a refusal only", acct, 200, ""},
	} {
		r, err := c.do(ctx, "GET", "/api/v1/accounts/"+tc.id+"/transactions", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != tc.status || r.errCode() != tc.code {
			t.Fatalf("%s: history %d %s, want %d %s", tc.name, r.status, r.raw, tc.status, tc.code)
		}
	}
}

// TestReplaysAreByteForByte: on every write route, a retry with the same
// key and body gets the first answer byte for byte (same status, same
// body; the X-Request-ID sent is the same both times, since error bodies
// carry it) plus Idempotent-Replayed: true, from the running node and
// again after a clean restart (keys loaded from PostgreSQL) and after
// SIGKILL (the unflushed tail replayed from the log).
func TestReplaysAreByteForByte(t *testing.T) {
	dbURL, dataDir, addr := pgtest.NewDatabase(t), t.TempDir(), freePort(t)
	args := []string{"--database-url", dbURL, "--data-dir", dataDir, "--partitions", "4"}
	n := startNode(t, addr, args...)
	c := newClient(n.addr)
	ctx := context.Background()
	src, dst := c.openAccount(t, "bytes-src"), c.openAccount(t, "bytes-dst")
	nobody := "00000000-0000-4000-8000-000000000002"
	cases := []struct {
		name, path string
		body       map[string]any
		status     int
	}{
		{"open", "/api/v1/accounts", map[string]any{"customer_id": "c-1", "account_type": "savings", "currency": "USD", "overdraft_limit": "1.00"}, 201},
		{"credit", "/api/v1/transactions/credit", map[string]any{"account_id": src, "amount": "50.00", "currency": "USD", "description": "pay day"}, 201},
		{"debit", "/api/v1/transactions/debit", map[string]any{"account_id": src, "amount": "2.50", "currency": "USD"}, 201},
		{"refused debit", "/api/v1/transactions/debit", map[string]any{"account_id": dst, "amount": "9.00", "currency": "USD"}, 422},
		{"refused credit", "/api/v1/transactions/credit", map[string]any{"account_id": dst, "amount": "9.00", "currency": "EUR"}, 422},
		{"transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": src, "destination_account_id": dst, "amount": "3.00", "currency": "USD"}, 201},
		{"refunded transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": src, "destination_account_id": nobody, "amount": "1.00", "currency": "USD"}, 404},
		{"refused transfer", "/api/v1/transactions/transfer", map[string]any{"source_account_id": dst, "destination_account_id": src, "amount": "99.00", "currency": "USD"}, 422},
		{"batch", "/api/v1/transactions/batch", map[string]any{"items": []map[string]any{
			{"type": "credit", "account_id": dst, "amount": "1.00", "currency": "USD", "idempotency_key": "b-1"},
			{"type": "debit", "account_id": dst, "amount": "100.00", "currency": "USD", "idempotency_key": "b-2"},
			{"type": "transfer", "source_account_id": src, "destination_account_id": dst, "amount": "0.01", "currency": "USD", "idempotency_key": "b-3"},
			{"type": "transfer", "source_account_id": src, "destination_account_id": nobody, "amount": "0.02", "currency": "USD", "idempotency_key": "b-4"},
			{"type": "transfer", "source_account_id": dst, "destination_account_id": src, "amount": "999.00", "currency": "USD", "idempotency_key": "b-5"},
			{"type": "credit", "account_id": dst, "amount": "1.00", "currency": "EUR", "idempotency_key": "b-6"},
		}}, 200},
	}
	send := func(i int) *apiResponse {
		t.Helper()
		tc := cases[i]
		h := map[string]string{"X-Request-ID": "rid-" + strconv.Itoa(i)}
		if tc.name != "batch" {
			h["Idempotency-Key"] = "bytes-" + strconv.Itoa(i)
		}
		r, err := c.do(ctx, "POST", tc.path, tc.body, h)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := make([]*apiResponse, len(cases))
	for i, tc := range cases {
		first[i] = send(i)
		if first[i].status != tc.status || first[i].replayed {
			t.Fatalf("%s: first answer %d replayed=%v %s, want %d", tc.name, first[i].status, first[i].replayed, first[i].raw, tc.status)
		}
	}
	check := func(when string) {
		t.Helper()
		for i, tc := range cases {
			again := send(i)
			raw := again.raw
			if tc.name == "batch" {
				// A batch marks each replayed item in its body instead of
				// the header (README, Batches); with that marker taken
				// out, each item is the first answer's.
				if n := bytes.Count(raw, []byte(`,"replayed":true}`)); n != 6 {
					t.Errorf("batch, %s: %d items marked replayed, want 6: %s", when, n, raw)
				}
				raw = bytes.ReplaceAll(raw, []byte(`,"replayed":true}`), []byte(`}`))
			}
			if again.status != first[i].status || !bytes.Equal(raw, first[i].raw) {
				t.Errorf("%s, %s: retry answered %d %s\nwant %d %s", tc.name, when, again.status, again.raw, first[i].status, first[i].raw)
			}
			// A batch marks replays per item; its own answer is not one.
			if again.replayed != (tc.name != "batch") {
				t.Errorf("%s, %s: Idempotent-Replayed = %v", tc.name, when, again.replayed)
			}
		}
	}
	check("on the running node")
	n.stop()
	n = startNode(t, addr, args...)
	c = newClient(n.addr)
	check("after a restart")
	n.kill()
	n = startNode(t, addr, args...)
	c = newClient(n.addr)
	check("after SIGKILL and a restart")
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}

// TestLegsShowTheirFinalStatus: over HTTP, a completed transfer's legs
// both read completed, a refunded one's debit and refund read refunded
// and its credit leg failed, in GET /transactions/{id} and in the source's
// history, although the debit legs' rows stay pending in PostgreSQL.
func TestLegsShowTheirFinalStatus(t *testing.T) {
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "4", "--flush-interval", "20ms")
	c := newClient(n.addr)
	ctx := context.Background()
	src, dst := c.openAccount(t, "legs-src"), c.openAccount(t, "legs-dst")
	if r := c.deposit(t, src, "10.00", "legs-fund"); r.status != 201 {
		t.Fatalf("fund: %d %s", r.status, r.raw)
	}
	transfer := func(to string) string {
		t.Helper()
		r, err := c.do(ctx, "POST", "/api/v1/transactions/transfer",
			map[string]any{"source_account_id": src, "destination_account_id": to, "amount": "1.00", "currency": "USD"}, nil)
		if err != nil || (r.status != 201 && r.status != 404 && r.status != 422) {
			t.Fatalf("transfer to %s: %v %+v", to, err, r)
		}
		if id := r.str("transaction_id"); id != "" {
			return id
		}
		e, _ := r.body["error"].(map[string]any)
		m, _ := e["message"].(string) // a refused transfer names itself: "(transaction <id>)"
		_, after, _ := strings.Cut(m, "(transaction ")
		id, _, _ := strings.Cut(after, ")")
		return id
	}
	eur, err := c.do(ctx, "POST", "/api/v1/accounts", map[string]any{"customer_id": "c-eur", "account_type": "checking", "currency": "EUR"}, map[string]string{"Idempotency-Key": "legs-eur"})
	if err != nil || eur.status != 201 {
		t.Fatalf("open EUR: %v %+v", err, eur)
	}
	// Completed; refused by its destination (another currency: the credit
	// leg is recorded, failed); sent to no account (the refusal is a
	// tombstone, not a leg of the transaction).
	done, refused, nowhere := transfer(dst), transfer(eur.str("account_id")), transfer("00000000-0000-4000-8000-000000000003")
	want := map[string]map[string]string{ // transaction → leg type → status
		done:    {"transfer_debit": "completed", "transfer_credit": "completed"},
		refused: {"transfer_debit": "refunded", "transfer_credit": "failed", "transfer_refund": "refunded"},
		nowhere: {"transfer_debit": "refunded", "transfer_refund": "refunded"},
	}
	overall := map[string]string{done: "completed", refused: "refunded", nowhere: "refunded"}
	for id, legs := range want {
		eventually(t, 10*time.Second, func() (bool, string) {
			r, err := c.do(ctx, "GET", "/api/v1/transactions/"+id, nil, nil)
			if err != nil || r.status != 200 {
				return false, fmt.Sprintf("%v %+v", err, r)
			}
			got := map[string]string{}
			list, _ := r.body["legs"].([]any)
			for _, l := range list {
				leg, _ := l.(map[string]any)
				typ, _ := leg["type"].(string)
				st, _ := leg["status"].(string)
				got[typ] = st
			}
			return fmt.Sprint(got) == fmt.Sprint(legs) && r.str("status") == overall[id], fmt.Sprintf("transaction %s: legs %v status %s, want %v %s", id, got, r.str("status"), legs, overall[id])
		})
	}
	r, err := c.do(ctx, "GET", "/api/v1/accounts/"+src+"/transactions", nil, nil)
	if err != nil || r.status != 200 {
		t.Fatalf("history: %v %+v", err, r)
	}
	seen := 0
	rows, _ := r.body["transactions"].([]any)
	for _, row := range rows {
		m, _ := row.(map[string]any)
		id, _ := m["transaction_id"].(string)
		typ, _ := m["type"].(string)
		st, _ := m["status"].(string)
		if legs, ok := want[id]; ok {
			seen++
			if legs[typ] != st {
				t.Errorf("history: %s leg of %s reads %s, want %s", typ, id, st, legs[typ])
			}
		}
	}
	if seen != 5 { // the source has three debits and two refunds
		t.Fatalf("history shows %d of the source's 5 transfer legs: %s", seen, r.raw)
	}
}
