package bench

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAppendBatchBody(t *testing.T) {
	accounts := []string{"0b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d", "1b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d", "2b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d"}
	items := []batchItem{{0, 1}, {2, 0}}
	got := appendBatchBody(nil, items, accounts, 1, 2, "USD", func(i int) []byte { return []byte("k-" + string(rune('a'+i))) })
	want := `{"items":[` +
		`{"type":"transfer","source_account_id":"` + accounts[0] + `","destination_account_id":"` + accounts[1] + `","amount":"0.01","currency":"USD","idempotency_key":"k-a"},` +
		`{"type":"transfer","source_account_id":"` + accounts[2] + `","destination_account_id":"` + accounts[0] + `","amount":"0.01","currency":"USD","idempotency_key":"k-b"}]}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("not JSON")
	}
	if got := appendBatchBody(nil, nil, accounts, 1, 2, "USD", nil); string(got) != `{"items":[]}` {
		t.Fatalf("empty batch: %s", got)
	}
}

func TestParseBatchAnswer(t *testing.T) {
	for _, c := range []struct {
		name  string
		body  string
		n     int
		ok    int
		codes []string
	}{
		{"all done", `{"results":[{"index":0,"status":201,"transaction_id":"a"},{"index":1,"status":201}]}`, 2, 2, nil},
		{"a refusal by its code", `{"results":[{"index":0,"status":201},{"index":1,"status":422,"error":{"code":"INSUFFICIENT_FUNDS","message":"m"}}]}`, 2, 1, []string{"INSUFFICIENT_FUNDS"}},
		{"pending", `{"results":[{"index":0,"status":202,"transaction_id":"a","status_text":"pending"}]}`, 1, 0, []string{"HTTP_202"}},
		{"error without a code", `{"results":[{"index":0,"status":500,"error":{"message":"boom"}}]}`, 1, 0, []string{"HTTP_500"}},
		{"error with a bad code", `{"results":[{"index":0,"status":400,"error":{"code":"not a code"}}]}`, 1, 0, []string{"HTTP_400"}},
		{"too few results", `{"results":[{"index":0,"status":201}]}`, 3, 0, []string{codeBadBatchAnswer, codeBadBatchAnswer, codeBadBatchAnswer}},
		{"out of order", `{"results":[{"index":1,"status":201},{"index":0,"status":201}]}`, 2, 0, []string{codeBadBatchAnswer, codeBadBatchAnswer}},
		{"not JSON", `<html>`, 1, 0, []string{codeBadBatchAnswer}},
		{"no results member", `{"items":[]}`, 1, 0, []string{codeBadBatchAnswer}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, codes := parseBatchAnswer([]byte(c.body), c.n, nil)
			if ok != c.ok || !slices.Equal(codes, c.codes) {
				t.Fatalf("got %d, %v; want %d, %v", ok, codes, c.ok, c.codes)
			}
		})
	}
}

func TestBatchWorkloadDraws(t *testing.T) {
	wl := batch{accounts: 5, size: 50}
	r := newRand(1, 0)
	var o op
	for range 20 {
		wl.next(r, &o)
		if o.kind != opBatch || len(o.items) != 50 || o.amount != 1 {
			t.Fatalf("op %+v", o)
		}
		for _, it := range o.items {
			if it.source == it.destination || it.source < 0 || it.source >= 5 || it.destination < 0 || it.destination >= 5 {
				t.Fatalf("item %+v", it)
			}
		}
	}
}

// The batch workload against a server that answers the batch shape:
// every item arrives well formed with a key of its own, items count as
// transfers, refused items as errors by their code, latency once per
// request.
func TestBatchWorkloadAgainstAFakeNode(t *testing.T) {
	f := newFakeNode(t)
	f.refuse = func(item int) string {
		if item%10 == 3 {
			return "ACCOUNT_CLOSED"
		}
		return ""
	}
	res, err := Run(context.Background(), Config{
		Target: f.URL, Workload: WorkloadBatch, BatchSize: 20, Accounts: 10, Partitions: 4, Concurrency: 2,
		Warmup: 200 * time.Millisecond, Duration: time.Second, RunID: "batchtest",
	})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.problems) > 0 {
		t.Fatalf("the server saw: %v", f.problems)
	}
	if res.BatchRequests == 0 || res.Ops == 0 {
		t.Fatalf("result %+v", res)
	}
	// Every measured request was answered 200: each item is a transfer
	// or an error, and one item in ten is refused.
	if got := res.Ops + res.ErrorsTotal; got != res.BatchRequests*20 {
		t.Errorf("ops %d + errors %d != %d requests × 20", res.Ops, res.ErrorsTotal, res.BatchRequests)
	}
	if len(res.Errors) != 1 || res.Errors["ACCOUNT_CLOSED"] != res.ErrorsTotal || res.ErrorsTotal != res.BatchRequests*2 {
		t.Errorf("errors %v (total %d) for %d requests", res.Errors, res.ErrorsTotal, res.BatchRequests)
	}
	if res.Latency.Count != res.BatchRequests {
		t.Errorf("latency counted %d, want one per request (%d)", res.Latency.Count, res.BatchRequests)
	}
	if res.OpsByKind["transfer"] != res.Ops || res.OpsUnit != "transfers" || res.BatchSize != 20 {
		t.Errorf("ops by kind %v, unit %q, batch size %d", res.OpsByKind, res.OpsUnit, res.BatchSize)
	}
	var sum int64
	for _, s := range res.Series {
		sum += s.Ops
	}
	if sum != res.Ops {
		t.Errorf("series ops %d, total %d", sum, res.Ops)
	}
	if !strings.HasPrefix(res.RunID, "batchtest") {
		t.Errorf("run ID %q", res.RunID)
	}
}
