package ingress

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

const testAccount = "3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"

var testAccountID = uuid.MustParse(testAccount)

// moneyJSON builds a credit/debit body; amount is raw JSON text (a quoted
// string or a number literal) so that both spellings can be tested.
func moneyJSON(amount, currency string) string {
	return fmt.Sprintf(`{"account_id":%q,"amount":%s,"currency":%q}`, testAccount, amount, currency)
}

// moneyWith builds a USD credit/debit body of "1.00" with one extra raw
// field, e.g. `"description":"x"`.
func moneyWith(extra string) string {
	return fmt.Sprintf(`{"account_id":%q,"amount":"1.00","currency":"USD",%s}`, testAccount, extra)
}

// openJSON builds an open body with one extra raw field (or none).
func openJSON(extra string) string {
	b := `{"customer_id":"cust-1","account_type":"checking","currency":"USD"`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func q(s string) string { return fmt.Sprintf("%q", s) }

// badIDs are account IDs that must be refused with INVALID_FIELD.
var badIDs = []struct{ name, id string }{
	{"short", "3f2b8c1e"},
	{"35 chars", testAccount[:35]},
	{"37 chars", testAccount + "0"},
	{"non-hex 36 chars", "zf2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"},
	{"all non-hex", "gggggggg-gggg-gggg-gggg-gggggggggggg"},
	{"dashes misplaced", "3f2b8c1e9-a4d-4c6e-8f10-2a3b4c5d6e7f"},
	{"no dashes", strings.ReplaceAll(testAccount, "-", "")},
	{"no dashes padded to 36", strings.ReplaceAll(testAccount, "-", "") + "0000"},
	{"braces form", "{" + testAccount + "}"},
	{"urn form", "urn:uuid:" + testAccount},
	{"nil UUID", "00000000-0000-0000-0000-000000000000"},
	{"spaces around", " " + testAccount[1:35] + " "},
	{"spaces 36", strings.Repeat(" ", 36)},
	// One spelling per ID: upper case is refused, not folded.
	{"upper case", strings.ToUpper(testAccount)},
	{"one upper-case digit", "3F2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"},
	{"upper case in the last group", "3f2b8c1e-9a4d-4c6e-8f10-2A3B4C5D6E7F"},
	{"braces, upper case", "{" + strings.ToUpper(testAccount) + "}"},
	{"urn, upper case", "URN:UUID:" + strings.ToUpper(testAccount)},
	{"no dashes, upper case", strings.ToUpper(strings.ReplaceAll(testAccount, "-", ""))},
}

// badTexts are free texts (description, customer_id) that must be refused
// with INVALID_FIELD: control characters, and the characters with which a
// text displays otherwise than it is stored.
var badTexts = func() []struct{ name, text string } {
	out := []struct{ name, text string }{
		{"NUL", "a\x00b"}, {"TAB", "a\tb"}, {"LF", "a\nb"}, {"CR", "a\rb"}, {"ESC", "\x1b[31mred"}, {"US", "a\x1fb"},
		{"DEL", "a\x7fb"}, {"C1 PAD", "a\u0080b"}, {"C1 NEL", "a\u0085b"}, {"C1 CSI", "a\u009bb"}, {"C1 APC", "a\u009fb"},
		{"invalid UTF-8", "a\xffb"}, {"truncated UTF-8", "a\xe2\x80"}, {"U+FFFD", "a\ufffdb"},
	}
	for _, r := range []rune{
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e, // embeddings and overrides
		0x2066, 0x2067, 0x2068, 0x2069, // isolates
		0x200e, 0x200f, 0x061c, // marks
		0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, // zero-width
		0x2061, 0x2064, 0x206a, 0x206f, // invisible operators, deprecated format characters
		0x2028, 0x2029, // line and paragraph separators
	} {
		out = append(out, struct{ name, text string }{fmt.Sprintf("%U", r), "pay " + string(r) + "rent"})
	}
	return out
}()

// textForms are a text's two spellings as a JSON string, with the code
// each must be refused with: its characters as they are (raw UTF-8, or
// raw bytes; a raw C0 control is a JSON syntax error) and with \u
// escapes, as a client may send either.
func textForms(s string) []struct {
	name, json string
	want       ledger.Code
} {
	raw, escaped := textJSON(s)
	rawWant := ledger.CodeInvalidField
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
		rawWant = ledger.CodeMalformedRequest
	}
	return []struct {
		name, json string
		want       ledger.Code
	}{{"raw", raw, rawWant}, {"escaped", escaped, ledger.CodeInvalidField}}
}

func textJSON(s string) (raw, escaped string) {
	var e strings.Builder
	for _, r := range s {
		if r < 0x20 || r >= 0x7f {
			fmt.Fprintf(&e, `\u%04x`, r)
		} else {
			e.WriteRune(r)
		}
	}
	return `"` + s + `"`, `"` + e.String() + `"`
}

