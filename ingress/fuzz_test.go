package ingress

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// Seeds shared by f.Add and documented by the committed corpus under
// testdata/fuzz; the corpus adds a few more.
var (
	moneySeeds = []string{
		moneyJSON(`"12.34"`, "USD"),
		moneyJSON(`12.34`, "USD"),
		moneyJSON(`"5"`, "JPY"),
		moneyJSON(`"1.234"`, "KWD"),
		moneyWith(`"description":"rent","reference_id":"ref-1"`),
		moneyJSON(`"0"`, "USD"),
		moneyJSON(`-1`, "USD"),
		moneyJSON(`1e3`, "USD"),
		moneyJSON(`"99999999999999999999"`, "USD"),
		moneyJSON(`"1"`, "usd"),
		// Strict JSON: one reading of a body.
		moneyWith(`"amount":"1000"`),
		strings.Replace(moneyJSON(`"1"`, "USD"), `"amount"`, `"AMOUNT"`, 1),
		moneyJSON(`"0.010"`, "USD"),
		moneyJSON(`"00001.00"`, "USD"),
		moneyJSON(`"1.0"`, "USD"),
		strings.Replace(moneyJSON(`"1"`, "USD"), testAccount, strings.ToUpper(testAccount), 1),
		moneyWith(`"description":"pay \u202erent \u200b"`),
		`{}{}`,
		`null`,
		``,
	}
	openSeeds = []string{
		openJSON(""),
		openJSON(`"overdraft_limit":"0"`),
		openJSON(`"overdraft_limit":"100.50"`),
		openJSON(`"account_id":"` + testAccount + `"`),
		openJSON(`"overdraft_limit":"0."`),
		openJSON(`"overdraft_limit":-1`),
		`{"customer_id":"c","account_type":"checking","currency":"JPY","overdraft_limit":"0.5"}`,
		`{"customer_id":"","account_type":"checking","currency":"USD"}`,
		openJSON(`"customer_id":"c-2"`),
		`{"customer_id":"c","account_type":"bogus","currency":"USD"}`,
		openJSON(`"overdraft_limit":"0050"`),
		openJSON(`"account_id":"` + strings.ToUpper(testAccount) + `"`),
		openJSON(`"owner_id":"` + otherAccount + `"`),
		openJSON(`"owner_id":"` + fuzzOwner + `"`),
		openJSON(`"owner_id":"not-a-uuid"`),
		openJSON(`"owner_id":null`),
		`[]`,
		``,
	}
)

const fuzzKey = "fuzz-key:1"

func FuzzDecodeMoney(f *testing.F) {
	for _, s := range moneySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, kind := range []ledger.Kind{ledger.KindCredit, ledger.KindDebit} {
			for _, key := range []string{"", fuzzKey} {
				c, err := decodeMoney(kind, body, key)
				if err != nil {
					checkRefusal(t, c, err)
					continue
				}
				checkMoney(t, c, kind, key)
				checkRoundTrip(t, c)
				checkMembersRef(t, body, moneyNames)
				// Decoding is a pure function of its input.
				if again, err := decodeMoney(kind, body, key); err != nil || again != c {
					t.Fatalf("second decode differs: %+v, %v; first %+v", again, err, c)
				}
				// The canonical spelling of an accepted request decodes to
				// the same command.
				exp, _ := ledger.CurrencyExponent(c.Currency)
				canon, merr := json.Marshal(map[string]string{
					"account_id": c.AccountID.String(), "amount": ledger.FormatAmount(c.Amount, exp),
					"currency": c.Currency, "description": c.Description, "reference_id": c.ReferenceID,
				})
				if merr != nil {
					t.Fatal(merr)
				}
				if again, err := decodeMoney(kind, canon, key); err != nil || again != c {
					t.Fatalf("canonical form %s decodes to %+v, %v; want %+v", canon, again, err, c)
				}
			}
		}
	})
}

