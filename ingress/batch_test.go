package ingress

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/prometheus/client_golang/prometheus"
)

// batchJSON wraps raw items into a batch body.
func batchJSON(items ...string) string {
	return `{"items":[` + strings.Join(items, ",") + `]}`
}

// itemJSON turns a single endpoint's body into a batch item of type typ
// with extra raw members (e.g. `"idempotency_key":"k"`).
func itemJSON(typ, body string, extra ...string) string {
	members := append([]string{`"type":` + q(typ)}, extra...)
	return "{" + strings.Join(members, ",") + "," + strings.TrimPrefix(body, "{")
}

func TestDecodeBatchEnvelope(t *testing.T) {
	credit := itemJSON("credit", moneyJSON(`"1"`, "USD"))
	many := make([]string, 1001)
	for i := range many {
		many[i] = credit
	}
	cases := []struct {
		name, body string
		want       ledger.Code
	}{
		{"empty", ``, ledger.CodeMalformedRequest},
		{"not JSON", `items`, ledger.CodeMalformedRequest},
		{"truncated", `{"items":[` + credit, ledger.CodeMalformedRequest},
		{"syntax error inside an item", `{"items":[{"type":"credit",}]}`, ledger.CodeMalformedRequest},
		{"array", `[` + credit + `]`, ledger.CodeMalformedRequest},
		{"string", `"items"`, ledger.CodeMalformedRequest},
		{"null", `null`, ledger.CodeMalformedRequest},
		{"items missing", `{}`, ledger.CodeMissingField},
		{"items null", `{"items":null}`, ledger.CodeMissingField},
		{"items an object", `{"items":{}}`, ledger.CodeMalformedRequest},
		{"items a string", `{"items":"[]"}`, ledger.CodeMalformedRequest},
		{"items a number", `{"items":1}`, ledger.CodeMalformedRequest},
		{"items empty", `{"items":[]}`, ledger.CodeInvalidField},
		{"1001 items", batchJSON(many...), ledger.CodeInvalidField},
		{"unknown top-level field", `{"items":[` + credit + `],"atomic":true}`, ledger.CodeMalformedRequest},
		{"trailing data", batchJSON(credit) + `{}`, ledger.CodeMalformedRequest},
		{"trailing garbage", batchJSON(credit) + ` x`, ledger.CodeMalformedRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items, err := decodeBatch([]byte(tc.body), 1000)
			if err == nil || err.code != tc.want || err.msg == "" || items != nil {
				t.Fatalf("decodeBatch = %d items, %v; want %s", len(items), err, tc.want)
			}
		})
	}
	if items, err := decodeBatch([]byte(batchJSON(many[:1000]...)), 1000); err != nil || len(items) != 1000 {
		t.Fatalf("1000 items: %d, %v", len(items), err)
	}
	if _, err := decodeBatch([]byte(batchJSON(credit, credit, credit)), 2); err == nil || err.code != ledger.CodeInvalidField {
		t.Fatalf("3 items over a limit of 2: %v", err)
	}
}