func TestDecodeMoneyRefusals(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name string
		body string
		want ledger.Code
	}{
		// Not one JSON object.
		{"empty body", "", ledger.CodeMalformedRequest},
		{"whitespace body", " \t\r\n ", ledger.CodeMalformedRequest},
		{"malformed JSON", `{"account_id" "x"}`, ledger.CodeMalformedRequest},
		{"not JSON at all", `hello`, ledger.CodeMalformedRequest},
		{"missing comma", `{"account_id":"` + testAccount + `" "amount":"1"}`, ledger.CodeMalformedRequest},
		{"trailing comma", `{"account_id":"` + testAccount + `",}`, ledger.CodeMalformedRequest},
		{"single quotes", `{'account_id':'x'}`, ledger.CodeMalformedRequest},
		{"truncated: open brace", `{`, ledger.CodeMalformedRequest},
		{"truncated: in key", `{"account_`, ledger.CodeMalformedRequest},
		{"truncated: in value", `{"account_id":"3f2b`, ledger.CodeMalformedRequest},
		{"truncated: after colon", `{"account_id":`, ledger.CodeMalformedRequest},
		{"truncated: no closing brace", moneyJSON(`"1"`, "USD")[:len(moneyJSON(`"1"`, "USD"))-1], ledger.CodeMalformedRequest},
		{"JSON array", `[]`, ledger.CodeMalformedRequest},
		{"JSON array of object", `[` + moneyJSON(`"1"`, "USD") + `]`, ledger.CodeMalformedRequest},
		{"JSON string", `"hello"`, ledger.CodeMalformedRequest},
		{"JSON number", `42`, ledger.CodeMalformedRequest},
		{"JSON true", `true`, ledger.CodeMalformedRequest},
		{"JSON null", `null`, ledger.CodeMalformedRequest},
		{"unknown field", moneyWith(`"memo":"x"`), ledger.CodeMalformedRequest},
		{"unknown field, null", moneyWith(`"transfer_to":null`), ledger.CodeMalformedRequest},
		{"duplicate object", `{}{}`, ledger.CodeMalformedRequest},
		{"valid object then another", moneyJSON(`"1"`, "USD") + `{}`, ledger.CodeMalformedRequest},
		{"trailing garbage", moneyJSON(`"1"`, "USD") + ` x`, ledger.CodeMalformedRequest},
		{"trailing number", moneyJSON(`"1"`, "USD") + ` 1`, ledger.CodeMalformedRequest},

		// Wrong types.
		{"amount bool", moneyJSON(`true`, "USD"), ledger.CodeInvalidAmount},
		{"amount object", moneyJSON(`{"value":"1"}`, "USD"), ledger.CodeInvalidAmount},
		{"amount array", moneyJSON(`["1"]`, "USD"), ledger.CodeInvalidAmount},
		{"account_id number", `{"account_id":12345,"amount":"1","currency":"USD"}`, ledger.CodeMalformedRequest},
		{"account_id object", `{"account_id":{},"amount":"1","currency":"USD"}`, ledger.CodeMalformedRequest},
		{"currency number", `{"account_id":"` + testAccount + `","amount":"1","currency":840}`, ledger.CodeMalformedRequest},
		{"currency array", `{"account_id":"` + testAccount + `","amount":"1","currency":["USD"]}`, ledger.CodeMalformedRequest},
		{"description number", moneyWith(`"description":1`), ledger.CodeMalformedRequest},
		{"reference_id bool", moneyWith(`"reference_id":true`), ledger.CodeMalformedRequest},

		// Missing fields.
		{"empty object", `{}`, ledger.CodeMissingField},
		{"missing account_id", `{"amount":"1","currency":"USD"}`, ledger.CodeMissingField},
		{"empty account_id", `{"account_id":"","amount":"1","currency":"USD"}`, ledger.CodeMissingField},
		{"null account_id", `{"account_id":null,"amount":"1","currency":"USD"}`, ledger.CodeMissingField},
		{"missing amount", `{"account_id":"` + testAccount + `","currency":"USD"}`, ledger.CodeMissingField},
		{"null amount", moneyJSON(`null`, "USD"), ledger.CodeMissingField},
		{"missing currency", `{"account_id":"` + testAccount + `","amount":"1"}`, ledger.CodeMissingField},
		{"empty currency", moneyJSON(`"1"`, ""), ledger.CodeMissingField},

		// Amounts.
		{"zero string", moneyJSON(`"0"`, "USD"), ledger.CodeInvalidAmount},
		{"zero with decimals", moneyJSON(`"0.00"`, "USD"), ledger.CodeInvalidAmount},
		{"zero number", moneyJSON(`0`, "USD"), ledger.CodeInvalidAmount},
		{"zero number with decimals", moneyJSON(`0.00`, "USD"), ledger.CodeInvalidAmount},
		{"negative zero", moneyJSON(`-0`, "USD"), ledger.CodeInvalidAmount},
		{"negative string", moneyJSON(`"-1"`, "USD"), ledger.CodeInvalidAmount},
		{"negative number", moneyJSON(`-1`, "USD"), ledger.CodeInvalidAmount},
		{"negative decimal number", moneyJSON(`-12.34`, "USD"), ledger.CodeInvalidAmount},
		{"over-precise USD", moneyJSON(`"1.001"`, "USD"), ledger.CodeInvalidAmount},
		{"over-precise USD number", moneyJSON(`1.001`, "USD"), ledger.CodeInvalidAmount},
		{"over-precise JPY", moneyJSON(`"1.5"`, "JPY"), ledger.CodeInvalidAmount},
		{"over-precise KWD", moneyJSON(`"1.0001"`, "KWD"), ledger.CodeInvalidAmount},
		// Canonical form: no leading zero, no zero past the exponent.
		{"trailing zero past the exponent", moneyJSON(`"0.010"`, "USD"), ledger.CodeInvalidAmount},
		{"trailing zeros past the exponent", moneyJSON(`"1.230"`, "USD"), ledger.CodeInvalidAmount},
		{"trailing zeros past the exponent, number", moneyJSON(`1.2300`, "USD"), ledger.CodeInvalidAmount},
		{"JPY trailing zero", moneyJSON(`"5.0"`, "JPY"), ledger.CodeInvalidAmount},
		{"JPY trailing zero, number", moneyJSON(`5.0`, "JPY"), ledger.CodeInvalidAmount},
		{"KWD trailing zero past the exponent", moneyJSON(`"1.2340"`, "KWD"), ledger.CodeInvalidAmount},
		{"leading zeros", moneyJSON(`"00001.00"`, "USD"), ledger.CodeInvalidAmount},
		{"leading zeros before a dot", moneyJSON(`"007.50"`, "USD"), ledger.CodeInvalidAmount},
		{"leading zeros, integer", moneyJSON(`"007"`, "USD"), ledger.CodeInvalidAmount},
		{"leading zero before zero point", moneyJSON(`"00.5"`, "USD"), ledger.CodeInvalidAmount},
		// JSON itself has no leading zeros in numbers: a syntax error.
		{"leading zeros, number literal", moneyJSON(`007`, "USD"), ledger.CodeMalformedRequest},
		{"exponent string", moneyJSON(`"1e3"`, "USD"), ledger.CodeInvalidAmount},
		{"exponent number", moneyJSON(`1e3`, "USD"), ledger.CodeInvalidAmount},
		{"exponent number upper", moneyJSON(`1E3`, "USD"), ledger.CodeInvalidAmount},
		{"exponent with decimals", moneyJSON(`1.5e2`, "USD"), ledger.CodeInvalidAmount},
		{"overflow string", moneyJSON(`"99999999999999999999"`, "USD"), ledger.CodeInvalidAmount},
		{"overflow number", moneyJSON(`99999999999999999999`, "USD"), ledger.CodeInvalidAmount},
		{"just over AmountMax", moneyJSON(`"10000000000000.00"`, "USD"), ledger.CodeInvalidAmount},
		{"just over AmountMax JPY", moneyJSON(`1000000000000000`, "JPY"), ledger.CodeInvalidAmount},
		{"huge number literal", moneyJSON(strings.Repeat("9", 400), "USD"), ledger.CodeInvalidAmount},
		{"empty string", moneyJSON(`""`, "USD"), ledger.CodeInvalidAmount},
		{"leading space", moneyJSON(`" 1"`, "USD"), ledger.CodeInvalidAmount},
		{"trailing space", moneyJSON(`"1 "`, "USD"), ledger.CodeInvalidAmount},
		{"space inside", moneyJSON(`"1 000"`, "USD"), ledger.CodeInvalidAmount},
		{"only spaces", moneyJSON(`"   "`, "USD"), ledger.CodeInvalidAmount},
		{"comma decimal", moneyJSON(`"1,00"`, "USD"), ledger.CodeInvalidAmount},
		{"thousands separator", moneyJSON(`"1,000.00"`, "USD"), ledger.CodeInvalidAmount},
		{"NaN", moneyJSON(`"NaN"`, "USD"), ledger.CodeInvalidAmount},
		{"Infinity", moneyJSON(`"Infinity"`, "USD"), ledger.CodeInvalidAmount},
		{"leading plus", moneyJSON(`"+1"`, "USD"), ledger.CodeInvalidAmount},
		{"hex", moneyJSON(`"0x10"`, "USD"), ledger.CodeInvalidAmount},
		{"trailing dot", moneyJSON(`"1."`, "USD"), ledger.CodeInvalidAmount},
		{"leading dot", moneyJSON(`".5"`, "USD"), ledger.CodeInvalidAmount},
		{"two dots", moneyJSON(`"1..0"`, "USD"), ledger.CodeInvalidAmount},
		{"two decimal points", moneyJSON(`"1.0.0"`, "USD"), ledger.CodeInvalidAmount},
		{"double minus", moneyJSON(`"--1"`, "USD"), ledger.CodeInvalidAmount},
		{"trailing minus", moneyJSON(`"1-"`, "USD"), ledger.CodeInvalidAmount},
		{"currency suffix", moneyJSON(`"1 USD"`, "USD"), ledger.CodeInvalidAmount},
		{"dollar sign", moneyJSON(`"$1"`, "USD"), ledger.CodeInvalidAmount},
		{"full-width digit", moneyJSON(`"１"`, "USD"), ledger.CodeInvalidAmount},
		{"amount 65 digits", moneyJSON(q(strings.Repeat("0", 64)+"1"), "USD"), ledger.CodeInvalidAmount},

		// Currencies.
		{"lower-case currency", moneyJSON(`"1"`, "usd"), ledger.CodeUnsupportedCurrency},
		{"mixed-case currency", moneyJSON(`"1"`, "Usd"), ledger.CodeUnsupportedCurrency},
		{"XXX", moneyJSON(`"1"`, "XXX"), ledger.CodeUnsupportedCurrency},
		{"two letters", moneyJSON(`"1"`, "US"), ledger.CodeUnsupportedCurrency},
		{"four letters", moneyJSON(`"1"`, "USDD"), ledger.CodeUnsupportedCurrency},
		{"padded currency", moneyJSON(`"1"`, " USD"), ledger.CodeUnsupportedCurrency},
		{"gold is not a currency here", moneyJSON(`"1"`, "XAU"), ledger.CodeUnsupportedCurrency},
		{"numeric code", moneyJSON(`"1"`, "840"), ledger.CodeUnsupportedCurrency},

		// Description.
		{"description 513 bytes", moneyWith(`"description":` + q(long(513))), ledger.CodeInvalidField},
		{"description 513 bytes multi-byte", moneyWith(`"description":` + q(strings.Repeat("€", 171))), ledger.CodeInvalidField},
		{"description newline", moneyWith(`"description":"a\nb"`), ledger.CodeInvalidField},
		{"description tab", moneyWith(`"description":"a\tb"`), ledger.CodeInvalidField},
		{"description NUL", moneyWith(`"description":"a\u0000b"`), ledger.CodeInvalidField},
		{"description ESC", moneyWith(`"description":"\u001b[31mred"`), ledger.CodeInvalidField},
		{"description DEL", moneyWith(`"description":"a\u007fb"`), ledger.CodeInvalidField},
		{"description C1 CSI", moneyWith(`"description":"a\u009bb"`), ledger.CodeInvalidField},
		{"description invalid UTF-8", moneyWith("\"description\":\"a\xffb\""), ledger.CodeInvalidField},
		{"description lone surrogate", moneyWith(`"description":"a\ud800b"`), ledger.CodeInvalidField},

		// Reference ID.
		{"reference_id space", moneyWith(`"reference_id":"a b"`), ledger.CodeInvalidField},
		{"reference_id hash (reserved for legs)", moneyWith(`"reference_id":"ref#1"`), ledger.CodeInvalidField},
		{"reference_id slash", moneyWith(`"reference_id":"a/b"`), ledger.CodeInvalidField},
		{"reference_id non-ASCII", moneyWith(`"reference_id":"réf"`), ledger.CodeInvalidField},
		{"reference_id newline", moneyWith(`"reference_id":"a\nb"`), ledger.CodeInvalidField},
		{"reference_id 129 bytes", moneyWith(`"reference_id":` + q(long(129))), ledger.CodeInvalidField},
	}
	for _, bid := range badIDs {
		cases = append(cases, struct {
			name string
			body string
			want ledger.Code
		}{"account_id " + bid.name, fmt.Sprintf(`{"account_id":%q,"amount":"1","currency":"USD"}`, bid.id), ledger.CodeInvalidField})
	}
	for _, bt := range badTexts {
		for _, form := range textForms(bt.text) {
			cases = append(cases, struct {
				name string
				body string
				want ledger.Code
			}{"description " + bt.name + " " + form.name, moneyWith(`"description":` + form.json), form.want})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kind := range []ledger.Kind{ledger.KindCredit, ledger.KindDebit} {
				c, err := decodeMoney(kind, []byte(tc.body), "")
				assertRefused(t, c, err, tc.want)
			}
		})
	}
}