func FuzzDecodeOpen(f *testing.F) {
	for _, s := range openSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, owner := range []string{"", fuzzOwner} {
			for _, key := range []string{"", fuzzKey} {
				fuzzOpenAs(t, body, key, owner)
			}
		}
	})
}

// fuzzOwner is the customer FuzzDecodeOpen decodes as.
const fuzzOwner = "0190f1a2-0000-7000-8000-0000000000cc"

// fuzzOpenAs is FuzzDecodeOpen's check of one decode as owner ("": not a
// customer): a customer's open is its own, or refused.
func fuzzOpenAs(t *testing.T, body []byte, key, owner string) {
	{
		{
			c, err := decodeOpenAs(body, key, owner)
			if err != nil {
				checkRefusal(t, c, err)
				return
			}
			if owner != "" && c.Owner != owner {
				t.Fatalf("a customer's open has the owner %q, want %q", c.Owner, owner)
			}
			if c.Owner != "" {
				if _, perr := uuid.Parse(c.Owner); perr != nil || len(c.Owner) != 36 {
					t.Fatalf("owner %q is not a canonical UUID", c.Owner)
				}
			}
			checkOpen(t, c, key)
			checkRoundTrip(t, c)
			checkMembersRef(t, body, openNames)
			// With a key (or an explicit account_id) the decode is a pure
			// function of its input; without either the ID is random.
			if key != "" {
				if again, err := decodeOpenAs(body, key, owner); err != nil || again != c {
					t.Fatalf("second decode differs: %+v, %v; first %+v", again, err, c)
				}
			}
			if owner != "" && key == "" {
				return // a customer's account ID without a key is random
			}
			exp, _ := ledger.CurrencyExponent(c.Currency)
			m := map[string]string{
				"account_id": c.AccountID.String(), "customer_id": c.CustomerID, "account_type": c.AccountType,
				"currency": c.Currency, "overdraft_limit": ledger.FormatAmount(c.OverdraftLimit, exp),
			}
			if owner != "" {
				delete(m, "account_id") // a customer does not name it; its key does
			}
			if c.Owner != "" {
				m["owner_id"] = c.Owner
			}
			canon, merr := json.Marshal(m)
			if merr != nil {
				t.Fatal(merr)
			}
			if again, err := decodeOpenAs(canon, key, owner); err != nil || again != c {
				t.Fatalf("canonical form %s decodes to %+v, %v; want %+v", canon, again, err, c)
			}
		}
	}
}

func FuzzDecodeTransfer(f *testing.F) {
	for _, s := range []string{
		transferJSON(q(testAccount), q(otherAccount), `"12.34"`),
		transferJSON(q(testAccount), q(otherAccount), `12.34`),
		transferJSON(q(testAccount), q(testAccount), `"1"`),
		transferJSON(q(testAccount), q(otherAccount), `"0"`),
		strings.Replace(transferJSON(q(testAccount), q(otherAccount), `"1"`), `"source_account_id"`, `"Source_Account_Id"`, 1),
		strings.TrimSuffix(transferJSON(q(testAccount), q(otherAccount), `"1"`), "}") + `,"source_account_id":` + q(otherAccount) + `}`,
		transferJSON(q(strings.ToUpper(testAccount)), q(otherAccount), `"1.230"`),
		moneyJSON(`"1"`, "USD"),
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, key := range []string{"", fuzzKey} {
			c, err := decodeTransfer(body, key)
			if err != nil {
				if err.code == ledger.CodeSameAccount && c == (ledger.Command{}) {
					continue // the one 422 a body alone can earn
				}
				checkRefusal(t, c, err)
				continue
			}
			if c.Counterparty == uuid.Nil || c.Counterparty == c.AccountID {
				t.Fatalf("bad counterparty %s for account %s", c.Counterparty, c.AccountID)
			}
			// Apart from the kind and the counterparty, a transfer's debit
			// leg obeys the money invariants.
			asMoney := c
			asMoney.Kind, asMoney.Counterparty = ledger.KindDebit, uuid.Nil
			if c.Kind != ledger.KindTransferDebit {
				t.Fatalf("kind %s, want transfer_debit", c.Kind)
			}
			checkMoney(t, asMoney, ledger.KindDebit, key)
			checkRoundTrip(t, c)
			checkMembersRef(t, body, transferNames)
			if again, err := decodeTransfer(body, key); err != nil || again != c {
				t.Fatalf("second decode differs: %+v, %v; first %+v", again, err, c)
			}
		}
	})
}