// TestDecodeBatchItems: each item is decoded by its endpoint's rules, with
// its own outcome; an accepted item is the command its single endpoint
// makes of the same body with the key as Idempotency-Key.
func TestDecodeBatchItems(t *testing.T) {
	money := moneyJSON(`"12.34"`, "USD")
	tr := transferJSON(q(testAccount), q(otherAccount), `"5"`)
	cases := []struct {
		name string
		item string
		want ledger.Code // OK: accepted
	}{
		{"credit", itemJSON("credit", money), ledger.OK},
		{"debit", itemJSON("debit", money), ledger.OK},
		{"transfer", itemJSON("transfer", tr), ledger.OK},
		{"type last", strings.TrimSuffix(money, "}") + `,"type":"debit"}`, ledger.OK},
		{"with key", itemJSON("credit", money, `"idempotency_key":"batch-key:1"`), ledger.OK},
		{"empty key", itemJSON("credit", money, `"idempotency_key":""`), ledger.OK},
		{"credit body as a transfer", itemJSON("transfer", moneyWith(`"reference_id":"ref-1"`), `"idempotency_key":"k-1"`), ledger.CodeMalformedRequest},
		{"transfer key and reference", itemJSON("transfer", strings.TrimSuffix(tr, "}")+`,"reference_id":"ref-1"}`, `"idempotency_key":"k-1"`), ledger.OK},

		{"not an object", `[]`, ledger.CodeMalformedRequest},
		{"a number", `7`, ledger.CodeMalformedRequest},
		{"null item", `null`, ledger.CodeMalformedRequest},
		{"missing type", money, ledger.CodeMissingField},
		{"null type", itemJSON("credit", money)[:1] + `"type":null,` + strings.TrimPrefix(money, "{"), ledger.CodeMissingField},
		{"empty type", itemJSON("", money), ledger.CodeMissingField},
		{"unknown type", itemJSON("refund", money), ledger.CodeInvalidField},
		{"type in upper case", itemJSON("CREDIT", money), ledger.CodeInvalidField},
		{"type a number", `{"type":1,` + strings.TrimPrefix(money, "{"), ledger.CodeMalformedRequest},
		{"unknown field", itemJSON("credit", moneyWith(`"memo":"x"`)), ledger.CodeMalformedRequest},
		{"transfer field in a credit", itemJSON("credit", moneyWith(`"destination_account_id":`+q(otherAccount))), ledger.CodeMalformedRequest},
		{"credit field in a transfer", itemJSON("transfer", strings.TrimSuffix(tr, "}")+`,"account_id":null}`), ledger.CodeMalformedRequest},
		{"wrong type account", itemJSON("credit", `{"account_id":7,"amount":"1","currency":"USD"}`), ledger.CodeMalformedRequest},
		{"wrong type key", itemJSON("credit", money, `"idempotency_key":5`), ledger.CodeMalformedRequest},
		{"wrong type description", itemJSON("debit", moneyWith(`"description":["x"]`)), ledger.CodeMalformedRequest},
		{"missing amount", itemJSON("credit", `{"account_id":"`+testAccount+`","currency":"USD"}`), ledger.CodeMissingField},
		{"zero amount", itemJSON("credit", moneyJSON(`"0"`, "USD")), ledger.CodeInvalidAmount},
		{"negative amount", itemJSON("debit", moneyJSON(`-1`, "USD")), ledger.CodeInvalidAmount},
		{"over-precise amount", itemJSON("credit", moneyJSON(`"1.001"`, "USD")), ledger.CodeInvalidAmount},
		{"exponent amount", itemJSON("credit", moneyJSON(`1e3`, "USD")), ledger.CodeInvalidAmount},
		{"unknown currency", itemJSON("credit", moneyJSON(`"1"`, "usd")), ledger.CodeUnsupportedCurrency},
		{"invalid uuid", itemJSON("credit", `{"account_id":"not-a-uuid","amount":"1","currency":"USD"}`), ledger.CodeInvalidField},
		{"nil uuid destination", itemJSON("transfer", transferJSON(q(testAccount), q("00000000-0000-0000-0000-000000000000"), `"1"`)), ledger.CodeInvalidField},
		{"same account", itemJSON("transfer", transferJSON(q(testAccount), q(testAccount), `"1"`)), ledger.CodeSameAccount},
		{"bad key", itemJSON("credit", money, `"idempotency_key":"has space"`), ledger.CodeInvalidField},
		{"key with hash", itemJSON("credit", money, `"idempotency_key":"a#b"`), ledger.CodeInvalidField},
		{"long key", itemJSON("credit", money, `"idempotency_key":"`+strings.Repeat("k", 129)+`"`), ledger.CodeInvalidField},
		{"long description", itemJSON("credit", moneyWith(`"description":"`+strings.Repeat("d", ledger.DescriptionLenMax+1)+`"`)), ledger.CodeInvalidField},
		{"long reference", itemJSON("credit", moneyWith(`"reference_id":"`+strings.Repeat("r", 129)+`"`)), ledger.CodeInvalidField},
		{"control character", itemJSON("credit", moneyWith(`"description":"a\u001bb"`)), ledger.CodeInvalidField},
		{"bidi override", itemJSON("credit", moneyWith(`"description":"a\u202eb"`)), ledger.CodeInvalidField},
		{"zero-width space, raw UTF-8", itemJSON("debit", moneyWith("\"description\":\"a\u200bb\"")), ledger.CodeInvalidField},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			other := itemJSON("credit", moneyJSON(`"1"`, "USD"))
			items, err := decodeBatch([]byte(batchJSON(other, tc.item, other)), 1000)
			if err != nil {
				t.Fatalf("envelope refused: %v", err)
			}
			if len(items) != 3 || items[0].err != nil || items[2].err != nil {
				t.Fatalf("the other items: %+v", items)
			}
			got := items[1]
			if tc.want != ledger.OK {
				if got.err == nil || got.err.code != tc.want || got.err.msg == "" || got.cmd != (ledger.Command{}) {
					t.Fatalf("item = %+v, %v; want %s", got.cmd, got.err, tc.want)
				}
				return
			}
			if got.err != nil {
				t.Fatalf("item refused: %v", got.err)
			}
			checkSameAsSingle(t, []byte(tc.item), got.cmd)
		})
	}
}

