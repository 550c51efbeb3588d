package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/bursar/bursar/ledger"
)

// Workload names.
const (
	WorkloadCreditDebit    = "credit-debit"
	WorkloadMixed          = "mixed"
	WorkloadUniform        = "uniform"
	WorkloadSamePartition  = "same-partition"
	WorkloadCrossPartition = "cross-partition"
	WorkloadHot            = "hot"
	WorkloadBatch          = "batch"
	WorkloadRetry          = "retry"
	WorkloadReads          = "reads"
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
		{WorkloadMixed, "a retail banking day: balance reads 44%, deposits 18%, withdrawals 18%, transfers 16%, account opens 4%", true},
		{WorkloadUniform, "transfers of 1 to 10 units between two uniformly random accounts", true},
		{WorkloadSamePartition, "transfers between two random accounts of the same partition (see --partitions)", true},
		{WorkloadCrossPartition, "transfers between two random accounts of different partitions (see --partitions)", true},
		{WorkloadHot, "payouts: one hot account (funded so it never runs dry) pays every transfer to a random account", true},
		{WorkloadRetry, "credits of 1 to 10 units to a random account, each sent twice under the same reference_id (its idempotency key): half the operations are retries, answered as replays", true},
		{WorkloadReads, "balance reads of a uniformly random account (with --consistency eventual, answered from Redis where the node has it)", true},
		{WorkloadBatch, "POST /api/v1/transactions/batch of --batch-size transfers of 0.01 between uniformly random distinct accounts; ops count items answered 201, latency is per request", true},
	}
}

// opKind is what one operation does.
type opKind uint8

const (
	opCredit opKind = iota
	opDebit
	opBalance
	opOpen
	opTransfer
	// opBatch is one batch request of transfers; its items are counted
	// as opTransfer.
	opBatch
	opKindCount
)

var opKindNames = [opKindCount]string{"credit", "debit", "balance", "open", "transfer", "batch"}

func (k opKind) String() string { return opKindNames[k] }

// wantStatus is the one HTTP status that counts as success for the kind:
// a transfer must be completed (201), not merely accepted (202).
func (k opKind) wantStatus() int {
	if k == opBalance || k == opBatch {
		return 200
	}
	return 201
}

// op is one operation chosen by a workload. account indexes the setup
// accounts (the source of a transfer; unused for opOpen), counterparty the
// destination of a transfer; amount is in minor units.
type op struct {
	kind         opKind
	account      int
	counterparty int
	amount       int64
	// retry: send the previous request again, byte for byte (the retry
	// workload).
	retry bool
	// items are a batch's transfers; the worker's op keeps the buffer
	// from one batch to the next.
	items []batchItem
}

// batchItem is one transfer of a batch: source and destination indexes.
type batchItem struct{ source, destination int }

// workload chooses operations. Implementations hold only immutable
// parameters: each worker passes its own generator, so one workload value
// serves every worker and a worker's sequence depends only on its seed.
type workload interface {
	next(r *rand.Rand, o *op)
	// expectedRefusal reports whether an error code answered to an
	// operation of kind k is a correct business answer under this
	// workload rather than a failure.
	expectedRefusal(k opKind, code string) bool
	// funding returns what setup credits to account i, given the
	// configured per-account funding (0: none).
	funding(i int, base int64) int64
}

// insufficient is the code of the one refusal a workload may expect.
var insufficient = ledger.CodeInsufficientFunds.String()

// newWorkload returns the named workload over the accounts of pool, in a
// currency with the given exponent; batchSize is the batch workload's
// items per request.
func newWorkload(name string, pool *accountPool, exponent, batchSize int) (workload, error) {
	unit := int64(1)
	for range exponent {
		unit *= 10
	}
	// Small amounts (1 to 10 units) keep a funded account's random walk far
	// from zero, so refusals stay rare and mean something.
	amounts := amountRange{min: unit, max: 10 * unit}
	n := pool.len()
	switch name {
	case WorkloadCreditDebit:
		return creditDebit{accounts: n, amounts: amounts}, nil
	case WorkloadMixed:
		return mixed{accounts: n, amounts: amounts}, nil
	case WorkloadUniform:
		return uniform{accounts: n, amounts: amounts}, nil
	case WorkloadSamePartition:
		return samePartition{pool: pool, sources: pool.samePartitionSources(), amounts: amounts}, nil
	case WorkloadCrossPartition:
		return crossPartition{pool: pool, amounts: amounts}, nil
	case WorkloadHot:
		return hot{accounts: n, amounts: amounts}, nil
	case WorkloadBatch:
		return batch{accounts: n, size: batchSize}, nil
	case WorkloadRetry:
		return retrying{accounts: n, amounts: amounts}, nil
	case WorkloadReads:
		return reads{accounts: n}, nil
	}
	names := make([]string, 0, 6)
	for _, w := range Workloads() {
		names = append(names, w.Name)
	}
	return nil, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(names, ", "))
}