// The documented members of each body (the README's), written out apart
// from the json tags members.check reads.
var (
	moneyNames    = []string{"account_id", "amount", "currency", "description", "reference_id"}
	transferNames = []string{"source_account_id", "destination_account_id", "amount", "currency", "description", "reference_id"}
	openNames     = []string{"customer_id", "account_type", "currency", "overdraft_limit", "account_id", "owner_id"}
)

// checkMembersRef: the members of an accepted object, as json.Decoder's
// tokens read them (a reader apart from members.check), are each a
// documented name, spelled as documented, once.
func checkMembersRef(t *testing.T, body []byte, names []string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("accepted body %q does not start an object: %v, %v", body, tok, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			t.Fatalf("accepted body %q: member name %v, %v", body, tok, err)
		}
		if !slices.Contains(names, name) || seen[name] {
			t.Fatalf("accepted body %q has member %q (documented %q; twice: %v)", body, name, names, seen[name])
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted body %q: value of %q: %v", body, name, err)
		}
	}
}

// checkRefusal: a refusal is a client error with a stable code, a message,
// and no half-built command.
func checkRefusal(t *testing.T, c ledger.Command, err *apiError) {
	t.Helper()
	switch err.code {
	case ledger.CodeMalformedRequest, ledger.CodeMissingField, ledger.CodeInvalidField,
		ledger.CodeInvalidAmount, ledger.CodeUnsupportedCurrency:
	case ledger.CodeForbidden: // a customer naming another owner
	default:
		t.Fatalf("refusal with unexpected code %s: %s", err.code, err.msg)
	}
	if status := err.code.Info().HTTPStatus; status != 400 && err.code != ledger.CodeForbidden {
		t.Fatalf("refusal %s maps to HTTP %d, want 400", err.code, status)
	}
	if err.msg == "" {
		t.Fatalf("refusal %s without a message", err.code)
	}
	if c != (ledger.Command{}) {
		t.Fatalf("refusal %s returned a command: %+v", err.code, c)
	}
}

func checkMoney(t *testing.T, c ledger.Command, kind ledger.Kind, key string) {
	t.Helper()
	if c.Kind != kind {
		t.Fatalf("kind %s, want %s", c.Kind, kind)
	}
	if c.AccountID == uuid.Nil {
		t.Fatalf("nil account ID: %+v", c)
	}
	if c.Amount < 1 || c.Amount > ledger.AmountMax {
		t.Fatalf("amount %d outside [1, %d]", c.Amount, ledger.AmountMax)
	}
	checkCurrency(t, c.Currency)
	assertText(t, "description", c.Description, ledger.DescriptionLenMax)
	assertKeyText(t, "reference_id", c.ReferenceID)
	assertKeyText(t, "idempotency key", c.IdemKey)
	want := key
	if want == "" {
		want = c.ReferenceID
	}
	if c.IdemKey != want {
		t.Fatalf("idempotency key %q, want %q (header %q, reference_id %q)", c.IdemKey, want, key, c.ReferenceID)
	}
	if c.CustomerID != "" || c.AccountType != "" || c.OverdraftLimit != 0 {
		t.Fatalf("money command carries open fields: %+v", c)
	}
	checkUnminted(t, c)
}

