package ingress

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// The map-based bodies the append-based ones replaced, kept as the
// reference: every new body must decode to what its map decoded to.

func refAccountJSON(a *ledger.Account, exp int) map[string]any {
	return map[string]any{
		"account_id": a.ID.String(), "customer_id": a.CustomerID, "owner_id": ownerJSON(a.Owner), "account_type": a.Type,
		"currency": a.Currency, "status": a.Status.String(),
		"overdraft_limit":   ledger.FormatAmount(a.OverdraftLimit, exp),
		"current_balance":   ledger.FormatAmount(a.Balance, exp),
		"available_balance": ledger.FormatAmount(a.Available(), exp),
		"version":           a.Version, "created_at": timestamp(a.CreatedUs), "updated_at": timestamp(a.UpdatedUs),
	}
}

func refBalanceJSON(id uuid.UUID, acc *ledger.Account, exp int, consistency string, asOfUs int64) map[string]any {
	return map[string]any{
		"account_id": id.String(), "currency": acc.Currency,
		"current_balance":   ledger.FormatAmount(acc.Balance, exp),
		"available_balance": ledger.FormatAmount(acc.Available(), exp),
		"version":           acc.Version,
		"consistency":       consistency,
		"as_of":             timestamp(asOfUs),
	}
}

func refTxJSON(r *ledger.Result) map[string]any {
	exp, _ := ledger.CurrencyExponent(r.Currency)
	return map[string]any{
		"transaction_id": r.TxID.String(), "status": r.Status.String(), "type": r.Kind.String(),
		"timestamp": timestamp(r.TimestampUs), "account_id": r.AccountID.String(),
		"amount": ledger.FormatAmount(r.Amount, exp), "currency": r.Currency,
		"current_balance":   ledger.FormatAmount(r.Balance, exp),
		"available_balance": ledger.FormatAmount(r.Available, exp),
	}
}

func refRecordJSON(r *storage.TxRecord) map[string]any {
	exp, _ := ledger.CurrencyExponent(r.Currency)
	m := map[string]any{
		"transaction_id": r.TxID.String(), "type": r.Kind.String(), "status": r.Status.String(),
		"account_id": r.AccountID.String(), "amount": ledger.FormatAmount(r.Amount, exp),
		"currency": r.Currency, "description": r.Description, "reference_id": r.ReferenceID,
		"timestamp": timestamp(r.TimestampUs), "balance_after": ledger.FormatAmount(r.Balance, exp),
		"sequence": r.Seq,
	}
	if r.Code != ledger.OK {
		m["error_code"] = r.Code.String()
	}
	if r.Counterparty != uuid.Nil {
		m["counterparty_account_id"] = r.Counterparty.String()
	}
	m["created_by"] = nil
	if r.CreatedBy != "" {
		m["created_by"] = r.CreatedBy
	}
	return m
}

func refPendingJSON(c *ledger.Command) map[string]any {
	return map[string]any{
		"transaction_id": c.TxID.String(), "status": "pending", "account_id": c.AccountID.String(),
		"message": "accepted; poll GET /api/v1/transactions/" + c.TxID.String(),
	}
}

func refTransferOutcome(c *ledger.Command, res *ledger.Result) map[string]any {
	exp, _ := ledger.CurrencyExponent(c.Currency)
	return map[string]any{
		"transaction_id": res.TxID.String(), "type": "transfer", "status": "completed",
		"source_account_id": c.AccountID.String(), "destination_account_id": c.Counterparty.String(),
		"amount": ledger.FormatAmount(c.Amount, exp), "currency": c.Currency,
		"description": c.Description, "reference_id": c.ReferenceID, "timestamp": timestamp(res.TimestampUs),
	}
}

func refTransferJSON(t *transfer) map[string]any {
	d := t.debit
	if d == nil {
		d = t.credit
		if d == nil {
			d = t.refund
		}
	}
	exp, _ := ledger.CurrencyExponent(d.Currency)
	src, dst := d.AccountID, d.Counterparty
	if d.Kind == ledger.KindTransferCredit {
		src, dst = dst, src
	}
	m := map[string]any{
		"transaction_id": d.TxID.String(), "type": "transfer", "status": t.status,
		"source_account_id": src.String(), "destination_account_id": dst.String(),
		"amount": ledger.FormatAmount(d.Amount, exp), "currency": d.Currency,
		"description": d.Description, "reference_id": d.ReferenceID, "timestamp": timestamp(d.TimestampUs),
	}
	if t.code != ledger.OK {
		m["error_code"] = t.code.String()
	}
	m["created_by"] = nil
	if d.CreatedBy != "" {
		m["created_by"] = d.CreatedBy
	}
	legs := []map[string]any{}
	for _, l := range []*storage.TxRecord{t.debit, t.credit, t.refund} {
		if l != nil {
			legs = append(legs, refRecordJSON(l))
		}
	}
	m["legs"] = legs
	return m
}

