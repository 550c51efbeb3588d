package baseline

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The hand-written answers are valid JSON with the fields and values
// encoding/json would give.
func TestAppendBodies(t *testing.T) {
	r := &result{
		operation: operation{Kind: kindTransfer, Account: uuid.New(), Counterparty: uuid.New(), Amount: 123456, Currency: "EUR",
			Description: `say "hi" \ <b>&</b> é 日本`, ReferenceID: "ref-1"},
		TxID: uuid.New(), BalanceAfter: -500, Overdraft: 1000, At: time.Date(2026, 3, 4, 5, 6, 7, 891000, time.UTC),
	}
	var tr map[string]any
	if err := json.Unmarshal(appendTransferBody(nil, r), &tr); err != nil {
		t.Fatalf("transfer body: %v", err)
	}
	want := map[string]any{
		"transaction_id": r.TxID.String(), "type": "transfer", "status": "completed",
		"source_account_id": r.Account.String(), "destination_account_id": r.Counterparty.String(),
		"amount": "1234.56", "currency": "EUR", "description": r.Description, "reference_id": "ref-1",
		"timestamp": "2026-03-04T05:06:07.000891Z",
	}
	same(t, "transfer", tr, want)

	r.Kind = kindDebit
	var m map[string]any
	if err := json.Unmarshal(appendMoneyBody(nil, r), &m); err != nil {
		t.Fatalf("money body: %v", err)
	}
	same(t, "debit", m, map[string]any{
		"transaction_id": r.TxID.String(), "status": "completed", "type": "debit", "timestamp": "2026-03-04T05:06:07.000891Z",
		"account_id": r.Account.String(), "amount": "1234.56", "currency": "EUR",
		"current_balance": "-5.00", "available_balance": "5.00",
	})
}

func same(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
		}
	}
}