// checkSameAsSingle decodes an accepted item again through its single
// endpoint's decoder, with idempotency_key as the header, and wants the
// same command.
func checkSameAsSingle(t *testing.T, item []byte, c ledger.Command) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(item, &fields); err != nil {
		t.Fatal(err)
	}
	var typ, key string
	json.Unmarshal(fields["type"], &typ)            //nolint:errcheck // accepted: a string
	json.Unmarshal(fields["idempotency_key"], &key) //nolint:errcheck // accepted: a string or absent
	delete(fields, "type")
	delete(fields, "idempotency_key")
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	var single ledger.Command
	var aerr *apiError
	switch typ {
	case "credit":
		single, aerr = decodeMoney(ledger.KindCredit, body, key)
	case "debit":
		single, aerr = decodeMoney(ledger.KindDebit, body, key)
	case "transfer":
		single, aerr = decodeTransfer(body, key)
	default:
		t.Fatalf("accepted an item of type %q", typ)
	}
	if aerr != nil || single != c {
		t.Fatalf("single endpoint makes %+v, %v of %s (key %q); the batch made %+v", single, aerr, body, key, c)
	}
}

// TestBatchHTTPRefusals: refusals of the batch as a whole, and batches
// whose items are all refused (nothing reaches the log, so no broker is
// needed), through the real fasthttp server; and the two body limits.
func TestBatchHTTPRefusals(t *testing.T) {
	reg := prometheus.NewRegistry()
	// The batch limit stays under the test client's 4 KiB write buffer: a
	// refused body larger than it goes out in a second write, which can
	// meet the connection the server closed after answering 413.
	srv, err := New(Config{Partitions: 8, MaxBodyBytes: testMaxBody, MaxBatchBodyBytes: 3 * testMaxBody, BatchItemsMax: 5},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil, NewReplies("n/1", 10), nil, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := serveTestAPI(t, srv)
	post := func(body string) testReq { return testReq{method: "POST", path: batchPath, body: body} }
	bad1 := itemJSON("credit", moneyJSON(`"0"`, "USD"))
	for _, tc := range []struct {
		name string
		req  testReq
		want ledger.Code
	}{
		{"GET", testReq{method: "GET", path: batchPath}, ledger.CodeMethodNotAllowed},
		{"text/plain", testReq{method: "POST", path: batchPath, header: map[string]string{"Content-Type": "text/plain"}, body: batchJSON(bad1)}, ledger.CodeUnsupportedMediaType},
		{"not JSON", post(`nope`), ledger.CodeMalformedRequest},
		{"items missing", post(`{}`), ledger.CodeMissingField},
		{"too many items", post(batchJSON(bad1, bad1, bad1, bad1, bad1, bad1)), ledger.CodeInvalidField},
		{"over the batch limit", post(batchJSON(itemJSON("credit", moneyWith(`"description":"`+strings.Repeat("x", 3*testMaxBody)+`"`)))), ledger.CodePayloadTooLarge},
		// Above the single routes' limit, below the batch's: fasthttp
		// reads it, the route refuses it.
		{"credit over its limit", testReq{method: "POST", path: "/api/v1/transactions/credit", body: moneyWith(`"description":"` + strings.Repeat("x", 2*testMaxBody) + `"`)}, ledger.CodePayloadTooLarge},
		{"healthz over its limit", testReq{method: "GET", path: "/healthz", body: strings.Repeat(" ", 2*testMaxBody)}, ledger.CodePayloadTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counterValue(t, reg, "bursar_ingress_rejected_total", "reason", "body_size")
			r := api.do(t, tc.req)
			assertError(t, r, tc.want)
			after := counterValue(t, reg, "bursar_ingress_rejected_total", "reason", "body_size")
			if (tc.want == ledger.CodePayloadTooLarge) != (after == before+1) {
				t.Fatalf("body_size rejections %v → %v", before, after)
			}
		})
	}

	// Every item refused by its decoder: 200, one result each, in order.
	long := itemJSON("credit", moneyWith(`"description":"`+strings.Repeat("x", 2*testMaxBody)+`"`))
	r := api.do(t, post(batchJSON(bad1, `{"type":"loan"}`, itemJSON("transfer", transferJSON(q(testAccount), q(testAccount), `"1"`)), long)))
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	got := decodeResults(t, r.body)
	want := []ledger.Code{ledger.CodeInvalidAmount, ledger.CodeInvalidField, ledger.CodeSameAccount, ledger.CodeInvalidField}
	if len(got) != len(want) {
		t.Fatalf("%d results: %s", len(got), r.body)
	}
	for i, res := range got {
		if res.Index != i || res.Status != want[i].Info().HTTPStatus || res.Error == nil || res.Error.Code != want[i].String() || res.Error.Message == "" {
			t.Fatalf("result %d = %+v; want %s", i, res, want[i])
		}
	}
	if n := counterValue(t, reg, "bursar_ingress_batch_items_total", "status", "4xx"); n != 4 {
		t.Fatalf("bursar_ingress_batch_items_total{status=\"4xx\"} = %v", n)
	}
	if n := counterValue(t, reg, "bursar_http_requests_total", "route", "batch"); n != 1 {
		t.Fatalf("bursar_http_requests_total{route=\"batch\",status=\"200\"} = %v", n)
	}
}

