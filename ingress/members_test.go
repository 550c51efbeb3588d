package ingress

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bursar/bursar/ledger"
)

// TestMembersOf pins each request shape's members: the README's names.
func TestMembersOf(t *testing.T) {
	money, transfer, item := moneyNames, transferNames, []string{"type", "idempotency_key"}
	for _, tc := range []struct {
		name string
		m    *members
		want []string
	}{
		{"open", openMembers, openNames},
		{"money", moneyMembers, money},
		{"transfer", transferMembers, transfer},
		{"batch", batchMembers, []string{"items"}},
		{"money item", moneyItemMembers, append(slices.Clone(item), money...)},
		{"transfer item", transferItemMembers, append(slices.Clone(item), transfer...)},
	} {
		if !slices.Equal(tc.m.names, tc.want) {
			t.Errorf("%s: members %q, want %q", tc.name, tc.m.names, tc.want)
		}
	}
}

// strictMemberCases are bodies encoding/json accepts and decodeStrict
// must refuse with MALFORMED_REQUEST and a message naming the member:
// built from a valid body by decoder, with the member's name as it
// appears in the message.
func strictMemberCases(body func(extra string) string, first, firstValue string) []struct{ name, body, member string } {
	upper := strings.ToUpper(first)
	title := strings.ToUpper(first[:1]) + first[1:]
	return []struct{ name, body, member string }{
		{"duplicate, same value", body(q(first) + ":" + firstValue), first},
		{"duplicate, null", body(q(first) + ":null"), first},
		{"duplicate, escaped", body(fmt.Sprintf(`"\u%04x%s":%s`, first[0], first[1:], firstValue)), first},
		{"upper case", strings.Replace(body(""), q(first), q(upper), 1), upper},
		{"title case", strings.Replace(body(""), q(first), q(title), 1), title},
		{"duplicate in another case", body(q(upper) + ":" + firstValue), upper},
	}
}

func TestDecodeStrictMembers(t *testing.T) {
	money := func(extra string) string {
		b := `{"account_id":"` + testAccount + `","amount":"1.00","currency":"USD","description":"d","reference_id":"r-1"`
		if extra != "" {
			b += "," + extra
		}
		return b + "}"
	}
	open := func(extra string) string {
		b := `{"customer_id":"cust-1","account_type":"checking","currency":"USD","overdraft_limit":"5"`
		if extra != "" {
			b += "," + extra
		}
		return b + "}"
	}
	transfer := func(extra string) string {
		b := `{"source_account_id":"` + testAccount + `","destination_account_id":"` + otherAccount + `","amount":"1","currency":"USD"`
		if extra != "" {
			b += "," + extra
		}
		return b + "}"
	}
	decoders := []struct {
		name   string
		body   func(string) string
		decode func([]byte) (ledger.Command, *apiError)
		cases  []struct{ name, body, member string }
	}{
		{"money", money, func(b []byte) (ledger.Command, *apiError) { return decodeMoney(ledger.KindCredit, b, "") }, nil},
		{"open", open, func(b []byte) (ledger.Command, *apiError) { return decodeOpen(b, "k-1") }, nil},
		{"transfer", transfer, func(b []byte) (ledger.Command, *apiError) { return decodeTransfer(b, "") }, nil},
	}
	decoders[0].cases = append(strictMemberCases(money, "account_id", q(otherAccount)),
		[]struct{ name, body, member string }{
			{"AMOUNT", strings.Replace(money(""), `"amount"`, `"AMOUNT"`, 1), "AMOUNT"},
			{"Amount", strings.Replace(money(""), `"amount"`, `"Amount"`, 1), "Amount"},
			{"amount twice, the second larger", money(`"amount":"1000.00"`), "amount"},
			{"amount twice, a string and a number", money(`"amount":1.00`), "amount"},
			{"currency twice", money(`"currency":"EUR"`), "currency"},
			{"description twice", money(`"description":"e"`), "description"},
			{"reference_id twice", money(`"reference_id":"r-2"`), "reference_id"},
			{"Reference_ID", strings.Replace(money(""), `"reference_id"`, `"Reference_ID"`, 1), "Reference_ID"},
			{"amount twice with white space", strings.Replace(money(` "amount" : "2" `), `,"currency"`, " ,\n\t\"currency\"", 1), "amount"},
		}...)
	decoders[1].cases = append(strictMemberCases(open, "customer_id", `"cust-2"`),
		[]struct{ name, body, member string }{
			{"account_id twice", open(`"account_id":"` + testAccount + `","account_id":"` + otherAccount + `"`), "account_id"},
			{"overdraft_limit twice", open(`"overdraft_limit":"5000"`), "overdraft_limit"},
			{"Account_Type", strings.Replace(open(""), `"account_type"`, `"Account_Type"`, 1), "Account_Type"},
			{"CURRENCY", strings.Replace(open(""), `"currency"`, `"CURRENCY"`, 1), "CURRENCY"},
		}...)
	decoders[2].cases = append(strictMemberCases(transfer, "source_account_id", q(otherAccount)),
		[]struct{ name, body, member string }{
			{"destination twice", transfer(`"destination_account_id":"` + testAccount + `"`), "destination_account_id"},
			{"Source_Account_Id", strings.Replace(transfer(""), `"source_account_id"`, `"Source_Account_Id"`, 1), "Source_Account_Id"},
			// encoding/json folds Unicode too: U+017F (ſ) is an s, U+212A (K)
			// a k. Neither is the documented spelling.
			{"long s", strings.Replace(transfer(""), `"source_account_id"`, `"ſource_account_id"`, 1), "ſource_account_id"},
			{"amount twice", transfer(`"amount":"2"`), "amount"},
		}...)

	for _, d := range decoders {
		// The valid body decodes, also with its names escaped, which
		// spells the same names.
		if _, err := d.decode([]byte(d.body(""))); err != nil {
			t.Fatalf("%s: valid body refused: %v", d.name, err)
		}
		escaped := strings.Replace(d.body(""), `"currency"`, `"\u0063urrency"`, 1)
		if _, err := d.decode([]byte(escaped)); err != nil {
			t.Fatalf("%s: escaped name refused: %v", d.name, err)
		}
		for _, tc := range d.cases {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				c, err := d.decode([]byte(tc.body))
				assertRefused(t, c, err, ledger.CodeMalformedRequest)
				if !strings.Contains(err.msg, q(tc.member)) {
					t.Fatalf("message %q does not name %q", err.msg, tc.member)
				}
			})
		}
	}
}