func checkOpen(t *testing.T, c ledger.Command, key string) {
	t.Helper()
	if c.Kind != ledger.KindOpen {
		t.Fatalf("kind %s, want open", c.Kind)
	}
	if c.AccountID == uuid.Nil {
		t.Fatalf("nil account ID: %+v", c)
	}
	checkCurrency(t, c.Currency)
	if c.CustomerID == "" || c.AccountType == "" {
		t.Fatalf("empty customer_id or account_type: %+v", c)
	}
	assertText(t, "customer_id", c.CustomerID, ledger.CustomerIDLenMax)
	assertText(t, "account_type", c.AccountType, ledger.AccountTypeLenMax)
	if !slices.Contains(accountTypes[:], c.AccountType) {
		t.Fatalf("account_type %q is not a documented type", c.AccountType)
	}
	if c.OverdraftLimit < 0 || c.OverdraftLimit > ledger.AmountMax {
		t.Fatalf("overdraft limit %d outside [0, %d]", c.OverdraftLimit, ledger.AmountMax)
	}
	if c.IdemKey != key {
		t.Fatalf("idempotency key %q, want %q", c.IdemKey, key)
	}
	if c.Amount != 0 || c.Description != "" || c.ReferenceID != "" {
		t.Fatalf("open command carries money fields: %+v", c)
	}
	checkUnminted(t, c)
}

func checkCurrency(t *testing.T, cur string) {
	t.Helper()
	if _, ok := ledger.CurrencyExponent(cur); !ok || len(cur) != ledger.CurrencyLen {
		t.Fatalf("unknown currency %q", cur)
	}
}

func assertText(t *testing.T, field, s string, max int) {
	t.Helper()
	if len(s) > max {
		t.Fatalf("%s is %d bytes, limit %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		t.Fatalf("%s %q is not valid UTF-8", field, s)
	}
	for _, r := range s {
		// A reference by Unicode properties, apart from checkText's ranges.
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Bidi_Control, r) || unicode.Is(unicode.Join_Control, r) ||
			r == 0x200b || r >= 0x2060 && r <= 0x206f || r == 0xfeff || r == 0x2028 || r == 0x2029 || r == utf8.RuneError {
			t.Fatalf("%s %q contains control or invisible character %U", field, s, r)
		}
	}
}

func assertKeyText(t *testing.T, field, s string) {
	t.Helper()
	if len(s) > ledger.IdemKeyLenMax || len(s) > ledger.ReferenceLenMax {
		t.Fatalf("%s is %d bytes", field, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			t.Fatalf("%s %q contains %q", field, s, c)
		}
	}
}

// checkUnminted: IDs, the timestamp, the hash and the reply route are set at
// submit, never from the body.
func checkUnminted(t *testing.T, c ledger.Command) {
	t.Helper()
	if c.TxID != uuid.Nil || c.Counterparty != uuid.Nil || c.TimestampUs != 0 || c.RequestHash != 0 ||
		c.ReplyNode != "" || c.ReplySeq != 0 || c.FailCode != ledger.OK {
		t.Fatalf("decoder set submit-time fields: %+v", c)
	}
}

// checkRoundTrip: what the decoder accepts, the log can carry unchanged —
// also once submit has filled in the minted fields.
func checkRoundTrip(t *testing.T, c ledger.Command) {
	t.Helper()
	minted := c
	minted.TxID = uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a")
	minted.TimestampUs = 1_700_000_000_000_000
	minted.RequestHash = ledger.HashRequest(&minted)
	minted.ReplyNode, minted.ReplySeq = "node-1/boot", 42
	for _, cmd := range []ledger.Command{c, minted} {
		b := cmd.AppendBinary(nil)
		got, err := ledger.DecodeCommand(b)
		if err != nil {
			t.Fatalf("DecodeCommand(AppendBinary(%+v)): %v", cmd, err)
		}
		if got != cmd {
			t.Fatalf("round trip changed the command:\n  in %+v\n out %+v", cmd, got)
		}
	}
}

