package bench

import (
	"strings"
	"testing"
)

func drawOps(t *testing.T, name string, seed uint64, worker, n int) []op {
	t.Helper()
	wl, err := newWorkload(name, 1000, 2)
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
	for _, name := range []string{WorkloadCreditDebit, WorkloadMixed} {
		a := drawOps(t, name, 42, 3, 1000)
		b := drawOps(t, name, 42, 3, 1000)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: op %d differs with the same seed: %+v vs %+v", name, i, a[i], b[i])
			}
		}
		same := func(x, y []op) bool {
			for i := range x {
				if x[i] != y[i] {
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
		if got[i] != want[i] {
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
	if mixedBalancePct+mixedCreditPct+mixedDebitPct+mixedOpenPct != 100 {
		t.Fatal("mixed proportions do not sum to 100%")
	}
	const n = 100_000
	var kinds [opKindCount]int
	for _, o := range drawOps(t, WorkloadMixed, 9, 1, n) {
		kinds[o.kind]++
		switch o.kind {
		case opCredit, opDebit:
			if o.amount < 100 || o.amount > 1000 {
				t.Fatalf("amount %d outside 1.00..10.00", o.amount)
			}
		default:
			if o.amount != 0 {
				t.Fatalf("%s carries amount %d", o.kind, o.amount)
			}
		}
	}
	for k, pct := range map[opKind]int{opBalance: mixedBalancePct, opCredit: mixedCreditPct, opDebit: mixedDebitPct, opOpen: mixedOpenPct} {
		want := n * pct / 100
		if d := kinds[k] - want; d < -n/100 || d > n/100 {
			t.Errorf("%s: %d of %d, want about %d", k, kinds[k], n, want)
		}
	}
}

func TestAmountsFollowExponent(t *testing.T) {
	for _, c := range []struct{ exp, lo, hi int64 }{{0, 1, 10}, {2, 100, 1000}, {3, 1000, 10000}} {
		wl, err := newWorkload(WorkloadCreditDebit, 5, int(c.exp))
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
	for _, name := range []string{WorkloadCreditDebit, WorkloadMixed} {
		wl, _ := newWorkload(name, 1, 2)
		if !wl.expectedRefusal(opDebit, "INSUFFICIENT_FUNDS") {
			t.Errorf("%s: a refused debit should be expected", name)
		}
		for _, c := range []struct {
			k    opKind
			code string
		}{{opCredit, "INSUFFICIENT_FUNDS"}, {opDebit, "UNAVAILABLE"}, {opDebit, "ACCOUNT_NOT_FOUND"}, {opDebit, codeTransport}, {opBalance, "HTTP_202"}} {
			if wl.expectedRefusal(c.k, c.code) {
				t.Errorf("%s: %s %s counted as expected", name, c.k, c.code)
			}
		}
	}
}

func TestTransferWorkloadsRefuse(t *testing.T) {
	for _, name := range []string{WorkloadUniform, WorkloadSamePartition, WorkloadCrossPartition, WorkloadHot} {
		_, err := newWorkload(name, 10, 2)
		want := "workload " + name + " needs transfers (issue 3)"
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v, want %q", name, err, want)
		}
	}
	if _, err := newWorkload("nope", 10, 2); err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Errorf("unknown workload: err = %v", err)
	}
	for _, w := range Workloads() {
		_, err := newWorkload(w.Name, 10, 2)
		if (err == nil) != w.Available {
			t.Errorf("%s: Available = %v but newWorkload err = %v", w.Name, w.Available, err)
		}
	}
}

var goldenCreditDebit = []op{
	{kind: opDebit, account: 89, amount: 744},
	{kind: opCredit, account: 701, amount: 600},
	{kind: opCredit, account: 590, amount: 375},
	{kind: opCredit, account: 499, amount: 167},
}
