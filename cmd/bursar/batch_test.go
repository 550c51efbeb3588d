package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

const batchPath = "/api/v1/transactions/batch"

// batchNode is a node on its own database and embedded broker (group sync:
// the batch's one durable wait is on the path), with a client for its
// broker to look at the log.
type batchNode struct {
	*node
	c     *apiClient
	db    string
	kafka *kgo.Client
}

func startBatchNode(t *testing.T) *batchNode {
	t.Helper()
	db := pgtest.NewDatabase(t)
	brokerAddr := freePort(t)
	addr := freePort(t)
	n := startNode(t, addr, "--database-url", db, "--data-dir", t.TempDir(), "--broker-listen", brokerAddr,
		"--partitions", "8", "--flush-interval", "20ms")
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return &batchNode{node: n, c: newClient(addr), db: db, kafka: kc}
}

// post sends a batch (a body: raw string or items to marshal) and returns
// the answer.
func (b *batchNode) post(t *testing.T, body any) *apiResponse {
	t.Helper()
	if items, ok := body.([]map[string]any); ok {
		body = map[string]any{"items": items}
	}
	r, err := b.c.do(context.Background(), "POST", batchPath, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// results posts items and returns the results, checking the envelope: 200,
// one result per item, in order.
func (b *batchNode) results(t *testing.T, items []map[string]any) []map[string]any {
	t.Helper()
	r := b.post(t, items)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	var env struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(r.raw, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Results) != len(items) {
		t.Fatalf("%d results for %d items: %s", len(env.Results), len(items), r.raw)
	}
	for i, res := range env.Results {
		if res["index"] != float64(i) {
			t.Fatalf("result %d has index %v", i, res["index"])
		}
	}
	return env.Results
}

func (b *batchNode) balance(t *testing.T, id string) string {
	t.Helper()
	r, err := b.c.do(context.Background(), "GET", "/api/v1/accounts/"+id+"/balance", nil, nil)
	if err != nil || r.status != 200 {
		t.Fatalf("balance of %s: %v %+v", id, err, r)
	}
	return r.str("current_balance")
}

// balanceEventually waits for a balance that lands after the answer (a
// refund), then compares.
func (b *batchNode) balanceEventually(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := b.balance(t, id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance of %s is %s, want %s", id, got, want)
		}
		// A refund lands after the answer, and the public API offers
		// nothing to wait on: poll the balance, bounded by the deadline.
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *batchNode) endOffsets(t *testing.T) map[int32]int64 {
	t.Helper()
	ends, err := kafkalog.EndOffsets(context.Background(), b.kafka)
	if err != nil {
		t.Fatal(err)
	}
	return ends
}

func creditItem(typ, account, amount string, extra ...any) map[string]any {
	m := map[string]any{"type": typ, "account_id": account, "amount": amount, "currency": "USD"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func transferItem(src, dst, amount string, extra ...any) map[string]any {
	m := map[string]any{"type": "transfer", "source_account_id": src, "destination_account_id": dst, "amount": amount, "currency": "USD"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

// wantResult checks one result's status and, for a refusal, its code.
func wantResult(t *testing.T, i int, res map[string]any, status int, code string) {
	t.Helper()
	if res["status"] != float64(status) {
		t.Fatalf("result %d: %v, want status %d %s", i, res, status, code)
	}
	e, _ := res["error"].(map[string]any)
	switch {
	case code == "" && e != nil:
		t.Fatalf("result %d: unexpected error %v", i, e)
	case code == "" && (res["transaction_id"] == nil || res["type"] == nil):
		t.Fatalf("result %d lacks the single endpoint's fields: %v", i, res)
	case code != "" && (e == nil || e["code"] != code || e["message"] == ""):
		t.Fatalf("result %d: %v, want %s", i, res, code)
	}
}

// TestBatchEndToEnd runs POST /transactions/batch against a real node:
// refused envelopes append nothing, malformed items fail alone, mixed
// outcomes come back in order with the right balances, retries replay
// (items, whole batches, across the single endpoints), and a batch of
// 1,000 transfers completes with a clean audit.
func TestBatchEndToEnd(t *testing.T) {
	b := startBatchNode(t)
	ctx := context.Background()
	a, bb, empty := b.c.openAccount(t, "batch-a"), b.c.openAccount(t, "batch-b"), b.c.openAccount(t, "batch-empty")
	r, err := b.c.do(ctx, "POST", "/api/v1/accounts", map[string]any{"customer_id": "c-eur", "account_type": "checking", "currency": "EUR"}, nil)
	if err != nil || r.status != 201 {
		t.Fatalf("open EUR account: %v %+v", err, r)
	}
	eur := r.str("account_id")
	ghost := uuid.NewString()
	for i, res := range b.results(t, []map[string]any{creditItem("credit", a, "100.00"), creditItem("credit", bb, "100.00")}) {
		wantResult(t, i, res, 201, "")
	}

	t.Run("refused envelopes append nothing", func(t *testing.T) {
		ok := `{"type":"credit","account_id":"` + a + `","amount":"1","currency":"USD"}`
		many := strings.TrimSuffix(strings.Repeat(ok+",", 1001), ",")
		before := b.endOffsets(t)
		for _, tc := range []struct {
			name, body string
			code       string
		}{
			{"not JSON", `{"items":[` + ok, "MALFORMED_REQUEST"},
			{"not an object", `[` + ok + `]`, "MALFORMED_REQUEST"},
			{"items missing", `{}`, "MISSING_FIELD"},
			{"items null", `{"items":null}`, "MISSING_FIELD"},
			{"items not an array", `{"items":` + ok + `}`, "MALFORMED_REQUEST"},
			{"items empty", `{"items":[]}`, "INVALID_FIELD"},
			{"1001 items", `{"items":[` + many + `]}`, "INVALID_FIELD"},
			{"unknown top-level field", `{"items":[` + ok + `],"atomic":true}`, "MALFORMED_REQUEST"},
			{"trailing data", `{"items":[` + ok + `]}[]`, "MALFORMED_REQUEST"},
		} {
			r := b.post(t, tc.body)
			if r.status != 400 || r.errCode() != tc.code {
				t.Fatalf("%s: %d %s, want 400 %s", tc.name, r.status, r.raw, tc.code)
			}
		}
		after := b.endOffsets(t)
		for p, end := range after {
			if before[p] != end {
				t.Fatalf("a refused batch appended to partition %d: end %d → %d", p, before[p], end)
			}
		}
		if got := b.balance(t, a); got != "100.00" {
			t.Fatalf("balance after refused batches: %s", got)
		}
	})

	t.Run("malformed items fail alone", func(t *testing.T) {
		items := []map[string]any{
			creditItem("credit", a, "1.00"),
			creditItem("refund", a, "1.00"),
			{"account_id": a, "amount": "1.00", "currency": "USD"},
			creditItem("credit", a, "1.00", "memo", "x"),
			creditItem("credit", a, "1.00", "destination_account_id", bb),
			{"type": "debit", "account_id": 7, "amount": "1.00", "currency": "USD"},
			creditItem("credit", a, "0"),
			creditItem("debit", a, "1.001"),
			creditItem("credit", "not-a-uuid", "1.00"),
			transferItem(a, a, "1.00"),
			creditItem("credit", a, "1.00", "idempotency_key", "has space"),
			creditItem("credit", a, "1.00", "description", strings.Repeat("x", 1000)),
			creditItem("credit", a, "1.00", "reference_id", strings.Repeat("r", 200)),
			creditItem("debit", bb, "1.00"),
		}
		want := []struct {
			status int
			code   string
		}{
			{201, ""}, {400, "INVALID_FIELD"}, {400, "MISSING_FIELD"}, {400, "MALFORMED_REQUEST"}, {400, "MALFORMED_REQUEST"},
			{400, "MALFORMED_REQUEST"}, {400, "INVALID_AMOUNT"}, {400, "INVALID_AMOUNT"}, {400, "INVALID_FIELD"},
			{422, "SAME_ACCOUNT"}, {400, "INVALID_FIELD"}, {400, "INVALID_FIELD"}, {400, "INVALID_FIELD"}, {201, ""},
		}
		for i, res := range b.results(t, items) {
			wantResult(t, i, res, want[i].status, want[i].code)
		}
		if ga, gb := b.balance(t, a), b.balance(t, bb); ga != "101.00" || gb != "99.00" {
			t.Fatalf("balances %s, %s; want 101.00, 99.00", ga, gb)
		}
	})

	t.Run("mixed outcomes", func(t *testing.T) {
		items := []map[string]any{
			creditItem("credit", a, "10.00"),
			creditItem("debit", bb, "5.00"),
			transferItem(a, bb, "20.00"),
			creditItem("debit", empty, "1.00"),
			transferItem(a, ghost, "3.00"),
			{"type": "credit", "account_id": a, "amount": "1.00", "currency": "EUR"},
			transferItem(a, eur, "4.00"),
			creditItem("credit", ghost, "1.00"),
			transferItem(empty, a, "1.00"),
		}
		want := []struct {
			status int
			code   string
		}{
			{201, ""}, {201, ""}, {201, ""}, {422, "INSUFFICIENT_FUNDS"}, {404, "ACCOUNT_NOT_FOUND"},
			{422, "CURRENCY_MISMATCH"}, {422, "CURRENCY_MISMATCH"}, {404, "ACCOUNT_NOT_FOUND"}, {422, "INSUFFICIENT_FUNDS"},
		}
		res := b.results(t, items)
		for i := range res {
			wantResult(t, i, res[i], want[i].status, want[i].code)
		}
		if res[0]["current_balance"] == nil || res[2]["source_account_id"] != a || res[2]["destination_account_id"] != bb {
			t.Fatalf("success bodies: %v, %v", res[0], res[2])
		}
		if msg := res[4]["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "refunded") {
			t.Fatalf("refused transfer's message %q does not say it was refunded", msg)
		}
		// 101 + 10 − 20, the refunds of 3 and 4 back on a.
		b.balanceEventually(t, a, "91.00")
		b.balanceEventually(t, bb, "114.00")
		b.balanceEventually(t, empty, "0.00")
		b.balanceEventually(t, eur, "0.00")
	})

	t.Run("idempotent retries", func(t *testing.T) {
		first := []map[string]any{
			creditItem("credit", a, "1.00", "idempotency_key", "retry-1"),
			transferItem(a, bb, "2.00", "idempotency_key", "retry-2"),
			creditItem("debit", bb, "1.00", "reference_id", "retry-3"),
			creditItem("debit", empty, "1.00", "idempotency_key", "retry-4"),
		}
		orig := b.results(t, first)
		for i, st := range []int{201, 201, 201, 422} {
			if orig[i]["status"] != float64(st) || orig[i]["replayed"] != nil {
				t.Fatalf("first batch result %d: %v", i, orig[i])
			}
		}
		ga, gb := b.balance(t, a), b.balance(t, bb)
		if ga != "90.00" || gb != "115.00" {
			t.Fatalf("balances after the first batch: %s, %s", ga, gb)
		}

		// One item again in a later batch, beside a new one.
		res := b.results(t, []map[string]any{first[0], creditItem("credit", a, "3.00", "idempotency_key", "retry-5")})
		if res[0]["status"] != float64(201) || res[0]["replayed"] != true || res[0]["transaction_id"] != orig[0]["transaction_id"] ||
			res[1]["status"] != float64(201) || res[1]["replayed"] != nil {
			t.Fatalf("retried item: %v, %v (original %v)", res[0], res[1], orig[0])
		}
		retry5 := res[1]["transaction_id"]
		// The whole batch again: every item replayed, the transfer
		// answered as the first time (by its re-sent credit leg), nothing
		// applied twice.
		res = b.results(t, first)
		for i := range res {
			if res[i]["replayed"] != true || res[i]["status"] != orig[i]["status"] {
				t.Fatalf("replayed result %d: %v, original %v", i, res[i], orig[i])
			}
		}
		for i := range 3 {
			if res[i]["transaction_id"] != orig[i]["transaction_id"] {
				t.Fatalf("replayed result %d: %v, original %v", i, res[i], orig[i])
			}
		}
		for k, v := range orig[1] {
			if k != "replayed" && res[1][k] != v {
				t.Fatalf("replayed transfer %v differs from the first answer %v at %q", res[1], orig[1], k)
			}
		}
		if res[1]["source_account_id"] != a {
			t.Fatalf("replayed transfer: %v", res[1])
		}
		if res[3]["error"].(map[string]any)["code"] != "INSUFFICIENT_FUNDS" {
			t.Fatalf("replayed refusal: %v", res[3])
		}
		// The same key with another request.
		res = b.results(t, []map[string]any{creditItem("credit", a, "5.00", "idempotency_key", "retry-1")})
		wantResult(t, 0, res[0], 409, "IDEMPOTENCY_KEY_REUSED")
		if ga, gb := b.balance(t, a), b.balance(t, bb); ga != "93.00" || gb != "115.00" {
			t.Fatalf("balances after the retries: %s, %s; want 93.00, 115.00", ga, gb)
		}

		// A batch item and a single request with the same key and body are
		// one request, either way round.
		single, err := b.c.do(ctx, "POST", "/api/v1/transactions/credit",
			map[string]any{"account_id": a, "amount": "3.00", "currency": "USD"}, map[string]string{"Idempotency-Key": "retry-5"})
		if err != nil || single.status != 201 || !single.replayed || single.str("transaction_id") != retry5 {
			t.Fatalf("single retry of a batch item: %v %+v", err, single)
		}
		single, err = b.c.do(ctx, "POST", "/api/v1/transactions/transfer",
			map[string]any{"source_account_id": a, "destination_account_id": bb, "amount": "1.00", "currency": "USD"}, map[string]string{"Idempotency-Key": "retry-6"})
		if err != nil || single.status != 201 || single.replayed {
			t.Fatalf("single transfer: %v %+v", err, single)
		}
		res = b.results(t, []map[string]any{transferItem(a, bb, "1.00", "idempotency_key", "retry-6")})
		if res[0]["status"] != float64(201) || res[0]["replayed"] != true || res[0]["transaction_id"] != single.str("transaction_id") {
			t.Fatalf("batch retry of a single transfer: %v (single %s)", res[0], single.raw)
		}
		if ga, gb := b.balance(t, a), b.balance(t, bb); ga != "92.00" || gb != "116.00" {
			t.Fatalf("balances after the cross retries: %s, %s; want 92.00, 116.00", ga, gb)
		}
	})

	t.Run("1000 transfers", func(t *testing.T) {
		const accounts = 40
		ids := make([]string, accounts)
		funding := make([]map[string]any, accounts)
		for i := range ids {
			ids[i] = b.c.openAccount(t, fmt.Sprintf("batch-many-%d", i))
			funding[i] = creditItem("credit", ids[i], "1000.00")
		}
		for i, res := range b.results(t, funding) {
			wantResult(t, i, res, 201, "")
		}
		rng := rand.New(rand.NewPCG(1, 2))
		items := make([]map[string]any, 1000)
		for i := range items {
			s, d := rng.IntN(accounts), rng.IntN(accounts-1)
			if d >= s {
				d++
			}
			items[i] = transferItem(ids[s], ids[d], fmt.Sprintf("%d.%02d", rng.IntN(5), 1+rng.IntN(99)))
		}
		for i, res := range b.results(t, items) {
			wantResult(t, i, res, 201, "")
		}
		var total int64
		for _, id := range ids {
			var units, cents int64
			if _, err := fmt.Sscanf(b.balance(t, id), "%d.%d", &units, &cents); err != nil {
				t.Fatal(err)
			}
			total += units*100 + cents
		}
		if total != accounts*100_000 {
			t.Fatalf("the accounts hold %d cents, want %d", total, accounts*100_000)
		}
	})

	b.stop()
	if code, out := auditProcess(t, b.db); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}