// TestFuzzCorpusLabels keeps the committed seed corpus honest: a file named
// valid-* must decode, one named invalid-* must be refused.
func TestFuzzCorpusLabels(t *testing.T) {
	decoders := map[string]func([]byte) *apiError{
		"FuzzDecodeMoney":    func(b []byte) *apiError { _, err := decodeMoney(ledger.KindCredit, b, ""); return err },
		"FuzzDecodeOpen":     func(b []byte) *apiError { _, err := decodeOpen(b, ""); return err },
		"FuzzDecodeTransfer": func(b []byte) *apiError { _, err := decodeTransfer(b, ""); return err },
		// valid-*: the envelope and every item are accepted.
		"FuzzDecodeBatch": func(b []byte) *apiError {
			items, err := decodeBatch(b, batchFuzzItemsMax)
			for _, it := range items {
				if err == nil {
					err = it.err
				}
			}
			return err
		},
	}
	for target, decode := range decoders {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 4 {
			t.Fatalf("%s: only %d seed files", target, len(files))
		}
		for _, file := range files {
			name := filepath.Base(file)
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
				!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
				t.Fatalf("%s/%s is not a one-value go test fuzz v1 file", target, name)
			}
			body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil {
				t.Fatalf("%s/%s: %v", target, name, err)
			}
			aerr := decode([]byte(body))
			switch {
			case strings.HasPrefix(name, "valid-") && aerr != nil:
				t.Errorf("%s/%s refused: %v", target, name, aerr)
			case strings.HasPrefix(name, "invalid-") && aerr == nil:
				t.Errorf("%s/%s accepted", target, name)
			}
		}
	}
}

// batchFuzzItemsMax is the items limit FuzzDecodeBatch decodes under,
// small so that the fuzzer reaches it.
const batchFuzzItemsMax = 4

func FuzzDecodeBatch(f *testing.F) {
	credit := itemJSON("credit", moneyJSON(`"12.34"`, "USD"))
	tr := itemJSON("transfer", transferJSON(q(testAccount), q(otherAccount), `"1"`), `"idempotency_key":"k-1"`)
	for _, s := range []string{
		batchJSON(credit),
		batchJSON(credit, tr, itemJSON("debit", moneyWith(`"reference_id":"r-1"`))),
		batchJSON(credit, `{"type":"loan"}`, `[]`, itemJSON("credit", moneyJSON(`"0"`, "USD"))),
		batchJSON(credit, credit, credit, credit, credit),
		`{"items":[]}`,
		`{"items":null}`,
		`{"items":[],"x":1}`,
		`{"items":[],"items":[]}`,
		batchJSON(itemJSON("credit", moneyJSON(`"1"`, "USD"), `"type":"debit"`), `{"TYPE":"credit"}`),
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := decodeBatch(body, batchFuzzItemsMax)
		if err != nil {
			// The envelope's refusals are the body's, never a business code.
			checkRefusal(t, ledger.Command{}, err)
			if items != nil {
				t.Fatalf("refused envelope with %d items", len(items))
			}
			return
		}
		if len(items) < 1 || len(items) > batchFuzzItemsMax {
			t.Fatalf("accepted %d items, limit %d", len(items), batchFuzzItemsMax)
		}
		var env batchRequest
		if err := json.Unmarshal(body, &env); err != nil || len(env.Items) != len(items) {
			t.Fatalf("accepted envelope does not decode to %d items: %v", len(items), err)
		}
		checkMembersRef(t, body, []string{"items"})
		for i, it := range items {
			if it.err != nil {
				if it.err.code == ledger.CodeSameAccount && it.cmd == (ledger.Command{}) {
					continue // the one 422 a body alone can earn
				}
				checkRefusal(t, it.cmd, it.err)
				continue
			}
			checkRoundTrip(t, it.cmd)
			names := moneyNames
			if it.cmd.Kind == ledger.KindTransferDebit {
				names = transferNames
			}
			checkMembersRef(t, env.Items[i], append([]string{"type", "idempotency_key"}, names...))
			// An accepted item is what its single endpoint makes of the
			// canonical body of the command with its key as the header.
			checkCanonicalSingle(t, it.cmd)
			if again, err := decodeItem(env.Items[i]); err != nil || again != it.cmd {
				t.Fatalf("second decode of item %d differs: %+v, %v; first %+v", i, again, err, it.cmd)
			}
		}
	})
}