func refErrorJSON(code, msg, rid string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": msg, "request_id": rid}}
}

// decodeJSON decodes a body, numbers kept exact (UseNumber: versions and
// sequences are int64), and refuses anything but one valid JSON value.
func decodeJSON(t *testing.T, body []byte) any {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %s", body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("more than one value: %s", body)
	}
	return v
}

// sameJSON checks that body decodes to what the reference marshals to.
func sameJSON(t *testing.T, body []byte, ref any) {
	t.Helper()
	want, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := decodeJSON(t, body), decodeJSON(t, want); !reflect.DeepEqual(got, w) {
		t.Fatalf("body\n %s\ndecodes differently from the reference\n %s", body, want)
	}
}

func appended(a jsonAppender) []byte {
	var w jsonw.Writer
	a.appendJSON(&w)
	return w.B
}

// Text a client may put in description, reference_id, customer_id, a
// request's path or a header: quotes, backslashes, control bytes, HTML
// characters, non-ASCII, JavaScript line terminators, invalid UTF-8.
var trickyPieces = []string{
	"", "a", "rent", `"`, `\`, `\"`, "/", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t",
	"<", ">", "&", "é", "日本", "🙂", "\u0085", "\u2028", "\u2029", "\uFFFD", "\xff", "\xc3", "\xed\xa0\x80",
}

func trickyText(rng *rand.Rand) string {
	var sb strings.Builder
	for range rng.IntN(6) {
		sb.WriteString(trickyPieces[rng.IntN(len(trickyPieces))])
	}
	return sb.String()
}

// Currencies as a result or row may carry them: supported ones with each
// exponent, and ones no request could send (a record produced by hand).
var testCurrencies = []string{"USD", "JPY", "KWD", "EUR", "", "XXX", `U"D`, "\xff\xfe\x00"}

func randomID(rng *rand.Rand) uuid.UUID {
	if rng.IntN(8) == 0 {
		return uuid.Nil
	}
	var id uuid.UUID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

func randomAmount(rng *rand.Rand) int64 {
	switch rng.IntN(4) {
	case 0:
		return rng.Int64N(1000) - 500
	case 1:
		return ledger.BalanceMax - rng.Int64N(3)
	case 2:
		return -ledger.BalanceMax + rng.Int64N(3)
	}
	return rng.Int64N(ledger.BalanceMax) - rng.Int64N(ledger.BalanceMax)
}

func randomTimeUs(rng *rand.Rand) int64 {
	switch rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return 1_700_000_000_000_000 // whole seconds: no fraction written
	case 2:
		return 1_700_000_000_100_000 // trailing zeros dropped
	}
	return rng.Int64N(4_000_000_000_000_000)
}

func randomResult(rng *rand.Rand) ledger.Result {
	return ledger.Result{
		TxID: randomID(rng), Kind: ledger.Kind(rng.IntN(9)), AccountID: randomID(rng),
		Status: ledger.TxStatus(rng.IntN(5)), Code: ledger.Code(rng.IntN(25)),
		Amount: randomAmount(rng), Delta: randomAmount(rng), Currency: testCurrencies[rng.IntN(len(testCurrencies))],
		Balance: randomAmount(rng), Available: randomAmount(rng), Version: rng.Int64() - rng.Int64(),
		Seq: rng.Int64(), TimestampUs: randomTimeUs(rng),
	}
}

func randomRecord(rng *rand.Rand) storage.TxRecord {
	return storage.TxRecord{
		Result: randomResult(rng), Counterparty: randomID(rng),
		Description: trickyText(rng), ReferenceID: trickyText(rng),
		Partition: rng.Int32(), Offset: rng.Int64(), CreatedBy: []string{"", "apikey:kwsgtrsxflbwghsx", trickyText(rng)}[rng.IntN(3)],
	}
}