func assertRefused(t *testing.T, c ledger.Command, err *apiError, want ledger.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %s: %+v", want, c)
	}
	if err.code != want {
		t.Fatalf("code %s (%s), want %s", err.code, err.msg, want)
	}
	if err.msg == "" {
		t.Fatalf("%s without a message", err.code)
	}
	if c != (ledger.Command{}) {
		t.Fatalf("refusal returned a non-zero command: %+v", c)
	}
}

func TestDecodeMoneyValid(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		currency string
		amount   int64
	}{
		{"USD string", moneyJSON(`"12.34"`, "USD"), "USD", 1234},
		{"USD number literal", moneyJSON(`12.34`, "USD"), "USD", 1234},
		{"USD integer string", moneyJSON(`"12"`, "USD"), "USD", 1200},
		{"USD integer number", moneyJSON(`12`, "USD"), "USD", 1200},
		{"USD one decimal", moneyJSON(`"0.5"`, "USD"), "USD", 50},
		{"USD smallest", moneyJSON(`"0.01"`, "USD"), "USD", 1},
		{"USD smallest number", moneyJSON(`0.01`, "USD"), "USD", 1},
		{"USD fewer decimals than the exponent", moneyJSON(`"1.0"`, "USD"), "USD", 100},
		{"USD as many decimals as the exponent", moneyJSON(`"1.00"`, "USD"), "USD", 100},
		{"USD zero decimal number", moneyJSON(`1.0`, "USD"), "USD", 100},
		{"USD ten", moneyJSON(`"10"`, "USD"), "USD", 1000},
		{"USD AmountMax", moneyJSON(`"9999999999999.99"`, "USD"), "USD", ledger.AmountMax},
		{"USD AmountMax number", moneyJSON(`9999999999999.99`, "USD"), "USD", ledger.AmountMax},
		{"JPY", moneyJSON(`"5"`, "JPY"), "JPY", 5},
		{"JPY number", moneyJSON(`5`, "JPY"), "JPY", 5},
		{"JPY AmountMax", moneyJSON(`999999999999999`, "JPY"), "JPY", ledger.AmountMax},
		{"KWD", moneyJSON(`"1.234"`, "KWD"), "KWD", 1234},
		{"KWD number", moneyJSON(`1.234`, "KWD"), "KWD", 1234},
		{"KWD short", moneyJSON(`"1.2"`, "KWD"), "KWD", 1200},
		{"whitespace around the object", " \n" + moneyJSON(`"1"`, "EUR") + "\n\t ", "EUR", 100},
		{"whitespace around the amount", `{"account_id":"` + testAccount + `","amount" :  "1" ,"currency":"EUR"}`, "EUR", 100},
		{"escaped digits in a string", moneyJSON(`"\u0031"`, "USD"), "USD", 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeMoney(ledger.KindCredit, []byte(tc.body), "")
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			want := ledger.Command{Kind: ledger.KindCredit, AccountID: testAccountID, Amount: tc.amount, Currency: tc.currency}
			if c != want {
				t.Fatalf("got  %+v\nwant %+v", c, want)
			}
		})
	}
}