type amountRange struct{ min, max int64 }

func (a amountRange) draw(r *rand.Rand) int64 { return a.min + r.Int64N(a.max-a.min+1) }

// evenFunding funds every account alike.
type evenFunding struct{}

func (evenFunding) funding(_ int, base int64) int64 { return base }

// creditDebit credits or debits (50/50) a uniformly random account.
type creditDebit struct {
	evenFunding
	accounts int
	amounts  amountRange
}

func (w creditDebit) next(r *rand.Rand, o *op) {
	o.kind = opCredit
	if r.IntN(2) == 1 {
		o.kind = opDebit
	}
	o.account = r.IntN(w.accounts)
	o.counterparty = 0
	o.amount = w.amounts.draw(r)
}

// A debit the balance does not cover is the ledger doing its job.
func (creditDebit) expectedRefusal(k opKind, code string) bool {
	return k == opDebit && code == insufficient
}

// Proportions of the mixed workload, in percent: a retail bank's day. Most
// calls are customers checking a balance in the app; deposits (salaries,
// cash) and withdrawals (cards, ATMs) balance out so that accounts neither
// drain nor pile up; person-to-person transfers are a large minority; a
// few customers open accounts.
const (
	mixedBalancePct  = 44
	mixedCreditPct   = 18
	mixedDebitPct    = 18
	mixedTransferPct = 16
	mixedOpenPct     = 4
)

// mixed is balance reads, deposits, withdrawals, transfers and account
// opens on uniformly random accounts. Opened accounts are not added to the
// pool: they start empty, and the pool is fixed at setup so that workers
// share nothing.
type mixed struct {
	evenFunding
	accounts int
	amounts  amountRange
}

func (w mixed) next(r *rand.Rand, o *op) {
	p := r.IntN(100)
	o.account = r.IntN(w.accounts)
	o.counterparty = 0
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
	case p < mixedBalancePct+mixedCreditPct+mixedDebitPct+mixedTransferPct:
		o.kind = opTransfer
		o.counterparty = otherThan(r, w.accounts, o.account)
		o.amount = w.amounts.draw(r)
	default:
		o.kind = opOpen
	}
}

// Withdrawals and transfers from an account whose random walk has reached
// zero are refused, correctly.
func (mixed) expectedRefusal(k opKind, code string) bool {
	return (k == opDebit || k == opTransfer) && code == insufficient
}

// otherThan draws an account index in [0, n) other than a (n >= 2).
func otherThan(r *rand.Rand, n, a int) int {
	b := r.IntN(n - 1)
	if b >= a {
		b++
	}
	return b
}

// transferRefusals is the refusal rule of the even-funded transfer
// workloads: every account is funded alike and moves money in a random
// walk, which can reach zero; a refusal then is the ledger doing its job.
// With the default funding (1000 units, amounts of 1 to 10) it is rare.
type transferRefusals struct{}

func (transferRefusals) expectedRefusal(k opKind, code string) bool {
	return k == opTransfer && code == insufficient
}

// uniform transfers between two distinct uniformly random accounts.
type uniform struct {
	evenFunding
	transferRefusals
	accounts int
	amounts  amountRange
}

func (w uniform) next(r *rand.Rand, o *op) {
	o.kind = opTransfer
	o.account = r.IntN(w.accounts)
	o.counterparty = otherThan(r, w.accounts, o.account)
	o.amount = w.amounts.draw(r)
}

// samePartition transfers between two distinct accounts of one partition:
// the source is uniform over the accounts that share their partition, the
// destination uniform over the others of that partition. Under Bursar the
// credit leg is still a record of its own (rule 1), appended to the same
// partition.
type samePartition struct {
	evenFunding
	transferRefusals
	pool    *accountPool
	sources []int32
	amounts amountRange
}

