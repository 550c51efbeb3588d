package ingress

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/bursar/bursar/ledger"
)

// TestHTTPStrictInput sends the bodies strict JSON refuses (issue 11:
// duplicate and case-variant members, non-canonical amounts and UUIDs,
// bidi and invisible characters, unknown account types) through the real
// fasthttp server. The server has no producer: a request that got past
// its decoder would reach the log, so each answer here, with its status
// and code, also says that nothing was appended.
func TestHTTPStrictInput(t *testing.T) {
	const (
		credit   = "/api/v1/transactions/credit"
		debit    = "/api/v1/transactions/debit"
		transfer = "/api/v1/transactions/transfer"
		open     = "/api/v1/accounts"
	)
	money := func(amount, extra string) string {
		return `{"account_id":"` + testAccount + `","amount":` + amount + `,"currency":"USD"` + extra + `}`
	}
	tr := func(src, amount, extra string) string {
		return `{"source_account_id":"` + src + `","destination_account_id":"` + otherAccount + `","amount":` + amount + `,"currency":"USD"` + extra + `}`
	}
	op := func(typ, extra string) string {
		return `{"customer_id":"c","account_type":"` + typ + `","currency":"USD"` + extra + `}`
	}
	upper := strings.ToUpper(testAccount)
	cases := []struct {
		name, path, body string
		want             ledger.Code
	}{
		// Members.
		{"credit account_id twice", credit, money(`"1"`, `,"account_id":"`+otherAccount+`"`), ledger.CodeMalformedRequest},
		{"debit amount twice", debit, money(`"1"`, `,"amount":"1000"`), ledger.CodeMalformedRequest},
		{"credit AMOUNT", credit, strings.Replace(money(`"1"`, ""), `"amount"`, `"AMOUNT"`, 1), ledger.CodeMalformedRequest},
		{"transfer source twice", transfer, tr(testAccount, `"1"`, `,"source_account_id":"`+otherAccount+`"`), ledger.CodeMalformedRequest},
		{"transfer Source_Account_Id", transfer, strings.Replace(tr(testAccount, `"1"`, ""), `"source_account_id"`, `"Source_Account_Id"`, 1), ledger.CodeMalformedRequest},
		{"open customer_id twice", open, op("checking", `,"customer_id":"d"`), ledger.CodeMalformedRequest},
		{"open Currency", open, strings.Replace(op("checking", ""), `"currency"`, `"Currency"`, 1), ledger.CodeMalformedRequest},
		{"batch items twice", batchPath, `{"items":[],"items":[]}`, ledger.CodeMalformedRequest},
		{"batch ITEMS", batchPath, `{"ITEMS":[` + itemJSON("credit", money(`"1"`, "")) + `]}`, ledger.CodeMalformedRequest},

		// Amounts.
		{"credit 0.010", credit, money(`"0.010"`, ""), ledger.CodeInvalidAmount},
		{"credit 00001.00", credit, money(`"00001.00"`, ""), ledger.CodeInvalidAmount},
		{"debit 007", debit, money(`"007"`, ""), ledger.CodeInvalidAmount},
		{"debit number 007", debit, money(`007`, ""), ledger.CodeMalformedRequest},
		{"transfer 1.230", transfer, tr(testAccount, `"1.230"`, ""), ledger.CodeInvalidAmount},
		{"open overdraft 0050", open, op("checking", `,"overdraft_limit":"0050"`), ledger.CodeInvalidAmount},

		// UUIDs.
		{"credit upper-case account", credit, strings.Replace(money(`"1"`, ""), testAccount, upper, 1), ledger.CodeInvalidField},
		{"transfer upper-case source", transfer, tr(upper, `"1"`, ""), ledger.CodeInvalidField},
		{"transfer braces source", transfer, tr("{"+testAccount+"}", `"1"`, ""), ledger.CodeInvalidField},
		{"open upper-case account_id", open, op("checking", `,"account_id":"`+upper+`"`), ledger.CodeInvalidField},

		// Free text.
		{"credit description U+202E", credit, money(`"1"`, `,"description":"pay \u202erent"`), ledger.CodeInvalidField},
		{"debit description U+200B", debit, money(`"1"`, `,"description":"a\u200bb"`), ledger.CodeInvalidField},
		{"transfer description U+2066", transfer, tr(testAccount, `"1"`, `,"description":"\u2066x\u2069"`), ledger.CodeInvalidField},
		{"transfer description C1", transfer, tr(testAccount, `"1"`, `,"description":"\u009b31m"`), ledger.CodeInvalidField},
		{"open customer_id U+FEFF", open, `{"customer_id":"\ufeffc","account_type":"checking","currency":"USD"}`, ledger.CodeInvalidField},

		// Account types.
		{"open bogus type", open, op("bogus", ""), ledger.CodeInvalidField},
		{"open CHECKING", open, op("CHECKING", ""), ledger.CodeInvalidField},
	}
	api := newTestAPI(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, api.do(t, testReq{method: "POST", path: tc.path, body: tc.body}), tc.want)
		})
	}

	// A batch of such items: each refused alone, nothing appended.
	items := []struct {
		item string
		want ledger.Code
	}{
		{itemJSON("credit", money(`"1"`, ""), `"type":"transfer"`), ledger.CodeMalformedRequest},
		{`{"TYPE":"credit",` + strings.TrimPrefix(money(`"1"`, ""), "{"), ledger.CodeMalformedRequest},
		{itemJSON("debit", money(`"0.010"`, "")), ledger.CodeInvalidAmount},
		{itemJSON("transfer", tr(upper, `"1"`, "")), ledger.CodeInvalidField},
		{itemJSON("credit", money(`"1"`, `,"description":"\u202e"`)), ledger.CodeInvalidField},
	}
	raw := make([]string, len(items))
	for i, it := range items {
		raw[i] = it.item
	}
	srv, err := New(Config{Partitions: 8, MaxBodyBytes: testMaxBody, BatchItemsMax: 10}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, NewReplies("n/1", 10), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := serveTestAPI(t, srv).do(t, testReq{method: "POST", path: batchPath, body: batchJSON(raw...)})
	if r.status != 200 {
		t.Fatalf("batch: status %d %s", r.status, r.body)
	}
	got := decodeResults(t, r.body)
	if len(got) != len(items) {
		t.Fatalf("%d results: %s", len(got), r.body)
	}
	for i, res := range got {
		if res.Index != i || res.Status != 400 || res.Error == nil || res.Error.Code != items[i].want.String() || res.Error.Message == "" {
			t.Fatalf("result %d = %+v; want %s", i, res, items[i].want)
		}
	}
}