func TestDecodeMoneyFields(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name        string
		kind        ledger.Kind
		body        string
		header      string // Idempotency-Key
		description string
		reference   string
		idemKey     string
	}{
		{name: "debit kind kept", kind: ledger.KindDebit, body: moneyJSON(`"1"`, "USD")},
		{name: "description kept", kind: ledger.KindCredit, body: moneyWith(`"description":"Café ☕ rent"`), description: "Café ☕ rent"},
		{name: "description right to left", kind: ledger.KindCredit, body: moneyWith(`"description":"שכר דירה إيجار"`), description: "שכר דירה إيجار"},
		{name: "description emoji and accents", kind: ledger.KindCredit, body: moneyWith(`"description":"naïve 🏠 Ω ﬁ"`), description: "naïve 🏠 Ω ﬁ"},
		{name: "description escaped non-ASCII", kind: ledger.KindCredit, body: moneyWith(`"description":"caf\u00e9"`), description: "café"},
		{name: "description 512 bytes", kind: ledger.KindCredit, body: moneyWith(`"description":` + q(long(512))), description: long(512)},
		{name: "description null", kind: ledger.KindCredit, body: moneyWith(`"description":null`)},
		{name: "reference_id becomes the key", kind: ledger.KindCredit, body: moneyWith(`"reference_id":"ref-1"`), reference: "ref-1", idemKey: "ref-1"},
		{name: "reference_id all allowed characters", kind: ledger.KindCredit, body: moneyWith(`"reference_id":"aZ09._:-"`), reference: "aZ09._:-", idemKey: "aZ09._:-"},
		{name: "reference_id 128 bytes", kind: ledger.KindCredit, body: moneyWith(`"reference_id":` + q(long(128))), reference: long(128), idemKey: long(128)},
		{name: "header wins over reference_id", kind: ledger.KindCredit, body: moneyWith(`"reference_id":"ref-1"`), header: "hdr-1", reference: "ref-1", idemKey: "hdr-1"},
		{name: "header without reference_id", kind: ledger.KindDebit, body: moneyJSON(`"1"`, "USD"), header: "hdr-2", idemKey: "hdr-2"},
		{name: "empty reference_id, no header", kind: ledger.KindCredit, body: moneyWith(`"reference_id":""`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeMoney(tc.kind, []byte(tc.body), tc.header)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Kind != tc.kind || c.Description != tc.description || c.ReferenceID != tc.reference || c.IdemKey != tc.idemKey {
				t.Fatalf("got kind %s description %q reference %q key %q; want %s %q %q %q",
					c.Kind, c.Description, c.ReferenceID, c.IdemKey, tc.kind, tc.description, tc.reference, tc.idemKey)
			}
			if c.AccountID != testAccountID {
				t.Fatalf("account %s, want %s", c.AccountID, testAccountID)
			}
			// Minted at submit, never by the decoder.
			if c.TxID != uuid.Nil || c.TimestampUs != 0 || c.RequestHash != 0 || c.ReplyNode != "" || c.ReplySeq != 0 {
				t.Fatalf("decoder minted submit-time fields: %+v", c)
			}
		})
	}
}

