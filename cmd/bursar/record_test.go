package main

import (
	"context"
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