// checkCanonicalSingle: the single endpoint of an accepted item's kind
// decodes the item's command, written out canonically, to the same
// command.
func checkCanonicalSingle(t *testing.T, c ledger.Command) {
	t.Helper()
	exp, _ := ledger.CurrencyExponent(c.Currency)
	body := map[string]string{
		"amount": ledger.FormatAmount(c.Amount, exp), "currency": c.Currency,
		"description": c.Description, "reference_id": c.ReferenceID,
	}
	if c.Kind == ledger.KindTransferDebit {
		body["source_account_id"], body["destination_account_id"] = c.AccountID.String(), c.Counterparty.String()
	} else {
		body["account_id"] = c.AccountID.String()
	}
	canon, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var single ledger.Command
	var aerr *apiError
	switch c.Kind {
	case ledger.KindCredit, ledger.KindDebit:
		single, aerr = decodeMoney(c.Kind, canon, c.IdemKey)
	case ledger.KindTransferDebit:
		single, aerr = decodeTransfer(canon, c.IdemKey)
	default:
		t.Fatalf("batch item of kind %s", c.Kind)
	}
	if aerr != nil || single != c {
		t.Fatalf("single endpoint makes %+v, %v of %s; the batch made %+v", single, aerr, canon, c)
	}
	checkUnminted(t, ledger.Command{Kind: c.Kind, TxID: c.TxID, TimestampUs: c.TimestampUs, RequestHash: c.RequestHash,
		ReplyNode: c.ReplyNode, ReplySeq: c.ReplySeq, FailCode: c.FailCode})
}

// FuzzDecodeUserBodies: the bodies of the login, user and API key routes
// are decoded strictly: a body either is refused with a 400 code or has
// one reading, which its canonical JSON form decodes to again.
func FuzzDecodeUserBodies(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","password":"correct horse battery"}`,
		`{"username":"alice","password":"p","role":"customer"}`,
		`{"name":"svc","scopes":["accounts:read","transactions:write"]}`,
		`{"username":"alice","username":"bob","password":"x"}`,
		`{"USERNAME":"alice","password":"x"}`,
		`{"name":"svc","scopes":"admin"}`,
		`{"name":"svc","scopes":[1,2]}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var login loginRequest
		fuzzStrict(t, body, &login, loginMembers, func() any { return new(loginRequest) })
		var user userRequest
		fuzzStrict(t, body, &user, userMembers, func() any { return new(userRequest) })
		var key apiKeyRequest
		fuzzStrict(t, body, &key, apiKeyMembers, func() any { return new(apiKeyRequest) })
	})
}

func fuzzStrict(t *testing.T, body []byte, v any, m *members, fresh func() any) {
	t.Helper()
	if err := decodeStrict(body, v, m); err != nil {
		if err.code.Info().HTTPStatus != 400 || err.msg == "" {
			t.Fatalf("refusal %s (%d) %q", err.code, err.code.Info().HTTPStatus, err.msg)
		}
		return
	}
	canon, merr := json.Marshal(v)
	if merr != nil {
		t.Fatal(merr)
	}
	again := fresh()
	if err := decodeStrict(canon, again, m); err != nil {
		t.Fatalf("canonical form %s refused: %s", canon, err.msg)
	}
	if !reflect.DeepEqual(again, v) {
		t.Fatalf("canonical form %s decodes to %+v, want %+v", canon, again, v)
	}
}