func (w samePartition) next(r *rand.Rand, o *op) {
	a := w.sources[r.IntN(len(w.sources))]
	q := w.pool.partOf[a]
	members := w.pool.byPartition[w.pool.start[q]:w.pool.start[q+1]]
	// Uniform over members other than a: draw among the first len-1, and
	// if that is a itself take the last member in its place.
	b := members[r.IntN(len(members)-1)]
	if b == a {
		b = members[len(members)-1]
	}
	o.kind = opTransfer
	o.account, o.counterparty = int(a), int(b)
	o.amount = w.amounts.draw(r)
}

// crossPartition transfers between two accounts of different partitions:
// the source is uniform over every account, the destination uniform over
// the accounts outside the source's partition.
type crossPartition struct {
	evenFunding
	transferRefusals
	pool    *accountPool
	amounts amountRange
}

func (w crossPartition) next(r *rand.Rand, o *op) {
	p := w.pool
	a := r.IntN(p.len())
	q := p.partOf[a]
	lo, hi := int(p.start[q]), int(p.start[q+1])
	// Uniform over the positions of byPartition outside [lo, hi); there is
	// at least one (checkPairs refuses a pool with a single partition).
	j := r.IntN(p.len() - (hi - lo))
	if j >= lo {
		j += hi - lo
	}
	o.kind = opTransfer
	o.account, o.counterparty = a, int(p.byPartition[j])
	o.amount = w.amounts.draw(r)
}

// hotAccount is the index of the hot workload's paying account.
const hotAccount = 0

// hot is payouts from one account: a payroll or marketplace disbursement
// account pays every transfer to a uniformly random other account. Every
// debit leg serializes on that one account. It is funded with the largest
// amount one credit may carry (ledger.AmountMax minor units), so it cannot
// run dry in any run the limits allow: INSUFFICIENT_FUNDS is never a
// correct answer here and counts as an error.
type hot struct {
	accounts int
	amounts  amountRange
}

func (w hot) next(r *rand.Rand, o *op) {
	o.kind = opTransfer
	o.account = hotAccount
	o.counterparty = otherThan(r, w.accounts, hotAccount)
	o.amount = w.amounts.draw(r)
}

func (hot) expectedRefusal(opKind, string) bool { return false }

func (hot) funding(i int, base int64) int64 {
	if i == hotAccount && base > 0 {
		return ledger.AmountMax
	}
	return base
}

// newRand returns worker w's generator for a seed.
func newRand(seed uint64, w int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(w)))
}

// batch is one POST /api/v1/transactions/batch of size transfers, each
// of the smallest amount (1 minor unit: 0.01 USD) between two distinct
// uniformly random accounts. The amount is tiny so that a funded
// account's random walk never reaches zero: every item should succeed,
// and any item answered otherwise is an error by its code.
type batch struct {
	evenFunding
	accounts int
	size     int
}

func (w batch) next(r *rand.Rand, o *op) {
	o.kind = opBatch
	o.account, o.counterparty, o.amount = 0, 0, 1
	o.items = o.items[:0]
	for range w.size {
		a := r.IntN(w.accounts)
		o.items = append(o.items, batchItem{source: a, destination: otherThan(r, w.accounts, a)})
	}
}

func (batch) expectedRefusal(opKind, string) bool { return false }

// retrying credits a random account, then sends the same request again (a
// client retrying after a lost answer): the second is a replay.
type retrying struct {
	evenFunding
	accounts int
	amounts  amountRange
}

func (w retrying) next(r *rand.Rand, o *op) {
	if o.kind == opCredit && o.amount > 0 && !o.retry {
		o.retry = true
		return
	}
	o.retry = false
	o.kind = opCredit
	o.account = r.IntN(w.accounts)
	o.counterparty = 0
	o.amount = w.amounts.draw(r)
}

func (retrying) expectedRefusal(opKind, string) bool { return false }

// reads reads the balance of a uniformly random account.
type reads struct {
	evenFunding
	accounts int
}

func (w reads) next(r *rand.Rand, o *op) {
	o.kind, o.account, o.counterparty, o.amount = opBalance, r.IntN(w.accounts), 0, 0
}

// A balance read has no business refusal.
func (reads) expectedRefusal(opKind, string) bool { return false }
