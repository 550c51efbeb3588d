package bench

import (
	"slices"
	"strings"
	"testing"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// testPool is 1000 accounts over 64 partitions.
var testPool = newAccountPool("test", 1000, 64)

func drawOps(t *testing.T, name string, seed uint64, worker, n int) []op {
	t.Helper()
	wl, err := newWorkload(name, testPool, 2, BatchSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(seed, worker)
	out := make([]op, n)
	for i := range out {
		wl.next(r, &out[i])
	}
	return out
}

func TestWorkloadReproducible(t *testing.T) {
	for _, w := range Workloads() {
		name := w.Name
		a := drawOps(t, name, 42, 3, 1000)
		b := drawOps(t, name, 42, 3, 1000)
		for i := range a {
			if !opEqual(a[i], b[i]) {
				t.Fatalf("%s: op %d differs with the same seed: %+v vs %+v", name, i, a[i], b[i])
			}
		}
		same := func(x, y []op) bool {
			for i := range x {
				if !opEqual(x[i], y[i]) {
					return false
				}
			}
			return true
		}
		if same(a, drawOps(t, name, 43, 3, 1000)) {
			t.Errorf("%s: seeds 42 and 43 give the same ops", name)
		}
		if same(a, drawOps(t, name, 42, 4, 1000)) {
			t.Errorf("%s: workers 3 and 4 give the same ops", name)
		}
	}
}

// The first ops of seed 1, worker 0 are pinned so that a change to the
// choice (and so to every earlier result's meaning) is deliberate.
func TestCreditDebitGolden(t *testing.T) {
	got := drawOps(t, WorkloadCreditDebit, 1, 0, 4)
	want := goldenCreditDebit
	for i := range want {
		if !opEqual(got[i], want[i]) {
			t.Errorf("op %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCreditDebitChoice(t *testing.T) {
	const n = 100_000
	ops := drawOps(t, WorkloadCreditDebit, 7, 0, n)
	var kinds [opKindCount]int
	seen := map[int]bool{}
	for _, o := range ops {
		kinds[o.kind]++
		seen[o.account] = true
		if o.account < 0 || o.account >= 1000 {
			t.Fatalf("account %d out of range", o.account)
		}
		if o.amount < 100 || o.amount > 1000 {
			t.Fatalf("amount %d outside 1.00..10.00", o.amount)
		}
	}
	if kinds[opBalance] != 0 || kinds[opOpen] != 0 {
		t.Errorf("credit-debit chose other kinds: %v", kinds)
	}
	// Deterministic for this seed; the bounds only document "about half".
	if kinds[opCredit] < 49_000 || kinds[opCredit] > 51_000 {
		t.Errorf("credits %d of %d, want about half", kinds[opCredit], n)
	}
	if len(seen) != 1000 {
		t.Errorf("touched %d of 1000 accounts", len(seen))
	}
}

func TestMixedChoice(t *testing.T) {
	if mixedBalancePct+mixedCreditPct+mixedDebitPct+mixedTransferPct+mixedOpenPct != 100 {
		t.Fatal("mixed proportions do not sum to 100%")
	}
	const n = 100_000
	var kinds [opKindCount]int
	for _, o := range drawOps(t, WorkloadMixed, 9, 1, n) {
		kinds[o.kind]++
		switch o.kind {
		case opCredit, opDebit, opTransfer:
			if o.amount < 100 || o.amount > 1000 {
				t.Fatalf("amount %d outside 1.00..10.00", o.amount)
			}
		default:
			if o.amount != 0 {
				t.Fatalf("%s carries amount %d", o.kind, o.amount)
			}
		}
		if o.kind == opTransfer && (o.counterparty == o.account || o.counterparty < 0 || o.counterparty >= 1000) {
			t.Fatalf("transfer %d -> %d", o.account, o.counterparty)
		}
	}
	for k, pct := range map[opKind]int{opBalance: mixedBalancePct, opCredit: mixedCreditPct, opDebit: mixedDebitPct, opTransfer: mixedTransferPct, opOpen: mixedOpenPct} {
		want := n * pct / 100
		if d := kinds[k] - want; d < -n/100 || d > n/100 {
			t.Errorf("%s: %d of %d, want about %d", k, kinds[k], n, want)
		}
	}
}

// checkTransfers draws n ops of a transfer workload and checks each with
// ok; it returns how often each account was a source and a destination.
func checkTransfers(t *testing.T, name string, n int, ok func(o op) bool) (src, dst []int) {
	t.Helper()
	src, dst = make([]int, testPool.len()), make([]int, testPool.len())
	for _, o := range drawOps(t, name, 11, 2, n) {
		if o.kind != opTransfer || o.account == o.counterparty || o.amount < 100 || o.amount > 1000 ||
			o.account < 0 || o.account >= testPool.len() || o.counterparty < 0 || o.counterparty >= testPool.len() || !ok(o) {
			t.Fatalf("%s: bad op %+v", name, o)
		}
		src[o.account]++
		dst[o.counterparty]++
	}
	return src, dst
}

func TestUniform(t *testing.T) {
	src, dst := checkTransfers(t, WorkloadUniform, 200_000, func(op) bool { return true })
	for i := range src {
		// 200 expected each; the bounds only document "uniform".
		if src[i] < 120 || src[i] > 280 || dst[i] < 120 || dst[i] > 280 {
			t.Fatalf("account %d: source %d, destination %d times of 200 expected", i, src[i], dst[i])
		}
	}
}

func TestSamePartition(t *testing.T) {
	p := testPool
	src, dst := checkTransfers(t, WorkloadSamePartition, 200_000, func(o op) bool {
		return p.partOf[o.account] == p.partOf[o.counterparty]
	})
	for i := range src {
		shares := p.partitionSize(p.partOf[i]) >= 2
		if shares != (src[i] > 0) || shares != (dst[i] > 0) {
			t.Errorf("account %d (partition of %d): source %d, destination %d times", i, p.partitionSize(p.partOf[i]), src[i], dst[i])
		}
	}
}

func TestCrossPartition(t *testing.T) {
	p := testPool
	src, dst := checkTransfers(t, WorkloadCrossPartition, 200_000, func(o op) bool {
		return p.partOf[o.account] != p.partOf[o.counterparty]
	})
	for i := range src {
		if src[i] == 0 || dst[i] == 0 {
			t.Errorf("account %d: source %d, destination %d times", i, src[i], dst[i])
		}
	}
}

func TestHot(t *testing.T) {
	_, dst := checkTransfers(t, WorkloadHot, 100_000, func(o op) bool { return o.account == hotAccount })
	if dst[hotAccount] != 0 {
		t.Errorf("the hot account received %d transfers", dst[hotAccount])
	}
	wl, _ := newWorkload(WorkloadHot, testPool, 2, BatchSizeDefault)
	if got := wl.funding(hotAccount, 100_000); got != ledger.AmountMax {
		t.Errorf("hot account funding = %d, want ledger.AmountMax", got)
	}
	if got := wl.funding(hotAccount, 0); got != 0 {
		t.Errorf("hot account funding with funding off = %d, want 0", got)
	}
	if got := wl.funding(5, 100_000); got != 100_000 {
		t.Errorf("payee funding = %d, want 100000", got)
	}
}

func TestAccountPool(t *testing.T) {
	p := newAccountPool("run-1", 500, 16)
	slots := ledger.NewSlotMap(16)
	seen := map[int32]bool{}
	for q := range int32(16) {
		for _, i := range p.byPartition[p.start[q]:p.start[q+1]] {
			if seen[i] {
				t.Fatalf("account %d listed twice", i)
			}
			seen[i] = true
			id := uuid.MustParse(p.ids[i])
			if got := slots.PartitionOfAccount(id); got != q || p.partOf[i] != q {
				t.Fatalf("account %d listed in partition %d, slot map says %d, partOf %d", i, q, got, p.partOf[i])
			}
			if id != accountID("run-1", int(i)) {
				t.Fatalf("account %d: ID %s is not accountID", i, id)
			}
		}
	}
	if len(seen) != 500 {
		t.Fatalf("%d of 500 accounts grouped", len(seen))
	}
	if accountID("run-1", 3) == accountID("run-2", 3) || accountID("run-1", 3) == accountID("run-1", 4) {
		t.Error("account IDs collide across runs or indexes")
	}
}

func TestCheckPairs(t *testing.T) {
	for _, c := range []struct {
		workload   string
		accounts   int
		partitions int32
		want       string
	}{
		{WorkloadUniform, 1, 64, "at least 2 accounts"},
		{WorkloadHot, 1, 64, "at least 2 accounts"},
		{WorkloadMixed, 1, 64, "at least 2 accounts"},
		{WorkloadCreditDebit, 1, 64, ""},
		{WorkloadUniform, 2, 64, ""},
		{WorkloadSamePartition, 2, PartitionsMax, "two accounts in one partition"},
		{WorkloadSamePartition, 2, 1, ""},
		{WorkloadCrossPartition, 50, 1, "accounts in two partitions"},
		{WorkloadCrossPartition, 50, 64, ""},
	} {
		err := newAccountPool("p", c.accounts, c.partitions).checkPairs(c.workload, c.partitions)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s over %d accounts, %d partitions: err = %v, want %q", c.workload, c.accounts, c.partitions, err, c.want)
		}
	}
}

func TestAmountsFollowExponent(t *testing.T) {
	for _, c := range []struct{ exp, lo, hi int64 }{{0, 1, 10}, {2, 100, 1000}, {3, 1000, 10000}} {
		wl, err := newWorkload(WorkloadCreditDebit, newAccountPool("e", 5, 4), int(c.exp), BatchSizeDefault)
		if err != nil {
			t.Fatal(err)
		}
		r := newRand(1, 0)
		var o op
		for range 1000 {
			wl.next(r, &o)
			if o.amount < c.lo || o.amount > c.hi {
				t.Fatalf("exponent %d: amount %d outside [%d, %d]", c.exp, o.amount, c.lo, c.hi)
			}
		}
	}
}

func TestExpectedRefusal(t *testing.T) {
	type kc struct {
		k    opKind
		code string
	}
	// Exactly these are expected; every other kind and code is an error.
	expected := map[string][]kc{
		WorkloadCreditDebit:    {{opDebit, "INSUFFICIENT_FUNDS"}},
		WorkloadMixed:          {{opDebit, "INSUFFICIENT_FUNDS"}, {opTransfer, "INSUFFICIENT_FUNDS"}},
		WorkloadUniform:        {{opTransfer, "INSUFFICIENT_FUNDS"}},
		WorkloadSamePartition:  {{opTransfer, "INSUFFICIENT_FUNDS"}},
		WorkloadCrossPartition: {{opTransfer, "INSUFFICIENT_FUNDS"}},
		WorkloadHot:            nil, // the hot account cannot run dry
		WorkloadBatch:          nil, // every item not answered 201 is an error
		WorkloadRetry:          nil, // credits and their replays always succeed
		WorkloadReads:          nil, // a balance read of an opened account always succeeds
	}
	codes := []string{"INSUFFICIENT_FUNDS", "UNAVAILABLE", "ACCOUNT_NOT_FOUND", "SAME_ACCOUNT", codeTransport, "HTTP_202"}
	for _, w := range Workloads() {
		want, ok := expected[w.Name]
		if !ok {
			t.Errorf("%s: no expectation", w.Name)
		}
		wl, err := newWorkload(w.Name, testPool, 2, BatchSizeDefault)
		if err != nil {
			t.Fatal(err)
		}
		for k := range opKindCount {
			for _, code := range codes {
				exp := false
				for _, e := range want {
					exp = exp || e == kc{k, code}
				}
				if got := wl.expectedRefusal(k, code); got != exp {
					t.Errorf("%s: expectedRefusal(%s, %s) = %v, want %v", w.Name, k, code, got, exp)
				}
			}
		}
	}
	if _, err := newWorkload("nope", testPool, 2, BatchSizeDefault); err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Errorf("unknown workload: err = %v", err)
	}
}

var goldenCreditDebit = []op{
	{kind: opDebit, account: 89, amount: 744},
	{kind: opCredit, account: 701, amount: 600},
	{kind: opCredit, account: 590, amount: 375},
	{kind: opCredit, account: 499, amount: 167},
}

// opEqual compares two ops, a batch's items included.
func opEqual(a, b op) bool {
	return a.kind == b.kind && a.account == b.account && a.counterparty == b.counterparty &&
		a.amount == b.amount && slices.Equal(a.items, b.items)
}

// The retry workload sends each credit twice: the second is the first's
// request again.
func TestRetryWorkloadRepeats(t *testing.T) {
	wl, err := newWorkload(WorkloadRetry, testPool, 2, BatchSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(1, 0)
	var o op
	for i := range 20 {
		prev := o
		wl.next(r, &o)
		if o.kind != opCredit || o.amount <= 0 || o.retry != (i%2 == 1) {
			t.Fatalf("op %d: %+v", i, o)
		}
		if o.retry && (o.account != prev.account || o.amount != prev.amount) {
			t.Fatalf("op %d retries %+v as %+v", i, prev, o)
		}
	}
}