func TestDecodeOpenRefusals(t *testing.T) {
	long := func(n int) string { return strings.Repeat("c", n) }
	cases := []struct {
		name string
		body string
		want ledger.Code
	}{
		{"empty body", "", ledger.CodeMalformedRequest},
		{"whitespace body", "\n\n  ", ledger.CodeMalformedRequest},
		{"malformed JSON", `{customer_id:"c"}`, ledger.CodeMalformedRequest},
		{"truncated JSON", openJSON("")[:20], ledger.CodeMalformedRequest},
		{"JSON array", `[` + openJSON("") + `]`, ledger.CodeMalformedRequest},
		{"JSON string", `"open"`, ledger.CodeMalformedRequest},
		{"JSON number", `1`, ledger.CodeMalformedRequest},
		{"JSON null", `null`, ledger.CodeMalformedRequest},
		{"unknown field", openJSON(`"balance":"100"`), ledger.CodeMalformedRequest},
		{"duplicate object", `{}{}`, ledger.CodeMalformedRequest},
		{"two valid objects", openJSON("") + openJSON(""), ledger.CodeMalformedRequest},
		{"customer_id number", `{"customer_id":7,"account_type":"checking","currency":"USD"}`, ledger.CodeMalformedRequest},
		{"account_type array", `{"customer_id":"c","account_type":["checking"],"currency":"USD"}`, ledger.CodeMalformedRequest},
		{"currency number", `{"customer_id":"c","account_type":"checking","currency":840}`, ledger.CodeMalformedRequest},
		{"account_id number", openJSON(`"account_id":1`), ledger.CodeMalformedRequest},
		{"account_id bool", openJSON(`"account_id":false`), ledger.CodeMalformedRequest},

		{"empty object", `{}`, ledger.CodeMissingField},
		{"missing customer_id", `{"account_type":"checking","currency":"USD"}`, ledger.CodeMissingField},
		{"empty customer_id", `{"customer_id":"","account_type":"checking","currency":"USD"}`, ledger.CodeMissingField},
		{"missing account_type", `{"customer_id":"c","currency":"USD"}`, ledger.CodeMissingField},
		{"null account_type", `{"customer_id":"c","account_type":null,"currency":"USD"}`, ledger.CodeMissingField},
		{"missing currency", `{"customer_id":"c","account_type":"checking"}`, ledger.CodeMissingField},
		{"empty account_id", openJSON(`"account_id":""`), ledger.CodeMissingField},

		{"customer_id 129 bytes", `{"customer_id":` + q(long(129)) + `,"account_type":"checking","currency":"USD"}`, ledger.CodeInvalidField},
		{"customer_id control char", `{"customer_id":"c\u0001","account_type":"checking","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type 33 bytes", `{"customer_id":"c","account_type":` + q(long(33)) + `,"currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type newline", `{"customer_id":"c","account_type":"check\ning","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type bogus", `{"customer_id":"c","account_type":"bogus","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type upper case", `{"customer_id":"c","account_type":"CHECKING","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type title case", `{"customer_id":"c","account_type":"Savings","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type padded", `{"customer_id":"c","account_type":" checking","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type with a zero-width space", `{"customer_id":"c","account_type":"checking\u200b","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type prefix", `{"customer_id":"c","account_type":"check","currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type 33 bytes of a type", `{"customer_id":"c","account_type":` + q(strings.Repeat("checking", 4)+"s") + `,"currency":"USD"}`, ledger.CodeInvalidField},
		{"account_type number", `{"customer_id":"c","account_type":1,"currency":"USD"}`, ledger.CodeMalformedRequest},
		{"empty account_type", `{"customer_id":"c","account_type":"","currency":"USD"}`, ledger.CodeMissingField},

		{"lower-case currency", `{"customer_id":"c","account_type":"checking","currency":"usd"}`, ledger.CodeUnsupportedCurrency},
		{"unknown currency", `{"customer_id":"c","account_type":"checking","currency":"XXX"}`, ledger.CodeUnsupportedCurrency},
		{"short currency", `{"customer_id":"c","account_type":"checking","currency":"US"}`, ledger.CodeUnsupportedCurrency},

		{"overdraft negative string", openJSON(`"overdraft_limit":"-1"`), ledger.CodeInvalidAmount},
		{"overdraft negative number", openJSON(`"overdraft_limit":-1`), ledger.CodeInvalidAmount},
		{"overdraft negative zero", openJSON(`"overdraft_limit":"-0"`), ledger.CodeInvalidAmount},
		{"overdraft negative zero number", openJSON(`"overdraft_limit":-0`), ledger.CodeInvalidAmount},
		{"overdraft over-precise", openJSON(`"overdraft_limit":"1.001"`), ledger.CodeInvalidAmount},
		{"overdraft over-precise number", openJSON(`"overdraft_limit":1.001`), ledger.CodeInvalidAmount},
		{"overdraft over-precise below a cent", openJSON(`"overdraft_limit":"0.001"`), ledger.CodeInvalidAmount},
		{"overdraft exponent", openJSON(`"overdraft_limit":1e3`), ledger.CodeInvalidAmount},
		{"overdraft overflow", openJSON(`"overdraft_limit":"99999999999999999999"`), ledger.CodeInvalidAmount},
		{"overdraft empty string", openJSON(`"overdraft_limit":""`), ledger.CodeInvalidAmount},
		{"overdraft not a number", openJSON(`"overdraft_limit":"abc"`), ledger.CodeInvalidAmount},
		{"overdraft bool", openJSON(`"overdraft_limit":true`), ledger.CodeInvalidAmount},
		{"overdraft object", openJSON(`"overdraft_limit":{}`), ledger.CodeInvalidAmount},
		{"overdraft zero with trailing dot", openJSON(`"overdraft_limit":"0."`), ledger.CodeInvalidAmount},
		{"overdraft zero with leading dot", openJSON(`"overdraft_limit":".0"`), ledger.CodeInvalidAmount},
		{"overdraft zero with two dots", openJSON(`"overdraft_limit":"0..0"`), ledger.CodeInvalidAmount},
		{"overdraft zero with two decimal points", openJSON(`"overdraft_limit":"0.0.0"`), ledger.CodeInvalidAmount},
		{"overdraft zero padded", openJSON(`"overdraft_limit":" 0"`), ledger.CodeInvalidAmount},
		{"overdraft JPY over-precise", `{"customer_id":"c","account_type":"checking","currency":"JPY","overdraft_limit":"0.5"}`, ledger.CodeInvalidAmount},
		{"overdraft zero past the exponent", openJSON(`"overdraft_limit":"0.000"`), ledger.CodeInvalidAmount},
		{"overdraft trailing zero past the exponent", openJSON(`"overdraft_limit":"100.500"`), ledger.CodeInvalidAmount},
		{"overdraft leading zeros", openJSON(`"overdraft_limit":"0050.00"`), ledger.CodeInvalidAmount},
		{"overdraft zero with leading zeros", openJSON(`"overdraft_limit":"00"`), ledger.CodeInvalidAmount},
		{"overdraft JPY zero with a decimal", `{"customer_id":"c","account_type":"checking","currency":"JPY","overdraft_limit":"0.0"}`, ledger.CodeInvalidAmount},
	}
	for _, bid := range badIDs {
		cases = append(cases, struct {
			name string
			body string
			want ledger.Code
		}{"account_id " + bid.name, openJSON(`"account_id":` + q(bid.id)), ledger.CodeInvalidField})
	}
	for _, bt := range badTexts {
		for _, form := range textForms(bt.text) {
			cases = append(cases, struct {
				name string
				body string
				want ledger.Code
			}{"customer_id " + bt.name + " " + form.name, `{"customer_id":` + form.json + `,"account_type":"checking","currency":"USD"}`, form.want})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, key := range []string{"", "open-key-1"} {
				c, err := decodeOpen([]byte(tc.body), key)
				assertRefused(t, c, err, tc.want)
			}
		})
	}
}

func TestDecodeOpenValid(t *testing.T) {
	cases := []struct {
		name      string
		body      string
		currency  string
		overdraft int64
	}{
		{"no overdraft", openJSON(""), "USD", 0},
		{"overdraft null", openJSON(`"overdraft_limit":null`), "USD", 0},
		{"overdraft zero string", openJSON(`"overdraft_limit":"0"`), "USD", 0},
		{"overdraft zero number", openJSON(`"overdraft_limit":0`), "USD", 0},
		{"overdraft zero with decimals", openJSON(`"overdraft_limit":"0.00"`), "USD", 0},
		{"overdraft zero number with decimals", openJSON(`"overdraft_limit":0.0`), "USD", 0},
		{"overdraft string", openJSON(`"overdraft_limit":"100.50"`), "USD", 10050},
		{"overdraft number", openJSON(`"overdraft_limit":100.5`), "USD", 10050},
		{"overdraft AmountMax", openJSON(`"overdraft_limit":"9999999999999.99"`), "USD", ledger.AmountMax},
		{"JPY overdraft", `{"customer_id":"cust-1","account_type":"checking","currency":"JPY","overdraft_limit":100}`, "JPY", 100},
		{"KWD overdraft", `{"customer_id":"cust-1","account_type":"checking","currency":"KWD","overdraft_limit":"1.5"}`, "KWD", 1500},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(tc.body, `{`, `{"account_id":"`+testAccount+`",`, 1)
			c, err := decodeOpen([]byte(body), "")
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			want := ledger.Command{
				Kind: ledger.KindOpen, AccountID: testAccountID, Currency: tc.currency,
				CustomerID: "cust-1", AccountType: "checking", OverdraftLimit: tc.overdraft,
			}
			if c != want {
				t.Fatalf("got  %+v\nwant %+v", c, want)
			}
		})
	}

	t.Run("customer_id at its limit", func(t *testing.T) {
		cust := strings.Repeat("é", ledger.CustomerIDLenMax/2)
		body := fmt.Sprintf(`{"customer_id":%q,"account_type":"savings","currency":"EUR"}`, cust)
		c, err := decodeOpen([]byte(body), "")
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if c.CustomerID != cust || c.AccountType != "savings" || c.Currency != "EUR" {
			t.Fatalf("got %+v", c)
		}
	})

	t.Run("every documented account type", func(t *testing.T) {
		for _, typ := range accountTypes {
			c, err := decodeOpen([]byte(`{"customer_id":"c","account_type":`+q(typ)+`,"currency":"USD"}`), "k-1")
			if err != nil || c.AccountType != typ {
				t.Fatalf("%s: %+v, %v", typ, c, err)
			}
			if len(typ) > ledger.AccountTypeLenMax {
				t.Fatalf("%s is longer than the record holds (%d)", typ, ledger.AccountTypeLenMax)
			}
		}
	})
}

func TestDecodeOpenAccountID(t *testing.T) {
	open := func(t *testing.T, body, key string) ledger.Command {
		t.Helper()
		c, err := decodeOpen([]byte(body), key)
		if err != nil {
			t.Fatalf("decodeOpen(%s, %q): %v", body, key, err)
		}
		if c.AccountID == uuid.Nil {
			t.Fatalf("nil account ID")
		}
		if c.IdemKey != key {
			t.Fatalf("IdemKey %q, want %q", c.IdemKey, key)
		}
		return c
	}

	t.Run("key without account_id derives a stable ID", func(t *testing.T) {
		a := open(t, openJSON(""), "key-A")
		b := open(t, openJSON(""), "key-A")
		if a.AccountID != b.AccountID {
			t.Fatalf("same key gave %s and %s", a.AccountID, b.AccountID)
		}
		// The derivation is part of the contract: retries across nodes and
		// restarts must agree, so pin it.
		if want := uuid.NewSHA1(openNamespace, []byte("key-A")); a.AccountID != want {
			t.Fatalf("derived %s, want %s", a.AccountID, want)
		}
		// A different body with the same key names the same account; the
		// actor then detects the reused key by the request hash.
		c := open(t, `{"customer_id":"other","account_type":"savings","currency":"EUR"}`, "key-A")
		if c.AccountID != a.AccountID {
			t.Fatalf("same key, other body gave %s, want %s", c.AccountID, a.AccountID)
		}
		if d := open(t, openJSON(""), "key-B"); d.AccountID == a.AccountID {
			t.Fatalf("keys A and B both gave %s", a.AccountID)
		}
		if e := open(t, openJSON(`"account_id":null`), "key-A"); e.AccountID != a.AccountID {
			t.Fatalf("null account_id gave %s, want the derived %s", e.AccountID, a.AccountID)
		}
	})

	t.Run("account_id wins over the key", func(t *testing.T) {
		for _, key := range []string{"", "key-A"} {
			c := open(t, openJSON(`"account_id":"`+testAccount+`"`), key)
			if c.AccountID != testAccountID {
				t.Fatalf("key %q: account %s, want %s", key, c.AccountID, testAccountID)
			}
		}
	})

	t.Run("no key and no account_id mints a fresh ID", func(t *testing.T) {
		a, b := open(t, openJSON(""), ""), open(t, openJSON(""), "")
		if a.AccountID == b.AccountID {
			t.Fatalf("two opens without a key share %s", a.AccountID)
		}
	})
}

func TestIsZero(t *testing.T) {
	for text, want := range map[string]bool{
		"0": true, "00": true, "0.0": true, "0.00": true, "000.000": true,
		"": false, ".": false, "1": false, "0.01": false, "-0": false, "+0": false, " 0": false, "10": false,
	} {
		if got := isZero([]byte(text)); got != want {
			t.Errorf("isZero(%q) = %v, want %v", text, got, want)
		}
	}
}

const otherAccount = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"

var otherAccountID = uuid.MustParse(otherAccount)

// transferJSON builds a transfer body from raw JSON values of the two IDs
// and the amount.
func transferJSON(src, dst, amount string) string {
	return fmt.Sprintf(`{"source_account_id":%s,"destination_account_id":%s,"amount":%s,"currency":"USD"}`, src, dst, amount)
}

func TestDecodeTransfer(t *testing.T) {
	src, dst := q(testAccount), q(otherAccount)
	refusals := []struct {
		name string
		body string
		want ledger.Code
	}{
		{"empty body", "", ledger.CodeMalformedRequest},
		{"JSON null", "null", ledger.CodeMalformedRequest},
		{"two objects", transferJSON(src, dst, `"1"`) + "{}", ledger.CodeMalformedRequest},
		{"account_id instead of source", moneyJSON(`"1"`, "USD"), ledger.CodeMalformedRequest},
		{"unknown field", `{"source_account_id":` + src + `,"destination_account_id":` + dst + `,"amount":"1","currency":"USD","fee":"1"}`, ledger.CodeMalformedRequest},
		{"source number", transferJSON(`1`, dst, `"1"`), ledger.CodeMalformedRequest},
		{"missing source", `{"destination_account_id":` + dst + `,"amount":"1","currency":"USD"}`, ledger.CodeMissingField},
		{"missing destination", `{"source_account_id":` + src + `,"amount":"1","currency":"USD"}`, ledger.CodeMissingField},
		{"missing amount", `{"source_account_id":` + src + `,"destination_account_id":` + dst + `,"currency":"USD"}`, ledger.CodeMissingField},
		{"nil source", transferJSON(q("00000000-0000-0000-0000-000000000000"), dst, `"1"`), ledger.CodeInvalidField},
		{"urn destination", transferJSON(src, q("urn:uuid:"+otherAccount), `"1"`), ledger.CodeInvalidField},
		{"zero amount", transferJSON(src, dst, `"0"`), ledger.CodeInvalidAmount},
		{"negative amount", transferJSON(src, dst, `-5`), ledger.CodeInvalidAmount},
		{"over-precise amount", transferJSON(src, dst, `"1.001"`), ledger.CodeInvalidAmount},
		{"same account", transferJSON(src, src, `"1"`), ledger.CodeSameAccount},
		// One spelling per ID: the same account in upper case is refused as
		// an ID before it could be compared.
		{"same account in upper case", transferJSON(src, q(strings.ToUpper(testAccount)), `"1"`), ledger.CodeInvalidField},
		{"upper-case source", transferJSON(q(strings.ToUpper(testAccount)), dst, `"1"`), ledger.CodeInvalidField},
		// Field errors come before the same-account check.
		{"same account and zero amount", transferJSON(src, src, `"0"`), ledger.CodeInvalidAmount},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeTransfer([]byte(tc.body), "")
			assertRefused(t, c, err, tc.want)
		})
	}

	t.Run("valid", func(t *testing.T) {
		body := `{"source_account_id":` + src + `,"destination_account_id":` + dst +
			`,"amount":12.34,"currency":"USD","description":"rent","reference_id":"ref-7"}`
		for _, tc := range []struct{ header, key string }{{"", "ref-7"}, {"hdr-7", "hdr-7"}} {
			c, err := decodeTransfer([]byte(body), tc.header)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			want := ledger.Command{
				Kind: ledger.KindTransferDebit, AccountID: testAccountID, Counterparty: otherAccountID,
				Amount: 1234, Currency: "USD", Description: "rent", ReferenceID: "ref-7", IdemKey: tc.key,
			}
			if c != want {
				t.Fatalf("header %q:\n got  %+v\n want %+v", tc.header, c, want)
			}
		}
	})
}

// TestTxIDsAreTimeOrdered: transaction IDs are version 7 UUIDs whose
// embedded time does not go backwards, so PostgreSQL's index on
// (transaction_id, kind) grows at its right edge.
func TestTxIDsAreTimeOrdered(t *testing.T) {
	prev := newTxID()
	for range 10_000 {
		id := newTxID()
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v", id, id.Version(), id.Variant())
		}
		if id.Time() < prev.Time() {
			t.Fatalf("%s (time %d) after %s (time %d)", id, id.Time(), prev, prev.Time())
		}
		if id == prev {
			t.Fatalf("%s minted twice", id)
		}
		prev = id
	}
}