func TestDecodeBatchStrictMembers(t *testing.T) {
	credit := itemJSON("credit", moneyJSON(`"1"`, "USD"))
	t.Run("envelope", func(t *testing.T) {
		for _, body := range []string{
			`{"items":[` + credit + `],"items":[` + credit + `]}`,
			`{"ITEMS":[` + credit + `]}`,
			`{"Items":[` + credit + `]}`,
			`{"items":[` + credit + `],"Items":[]}`,
		} {
			items, err := decodeBatch([]byte(body), 1000)
			if err == nil || err.code != ledger.CodeMalformedRequest || items != nil {
				t.Fatalf("%s: %d items, %v; want MALFORMED_REQUEST", body, len(items), err)
			}
			if !strings.Contains(err.msg, "tems") {
				t.Fatalf("%s: message %q does not name the member", body, err.msg)
			}
		}
	})

	money := moneyJSON(`"12.34"`, "USD")
	tr := transferJSON(q(testAccount), q(otherAccount), `"5"`)
	for _, tc := range []struct {
		name, item, member string
	}{
		{"type twice", itemJSON("credit", money, `"type":"debit"`), "type"},
		{"type twice, transfer last", itemJSON("credit", money, `"type":"transfer"`), "type"},
		{"TYPE", `{"TYPE":"credit",` + strings.TrimPrefix(money, "{"), "TYPE"},
		{"Type beside type", itemJSON("debit", money, `"Type":"credit"`), "Type"},
		{"idempotency_key twice", itemJSON("credit", money, `"idempotency_key":"k-1"`, `"idempotency_key":"k-2"`), "idempotency_key"},
		{"Idempotency_Key", itemJSON("credit", money, `"Idempotency_Key":"k-1"`), "Idempotency_Key"},
		{"amount twice", itemJSON("credit", strings.TrimSuffix(money, "}")+`,"amount":"99"}`), "amount"},
		{"AMOUNT", itemJSON("credit", strings.Replace(money, `"amount"`, `"AMOUNT"`, 1)), "AMOUNT"},
		{"source twice", itemJSON("transfer", strings.TrimSuffix(tr, "}")+`,"source_account_id":`+q(otherAccount)+`}`), "source_account_id"},
		{"Source_Account_Id", itemJSON("transfer", strings.Replace(tr, `"source_account_id"`, `"Source_Account_Id"`, 1)), "Source_Account_Id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := decodeBatch([]byte(batchJSON(credit, tc.item, credit)), 1000)
			if err != nil {
				t.Fatalf("envelope refused: %v", err)
			}
			if len(items) != 3 || items[0].err != nil || items[2].err != nil {
				t.Fatalf("the other items: %+v", items)
			}
			assertRefused(t, items[1].cmd, items[1].err, ledger.CodeMalformedRequest)
			if !strings.Contains(items[1].err.msg, q(tc.member)) {
				t.Fatalf("message %q does not name %q", items[1].err.msg, tc.member)
			}
		})
	}
}

// TestSkipValue: the value skipper members.check relies on, over bodies
// with white space.
func TestSkipValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // index just past the value
	}{
		{`"a"`, 3},
		{`"a\"b",`, 6},
		{`"a\\",`, 5},
		{`12.5,`, 4},
		{`12.5}`, 4},
		{`12.5 ,`, 4},
		{"true\n}", 4},
		{`null]`, 4},
		{`{"a":{"b":"}"}} ,`, 15},
		{`[1, [2, "]"], {}] }`, 17},
		{`1`, 1},
	} {
		if got := skipValue([]byte(tc.in), 0); got != tc.want {
			t.Errorf("skipValue(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
