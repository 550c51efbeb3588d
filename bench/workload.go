package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Workload names.
const (
	WorkloadCreditDebit    = "credit-debit"
	WorkloadMixed          = "mixed"
	WorkloadUniform        = "uniform"
	WorkloadSamePartition  = "same-partition"
	WorkloadCrossPartition = "cross-partition"
	WorkloadHot            = "hot"
)

// WorkloadInfo describes one workload for --help.
type WorkloadInfo struct {
	Name        string
	Description string
	// Available is false for workloads that need an API the node does not
	// have yet.
	Available bool
}

// Workloads lists every workload name, available or not.
func Workloads() []WorkloadInfo {
	return []WorkloadInfo{
		{WorkloadCreditDebit, "random account, 50/50 credit or debit of 1 to 10 currency units", true},
		{WorkloadMixed, "balance reads 50%, credits 23%, debits 23%, account opens 4%", true},
		{WorkloadUniform, "transfers between uniformly random accounts", false},
		{WorkloadSamePartition, "transfers within one partition", false},
		{WorkloadCrossPartition, "transfers across partitions", false},
		{WorkloadHot, "transfers concentrated on a few hot accounts", false},
	}
}

// opKind is what one operation does.
type opKind uint8

const (
	opCredit opKind = iota
	opDebit
	opBalance
	opOpen
	opKindCount
)

var opKindNames = [opKindCount]string{"credit", "debit", "balance", "open"}

func (k opKind) String() string { return opKindNames[k] }

// wantStatus is the one HTTP status that counts as success for the kind.
func (k opKind) wantStatus() int {
	if k == opBalance {
		return 200
	}
	return 201
}

// op is one operation chosen by a workload. account indexes the accounts
// opened at setup (unused for opOpen); amount is in minor units.
type op struct {
	kind    opKind
	account int
	amount  int64
}

// workload chooses operations. Implementations hold only immutable
// parameters: each worker passes its own generator, so one workload value
// serves every worker and a worker's sequence depends only on its seed.
type workload interface {
	next(r *rand.Rand, o *op)
	// expectedRefusal reports whether an error code answered to an
	// operation of kind k is a correct business answer under this
	// workload rather than a failure.
	expectedRefusal(k opKind, code string) bool
}

// newWorkload returns the named workload over accounts accounts of a
// currency with the given exponent.
func newWorkload(name string, accounts, exponent int) (workload, error) {
	unit := int64(1)
	for range exponent {
		unit *= 10
	}
	// Small amounts (1 to 10 units) keep a funded account's random walk far
	// from zero, so refusals stay rare and mean something.
	amounts := amountRange{min: unit, max: 10 * unit}
	switch name {
	case WorkloadCreditDebit:
		return creditDebit{accounts: accounts, amounts: amounts}, nil
	case WorkloadMixed:
		return mixed{accounts: accounts, amounts: amounts}, nil
	case WorkloadUniform, WorkloadSamePartition, WorkloadCrossPartition, WorkloadHot:
		return nil, fmt.Errorf("workload %s needs transfers (issue 3)", name)
	}
	names := make([]string, 0, 6)
	for _, w := range Workloads() {
		names = append(names, w.Name)
	}
	return nil, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(names, ", "))
}

type amountRange struct{ min, max int64 }

func (a amountRange) draw(r *rand.Rand) int64 { return a.min + r.Int64N(a.max-a.min+1) }

// creditDebit credits or debits (50/50) a uniformly random account.
type creditDebit struct {
	accounts int
	amounts  amountRange
}

func (w creditDebit) next(r *rand.Rand, o *op) {
	o.kind = opCredit
	if r.IntN(2) == 1 {
		o.kind = opDebit
	}
	o.account = r.IntN(w.accounts)
	o.amount = w.amounts.draw(r)
}

// A debit the balance does not cover is the ledger doing its job.
func (creditDebit) expectedRefusal(k opKind, code string) bool {
	return k == opDebit && code == "INSUFFICIENT_FUNDS"
}

// Proportions of the mixed workload, in percent: a retail ledger's API is
// read-heavy, deposits and withdrawals balance out, and a few customers
// open accounts.
const (
	mixedBalancePct = 50
	mixedCreditPct  = 23
	mixedDebitPct   = 23
	mixedOpenPct    = 4
)

// mixed is balance reads, credits, debits and account opens on uniformly
// random accounts. Opened accounts are not added to the pool: they start
// empty, and the pool is fixed at setup so that workers share nothing.
type mixed struct {
	accounts int
	amounts  amountRange
}

func (w mixed) next(r *rand.Rand, o *op) {
	p := r.IntN(100)
	o.account = r.IntN(w.accounts)
	o.amount = 0
	switch {
	case p < mixedBalancePct:
		o.kind = opBalance
	case p < mixedBalancePct+mixedCreditPct:
		o.kind = opCredit
		o.amount = w.amounts.draw(r)
	case p < mixedBalancePct+mixedCreditPct+mixedDebitPct:
		o.kind = opDebit
		o.amount = w.amounts.draw(r)
	default:
		o.kind = opOpen
	}
}

func (mixed) expectedRefusal(k opKind, code string) bool {
	return k == opDebit && code == "INSUFFICIENT_FUNDS"
}

// newRand returns worker w's generator for a seed.
func newRand(seed uint64, w int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(w)))
}