// TestBodiesMatchMaps holds every append-based body to the map it
// replaced, over random values with hostile text.
func TestBodiesMatchMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		res := randomResult(rng)
		sameJSON(t, appended(txJSON(&res)), refTxJSON(&res))

		rec := randomRecord(rng)
		sameJSON(t, appended(recordJSON(&rec)), refRecordJSON(&rec))

		acc := ledger.Account{
			ID: randomID(rng), Exists: true, CustomerID: trickyText(rng), Type: trickyText(rng),
			Currency: testCurrencies[rng.IntN(len(testCurrencies))], Status: ledger.AccountStatus(rng.IntN(5)),
			OverdraftLimit: rng.Int64N(ledger.AmountMax), Balance: randomAmount(rng) / 2,
			Version: rng.Int64(), CreatedUs: randomTimeUs(rng), UpdatedUs: randomTimeUs(rng),
		}
		if rng.IntN(2) == 0 {
			acc.Owner = randomID(rng).String()
		}
		exp := rng.IntN(4)
		sameJSON(t, appended(accountJSON(&acc, exp)), refAccountJSON(&acc, exp))
		id := randomID(rng)
		var w jsonw.Writer
		consistency, asOf := []string{consistencyStrong, consistencyEventual}[rng.IntN(2)], randomTimeUs(rng)
		appendBalance(&w, id, &acc, exp, consistency, asOf)
		sameJSON(t, w.B, refBalanceJSON(id, &acc, exp, consistency, asOf))

		c := ledger.Command{
			Kind: ledger.KindTransferDebit, TxID: randomID(rng), AccountID: randomID(rng), Counterparty: randomID(rng),
			Amount: randomAmount(rng), Currency: testCurrencies[rng.IntN(len(testCurrencies))],
			Description: trickyText(rng), ReferenceID: trickyText(rng), TimestampUs: randomTimeUs(rng),
		}
		sameJSON(t, appended(pendingBody{&c}), refPendingJSON(&c))
		w.Reset()
		appendTransferOutcome(&w, &c, &res)
		sameJSON(t, w.B, refTransferOutcome(&c, &res))

		tr := transfer{status: []string{"pending", "completed", "failed", "refunded"}[rng.IntN(4)], code: ledger.Code(rng.IntN(25))}
		legs := []storage.TxRecord{randomRecord(rng), randomRecord(rng), randomRecord(rng)}
		for i, p := range []**storage.TxRecord{&tr.debit, &tr.credit, &tr.refund} {
			if rng.IntN(2) == 0 {
				*p = &legs[i]
			}
		}
		if tr.debit == nil && tr.credit == nil && tr.refund == nil {
			tr.credit = &legs[1]
		}
		if rng.IntN(3) == 0 {
			legs[0].Kind = ledger.KindTransferCredit // the source and destination swap
		}
		sameJSON(t, appended(tr.json(nil)), refTransferJSON(&tr))

		code, msg, rid := ledger.Code(rng.IntN(25)).String(), trickyText(rng), trickyText(rng)
		w.Reset()
		appendError(&w, code, msg, rid)
		sameJSON(t, w.B, refErrorJSON(code, msg, rid))
	}
}

// TestTxJSONValues decodes a credit's answer and checks each value.
func TestTxJSONValues(t *testing.T) {
	res := ledger.Result{
		TxID: uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a"), Kind: ledger.KindCredit,
		AccountID: uuid.MustParse("3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"), Status: ledger.StatusCompleted,
		Amount: 1234, Currency: "USD", Balance: -5, Available: 4995, TimestampUs: 1_700_000_000_123_400,
	}
	body := appended(txJSON(&res))
	want := `{"transaction_id":"0b0c0d0e-0f10-4112-8314-15161718191a","status":"completed","type":"credit",` +
		`"timestamp":"2023-11-14T22:13:20.1234Z","account_id":"3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f",` +
		`"amount":"12.34","currency":"USD","current_balance":"-0.05","available_balance":"49.95"}`
	if string(body) != want {
		t.Fatalf("got\n %s\nwant\n %s", body, want)
	}
}

