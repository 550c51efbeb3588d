package ingress

import (
	"testing"

	"github.com/bursar/bursar/engine/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

func BenchmarkBefore(b *testing.B) {
	res := &ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, AccountID: uuid.New(), Status: ledger.StatusCompleted,
		Amount: 1234, Delta: 1234, Currency: "USD", Balance: 100000, Available: 150000, Version: 7, TimestampUs: 1_700_000_000_123_456}
	cmd := &ledger.Command{Kind: ledger.KindTransferDebit, TxID: res.TxID, AccountID: res.AccountID, Counterparty: uuid.New(), Amount: 1234, Currency: "USD", Description: "rent for march", ReferenceID: "inv-2024-03", TimestampUs: res.TimestampUs}
	acc := ledger.Account{ID: res.AccountID, Exists: true, CustomerID: "cust-1", Type: "checking", Currency: "USD", Status: ledger.AccountActive, OverdraftLimit: 5000, Balance: 100000, Version: 7, CreatedUs: 1, UpdatedUs: 2}
	rec := &storage.TxRecord{Result: *res, Description: "rent", ReferenceID: "ref"}
	_ = rec
	s := &Server{}
	var ctx fasthttp.RequestCtx
	ctx.SetUserValue("rid", "abc-123")
	b.Run("tx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeJSON(&ctx, 201, txJSON(res))
		}
	})
	b.Run("transfer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeTransferOutcome(&ctx, cmd, res)
		}
	})
	b.Run("error", func(b *testing.B) {
		b.ReportAllocs()
		e := bad(ledger.CodeInsufficientFunds, "the balance plus overdraft limit does not cover the amount (transaction "+res.TxID.String()+")")
		for b.Loop() {
			s.fail(&ctx, e)
		}
	})
	b.Run("balance", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			exp, _ := ledger.CurrencyExponent(acc.Currency)
			writeJSON(&ctx, 200, map[string]any{
				"account_id": acc.ID.String(), "currency": acc.Currency,
				"current_balance":   ledger.FormatAmount(acc.Balance, exp),
				"available_balance": ledger.FormatAmount(acc.Available(), exp),
				"version":           acc.Version,
			})
		}
	})
	b.Run("account", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeJSON(&ctx, 200, accountJSON(&acc, 2))
		}
	})
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeJSON(&ctx, 200, recordJSON(rec))
		}
	})
}