// counterValue is the value of the counter name whose label has value,
// or 0.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// batchResult is one result as the tests read it; decoding it strictly
// also checks its members.
type batchResult struct {
	Index    int    `json:"index"`
	Status   int    `json:"status"`
	Replayed bool   `json:"replayed"`
	TxID     string `json:"transaction_id"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Body map[string]any `json:"-"`
}

func decodeResults(t *testing.T, body []byte) []batchResult {
	t.Helper()
	var env struct {
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	out := make([]batchResult, len(env.Results))
	for i, raw := range env.Results {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatalf("result %s: %v", raw, err)
		}
		out[i].Body = m
	}
	return out
}

// TestBatchAgainstBroker runs batches through a real Kafka-protocol broker
// and an engine that answers every command (echoEngine): every item is
// answered in order, one durable wait covers the whole batch, a batch the
// reply registry cannot hold is refused whole, unanswered items are 202,
// and a failed durable wait refuses what was to be answered.
func TestBatchAgainstBroker(t *testing.T) {
	d := newDurableRig(t, time.Second, 0)
	close(d.gate)
	credit := func(ref string) string {
		return itemJSON("credit", moneyWith(`"reference_id":`+q(ref)))
	}
	post := func(items ...string) testResp {
		return d.api.do(t, testReq{method: "POST", path: batchPath, body: batchJSON(items...)})
	}

	r := post(credit("a"), itemJSON("credit", moneyJSON(`"0"`, "USD")), credit("b"), credit("silent"), credit("c"))
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	got := decodeResults(t, r.body)
	wantStatus := []int{201, 400, 201, 202, 201}
	if len(got) != len(wantStatus) {
		t.Fatalf("%d results: %s", len(got), r.body)
	}
	for i, res := range got {
		if res.Index != i || res.Status != wantStatus[i] {
			t.Fatalf("result %d: %+v; want status %d (%s)", i, res, wantStatus[i], r.body)
		}
		if res.Status >= 400 {
			continue
		}
		if res.TxID == "" || res.Body["account_id"] != testAccount {
			t.Fatalf("result %d lacks the single endpoint's fields: %v", i, res.Body)
		}
	}
	if got[0].Body["current_balance"] != "1.00" || got[0].Body["type"] != "credit" ||
		!strings.HasPrefix(got[3].Body["message"].(string), "accepted; poll") {
		t.Fatalf("bodies: %s", r.body)
	}
	if n := d.waits.Load(); n != 1 {
		t.Fatalf("%d durable waits for one batch, want 1", n)
	}

	// The registry holds 10 waiters: a batch of 11 valid items is refused
	// whole, before anything is appended; 10 fit.
	items := make([]string, 11)
	for i := range items {
		items[i] = credit(fmt.Sprintf("r-%d", i))
	}
	assertError(t, post(items...), ledger.CodeUnavailable)
	if r := post(items[:10]...); r.status != 200 || strings.Count(string(r.body), `"status":201`) != 10 {
		t.Fatalf("10 items: %d %s", r.status, r.body)
	}

	// The log cannot confirm it is on disk: every appended item is 503,
	// the refused one keeps its own code.
	d.fail.Store(true)
	r = post(credit("d"), itemJSON("credit", moneyJSON(`"0"`, "USD")), credit("silent"))
	got = decodeResults(t, r.body)
	if r.status != 200 || len(got) != 3 || got[0].Status != 503 || got[1].Status != 400 || got[2].Status != 503 ||
		got[0].Error.Code != "UNAVAILABLE" || got[2].Error.Code != "UNAVAILABLE" {
		t.Fatalf("with a failing disk: %d %s", r.status, r.body)
	}
}

// TestInlineBody: a body's members become the result's, but its status.
func TestInlineBody(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"a":1,"b":{"c":[2]}}`, `{"index":0,"a":1,"b":{"c":[2]}`},
		{`{}`, `{"index":0`},
		{`{"status":"completed"}`, `{"index":0`},
		{`{"transaction_id":"x","status":"completed","type":"credit"}`, `{"index":0,"transaction_id":"x","type":"credit"`},
		{`{"status":"pending","id":"y"}`, `{"index":0,"id":"y"`},
		{`{"d":"say \"status\":\"no\"","legs":[{"status":"completed"}],"status":"done"}`, `{"index":0,"d":"say \"status\":\"no\"","legs":[{"status":"completed"}]`},
		{`{"n":-1.5,"t":true,"z":null,"status":"x","e":{}}`, `{"index":0,"n":-1.5,"t":true,"z":null,"e":{}`},
	} {
		w := getJSONWriter()
		w.B = append(w.B, `{"index":0`...)
		mark := len(w.B)
		w.B = append(w.B, ',')
		w.B = append(w.B, tc.body...)
		inlineBody(w, mark)
		if string(w.B) != tc.want {
			t.Errorf("inlineBody(%s) = %s, want %s", tc.body, w.B, tc.want)
		}
		putJSONWriter(w)
	}
}