// TestUserTextValues decodes bodies carrying hostile client text and
// checks it comes back as sent (invalid UTF-8 as U+FFFD).
func TestUserTextValues(t *testing.T) {
	texts := map[string]string{
		`say "hi"`:                `say "hi"`,
		`C:\path\n`:               `C:\path\n`,
		"tab\there\nline\x00nul":  "tab\there\nline\x00nul",
		"<b>&amp;</b>":            "<b>&amp;</b>",
		"café é":                  "café é",
		"line\u2028sep\u2029para": "line\u2028sep\u2029para",
		"bad \xff\xfe utf8 \xc3":  "bad \uFFFD\uFFFD utf8 \uFFFD",
		"\x7f\u0085 DEL and NEL":  "\x7f\u0085 DEL and NEL",
		"emoji 🙂 and \uFFFD kept": "emoji 🙂 and \uFFFD kept",
	}
	for in, want := range texts {
		rec := storage.TxRecord{Result: ledger.Result{Kind: ledger.KindDebit, Currency: "EUR"}, Description: in, ReferenceID: in}
		var got struct {
			Description string `json:"description"`
			ReferenceID string `json:"reference_id"`
		}
		if err := json.Unmarshal(appended(recordJSON(&rec)), &got); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got.Description != want || got.ReferenceID != want {
			t.Fatalf("%q came back as %q / %q, want %q", in, got.Description, got.ReferenceID, want)
		}

		acc := ledger.Account{CustomerID: in, Type: in, Currency: "EUR"}
		var gotAcc struct {
			CustomerID string `json:"customer_id"`
			Type       string `json:"account_type"`
		}
		if err := json.Unmarshal(appended(accountJSON(&acc, 2)), &gotAcc); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if gotAcc.CustomerID != want || gotAcc.Type != want {
			t.Fatalf("%q came back as %q / %q, want %q", in, gotAcc.CustomerID, gotAcc.Type, want)
		}

		var w jsonw.Writer
		appendError(&w, "INVALID_FIELD", in, in)
		var gotErr struct {
			Error struct {
				Code, Message string
				RequestID     string `json:"request_id"`
			}
		}
		if err := json.Unmarshal(w.B, &gotErr); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if gotErr.Error.Code != "INVALID_FIELD" || gotErr.Error.Message != want || gotErr.Error.RequestID != want {
			t.Fatalf("%q came back as %+v, want %q", in, gotErr.Error, want)
		}
	}
}

// TestWriteJSON checks the response writeJSON and fail make: status,
// content type, body plus newline; a pooled buffer reused for a shorter
// body keeps none of the longer one; maps still go through encoding/json.
func TestWriteJSON(t *testing.T) {
	var ctx fasthttp.RequestCtx
	long := storage.TxRecord{Result: ledger.Result{Currency: "USD"}, Description: strings.Repeat("x", 400)}
	writeJSON(&ctx, 200, recordJSON(&long))
	res := ledger.Result{Kind: ledger.KindDebit, Status: ledger.StatusCompleted, Currency: "JPY", Amount: 5}
	writeJSON(&ctx, 201, txJSON(&res))
	if got := ctx.Response.StatusCode(); got != 201 {
		t.Fatalf("status %d", got)
	}
	if got := string(ctx.Response.Header.ContentType()); got != "application/json" {
		t.Fatalf("content type %q", got)
	}
	body := ctx.Response.Body()
	if want := string(appended(txJSON(&res))) + "\n"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}

	writeJSON(&ctx, 200, map[string]string{"status": "ok"})
	if got := string(ctx.Response.Body()); got != `{"status":"ok"}`+"\n" {
		t.Fatalf("map body %q", got)
	}

	s := &Server{}
	ctx.SetUserValue("rid", "req-1")
	s.fail(&ctx, bad(ledger.CodeInsufficientFunds, `no "money" <here>`))
	if got := ctx.Response.StatusCode(); got != 422 {
		t.Fatalf("fail status %d", got)
	}
	want := `{"error":{"code":"INSUFFICIENT_FUNDS","message":"no \"money\" \u003chere\u003e","request_id":"req-1"}}` + "\n"
	if got := string(ctx.Response.Body()); got != want {
		t.Fatalf("fail body %q, want %q", got, want)
	}
}

// TestBodiesNestedInMaps: a history page is a map holding recordBody
// values, marshalled by encoding/json through MarshalJSON; so are the
// other bodies, should one be nested.
func TestBodiesNestedInMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	recs := []storage.TxRecord{randomRecord(rng), randomRecord(rng)}
	items := []recordBody{recordJSON(&recs[0]), recordJSON(&recs[1])}
	body, err := json.Marshal(map[string]any{"account_id": "a", "next_cursor": nil, "transactions": items})
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, body, map[string]any{
		"account_id": "a", "next_cursor": nil,
		"transactions": []map[string]any{refRecordJSON(&recs[0]), refRecordJSON(&recs[1])},
	})

	res := randomResult(rng)
	acc := ledger.Account{Currency: "USD", CustomerID: "c\"1"}
	c := ledger.Command{TxID: randomID(rng), AccountID: randomID(rng)}
	tr := transfer{debit: &recs[0], status: "completed"}
	for _, tc := range []struct {
		body jsonAppender
		ref  any
	}{
		{txJSON(&res), refTxJSON(&res)},
		{accountJSON(&acc, 2), refAccountJSON(&acc, 2)},
		{pendingBody{&c}, refPendingJSON(&c)},
		{tr.json(nil), refTransferJSON(&tr)},
	} {
		b, err := json.Marshal([]any{tc.body})
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, b, []any{tc.ref})
	}
}

// ownerJSON is owner_id as the reference writes it: null when unowned.
func ownerJSON(owner string) any {
	if owner == "" {
		return nil
	}
	return owner
}
