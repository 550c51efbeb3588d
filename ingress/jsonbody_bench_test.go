package ingress

import (
	"testing"

	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Each benchmark writes one response into a RequestCtx, as a handler does:
// "map" through the map it replaced and encoding/json (the reference in
// jsonbody_test.go), "append" through the body that replaced it.

var (
	benchResult = ledger.Result{
		TxID: uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a"), Kind: ledger.KindCredit,
		AccountID: uuid.MustParse("3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"), Status: ledger.StatusCompleted,
		Amount: 1234, Delta: 1234, Currency: "USD", Balance: 100_000, Available: 150_000, Version: 7,
		TimestampUs: 1_700_000_000_123_456,
	}
	benchCommand = ledger.Command{
		Kind: ledger.KindTransferDebit, TxID: benchResult.TxID, AccountID: benchResult.AccountID,
		Counterparty: uuid.MustParse("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), Amount: 1234, Currency: "USD",
		Description: "rent for march", ReferenceID: "inv-2024-03", TimestampUs: benchResult.TimestampUs,
	}
	benchAccount = ledger.Account{
		ID: benchResult.AccountID, Exists: true, CustomerID: "cust-1", Type: "checking", Currency: "USD",
		Status: ledger.AccountActive, OverdraftLimit: 50_000, Balance: 100_000, Version: 7,
		CreatedUs: 1_700_000_000_000_000, UpdatedUs: benchResult.TimestampUs,
	}
	benchRecord = storage.TxRecord{Result: benchResult, Description: "rent for march", ReferenceID: "inv-2024-03"}
)

func benchBoth(b *testing.B, viaMap, viaAppend func(ctx *fasthttp.RequestCtx)) {
	for _, bc := range []struct {
		name string
		f    func(*fasthttp.RequestCtx)
	}{{"map", viaMap}, {"append", viaAppend}} {
		b.Run(bc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.SetUserValue("rid", "k6-000042")
			b.ReportAllocs()
			for b.Loop() {
				bc.f(&ctx)
			}
		})
	}
}

func BenchmarkTxJSON(b *testing.B) {
	r := benchResult
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 201, refTxJSON(&r)) },
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 201, txJSON(&r)) })
}

func BenchmarkTransferJSON(b *testing.B) {
	c, r := benchCommand, benchResult
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 201, refTransferOutcome(&c, &r)) },
		func(ctx *fasthttp.RequestCtx) { _ = writeTransferOutcome(ctx, &c, &r) })
}

func BenchmarkErrorJSON(b *testing.B) {
	s := &Server{}
	r := benchResult
	r.Status, r.Code = ledger.StatusFailed, ledger.CodeInsufficientFunds
	e := resultError(&r)
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) {
			writeJSON(ctx, e.code.Info().HTTPStatus, refErrorJSON(e.code.Info().Name, e.msg, ctx.UserValue("rid").(string)))
		},
		func(ctx *fasthttp.RequestCtx) { s.fail(ctx, e) })
}

func BenchmarkBalanceJSON(b *testing.B) {
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) {
			acc := benchAccount
			exp, _ := ledger.CurrencyExponent(acc.Currency)
			writeJSON(ctx, 200, refBalanceJSON(acc.ID, &acc, exp, consistencyStrong, acc.UpdatedUs))
		},
		func(ctx *fasthttp.RequestCtx) {
			acc := benchAccount
			exp, _ := ledger.CurrencyExponent(acc.Currency)
			writeBalance(ctx, acc.ID, &acc, exp, consistencyStrong, acc.UpdatedUs)
		})
}

func BenchmarkAccountJSON(b *testing.B) {
	a := benchAccount
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, refAccountJSON(&a, 2)) },
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, accountJSON(&a, 2)) })
}

func BenchmarkRecordJSON(b *testing.B) {
	r := benchRecord
	benchBoth(b,
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, refRecordJSON(&r)) },
		func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, recordJSON(&r)) })
}
