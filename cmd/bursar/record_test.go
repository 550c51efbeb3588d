package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

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
