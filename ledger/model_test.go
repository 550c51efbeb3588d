package ledger

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// This file checks Apply against a dumb reference ledger over many random
// command sequences (the etcd-io/raft style of testing an optimized state
// machine). The reference keeps everything in plain maps, never forgets an
// idempotency key, and decides each command by reading the rules top to
// bottom; it shares no code with apply.go or keys.go.

type refAccount struct {
	open      bool
	currency  string
	overdraft int64
	balance   int64
	version   int64
	seq       int64
	blocked   bool // frozen or closed
}

// refMemo is the first recorded outcome of a deduplicated command.
type refMemo struct {
	hash   uint64
	atUs   int64
	result Result
}

type refLedger struct {
	accounts map[uuid.UUID]*refAccount
	// memo is keyed by account, then by "key:<client key>" or
	// "leg:<kind>:<transfer ID>".
	memo map[uuid.UUID]map[string]refMemo
}

func newRefLedger() *refLedger {
	return &refLedger{accounts: map[uuid.UUID]*refAccount{}, memo: map[uuid.UUID]map[string]refMemo{}}
}

func (m *refLedger) account(id uuid.UUID) *refAccount {
	a := m.accounts[id]
	if a == nil {
		a = &refAccount{}
		m.accounts[id] = a
	}
	return a
}

// apply returns the result and the emitted record, if any.
func (m *refLedger) apply(c Command) (Result, *Command) {
	memoKey := ""
	if c.Kind == KindTransferCredit || c.Kind == KindTransferRefund {
		memoKey = fmt.Sprintf("leg:%d:%s", c.Kind, c.TxID)
	} else if c.IdemKey != "" {
		memoKey = "key:" + c.IdemKey
	}
	a := m.account(c.AccountID)
	if memoKey != "" {
		if prev, ok := m.memo[c.AccountID][memoKey]; ok && c.TimestampUs-prev.atUs <= IdempotencyWindowUs {
			if prev.hash != c.RequestHash {
				return m.failed(a, c, CodeIdempotencyKeyReused, false), nil
			}
			r := prev.result
			r.Replayed = true
			if c.Kind == KindTransferDebit && r.Kind == KindTransferDebit && r.Status == StatusPending {
				// A retry of a transfer still pending here sends its credit
				// leg again, for the destination to answer.
				leg := c
				leg.Kind, leg.TxID, leg.IdemKey = KindTransferCredit, r.TxID, ""
				leg.AccountID, leg.Counterparty = r.Counterparty, r.AccountID
				leg.Amount, leg.Currency = r.Amount, r.Currency
				return r, &leg
			}
			return r, nil
		}
	}
	r, emit := m.decide(a, c)
	if memoKey != "" && (!r.Unrecorded || r.Tombstone) {
		if m.memo[c.AccountID] == nil {
			m.memo[c.AccountID] = map[string]refMemo{}
		}
		m.memo[c.AccountID][memoKey] = refMemo{hash: c.RequestHash, atUs: c.TimestampUs, result: r}
	}
	return r, emit
}

func (m *refLedger) base(a *refAccount, c Command) Result {
	return Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Counterparty: c.Counterparty, Amount: c.Amount, Currency: c.Currency,
		TimestampUs: c.TimestampUs, Balance: a.balance, Available: a.balance + a.overdraft, Version: a.version,
	}
}

func (m *refLedger) failed(a *refAccount, c Command, code Code, recorded bool) Result {
	r := m.base(a, c)
	r.Status, r.Code = StatusFailed, code
	if recorded {
		a.seq++
		r.Seq = a.seq
	} else {
		r.Unrecorded = true
	}
	return r
}

func (m *refLedger) moved(a *refAccount, c Command, delta int64, status TxStatus) Result {
	a.balance += delta
	a.version++
	a.seq++
	r := m.base(a, c)
	r.Status, r.Delta, r.Seq = status, delta, a.seq
	return r
}

// refusal is the reason a money command cannot apply, and whether the
// refusal leaves a transaction row.
func (m *refLedger) refusal(a *refAccount, c Command, credit bool) (Code, bool) {
	if !a.open {
		return CodeAccountNotFound, false
	}
	if c.Amount < 1 || c.Amount > AmountMax {
		return CodeInvalidAmount, false
	}
	if a.blocked {
		return CodeAccountClosed, true
	}
	if c.Currency != a.currency {
		return CodeCurrencyMismatch, true
	}
	if credit && a.balance+c.Amount > BalanceMax {
		return CodeBalanceLimitExceeded, true
	}
	if !credit && a.balance-c.Amount < -a.overdraft {
		return CodeInsufficientFunds, true
	}
	return OK, false
}

func (m *refLedger) decide(a *refAccount, c Command) (Result, *Command) {
	switch c.Kind {
	case KindOpen:
		if a.open {
			return m.failed(a, c, CodeAccountExists, false), nil
		}
		if _, ok := CurrencyExponent(c.Currency); !ok || c.OverdraftLimit < 0 || c.OverdraftLimit > AmountMax {
			return m.failed(a, c, CodeInvalidField, false), nil
		}
		*a = refAccount{open: true, currency: c.Currency, overdraft: c.OverdraftLimit, version: 1, seq: 1}
		r := m.base(a, c)
		r.Status, r.Amount, r.Seq = StatusCompleted, 0, 1
		return r, nil

	case KindCredit:
		if code, rec := m.refusal(a, c, true); code != OK {
			return m.failed(a, c, code, rec), nil
		}
		return m.moved(a, c, c.Amount, StatusCompleted), nil

	case KindDebit:
		if code, rec := m.refusal(a, c, false); code != OK {
			return m.failed(a, c, code, rec), nil
		}
		return m.moved(a, c, -c.Amount, StatusCompleted), nil

	case KindTransferDebit:
		if c.AccountID == c.Counterparty {
			if !a.open {
				return m.failed(a, c, CodeAccountNotFound, false), nil
			}
			return m.failed(a, c, CodeSameAccount, true), nil
		}
		if code, rec := m.refusal(a, c, false); code != OK {
			return m.failed(a, c, code, rec), nil
		}
		leg := c
		leg.Kind, leg.AccountID, leg.Counterparty, leg.IdemKey = KindTransferCredit, c.Counterparty, c.AccountID, ""
		return m.moved(a, c, -c.Amount, StatusPending), &leg

	case KindTransferCredit:
		if code, rec := m.refusal(a, c, true); code != OK {
			refund := c
			refund.Kind, refund.AccountID, refund.Counterparty, refund.FailCode = KindTransferRefund, c.Counterparty, c.AccountID, code
			r := m.failed(a, c, code, rec)
			// A leg refused by a missing account is remembered all the same.
			r.Tombstone = !a.open
			return r, &refund
		}
		return m.moved(a, c, c.Amount, StatusCompleted), nil

	case KindTransferRefund:
		if !a.open {
			return m.failed(a, c, CodeAccountNotFound, false), nil
		}
		r := m.moved(a, c, c.Amount, StatusRefunded)
		r.Code = c.FailCode
		return r, nil
	}
	return m.failed(a, c, CodeMalformedRequest, false), nil
}

// modelDriver generates random traffic and runs it through both ledgers.
type modelDriver struct {
	t     *testing.T
	rng   *rand.Rand
	seed  uint64
	ids   []uuid.UUID // the first openable are opened by the traffic, the rest never
	open  int
	real  map[uuid.UUID]*Account
	ref   *refLedger
	nowUs int64
	txSeq uint64

	sent  []Command // client commands, for retries
	queue []Command // emitted records not yet delivered; may hold duplicates

	// Money accounting per currency: external credits minus external
	// debits, and transfers whose money has left the source but has not
	// arrived at the destination or come back.
	external map[string]int64
	inFlight map[uuid.UUID]Command

	// Coverage, to make sure the generator reaches every outcome.
	seen map[string]int
}

var modelCurrencies = []string{"USD", "EUR"}

func newModelDriver(t *testing.T, seed uint64) *modelDriver {
	d := &modelDriver{
		t: t, rng: rand.New(rand.NewPCG(seed, 0x6d6f64656c)), seed: seed,
		real: map[uuid.UUID]*Account{}, ref: newRefLedger(), nowUs: t0,
		external: map[string]int64{}, inFlight: map[uuid.UUID]Command{}, seen: map[string]int{},
		open: 6,
	}
	for i := range 8 {
		d.ids = append(d.ids, uuid.UUID{0: byte(seed), 1: byte(seed >> 8), 15: byte(i + 1)})
	}
	return d
}

func (d *modelDriver) account(id uuid.UUID) *Account {
	a := d.real[id]
	if a == nil {
		a = &Account{}
		d.real[id] = a
	}
	return a
}

func (d *modelDriver) pick(ids []uuid.UUID) uuid.UUID { return ids[d.rng.IntN(len(ids))] }

func (d *modelDriver) amount() int64 {
	switch r := d.rng.IntN(100); {
	case r < 80:
		return 1 + d.rng.Int64N(10_000)
	case r < 84:
		return 0
	case r < 87:
		return -d.rng.Int64N(1000)
	case r < 92:
		return AmountMax
	case r < 95:
		return AmountMax + 1 + d.rng.Int64N(1000)
	default:
		return 1 + d.rng.Int64N(AmountMax)
	}
}

// currencyFor is usually the account's own currency, sometimes the other.
func (d *modelDriver) currencyFor(id uuid.UUID) string {
	if a := d.ref.accounts[id]; a != nil && a.open && d.rng.IntN(100) < 85 {
		return a.currency
	}
	return modelCurrencies[d.rng.IntN(len(modelCurrencies))]
}

func (d *modelDriver) newCommand() Command {
	d.txSeq++
	c := Command{
		TxID:        txid(d.seed<<32 | d.txSeq),
		TimestampUs: d.nowUs,
		ReplyNode:   fmt.Sprintf("node-%d", d.rng.IntN(3)),
		ReplySeq:    d.rng.Uint64(),
	}
	if d.rng.IntN(100) < 60 {
		c.IdemKey = fmt.Sprintf("k%d", d.rng.IntN(5)) // a small pool: keys get reused
	}
	switch r := d.rng.IntN(100); {
	case r < 10:
		c.Kind = KindOpen
		c.AccountID = d.pick(d.ids[:d.open])
		c.Currency = modelCurrencies[d.rng.IntN(2)]
		if d.rng.IntN(10) == 0 {
			c.Currency = "XAU"
		}
		c.CustomerID, c.AccountType = "cust", "checking"
		switch r := d.rng.IntN(100); {
		case r < 70:
		case r < 90:
			c.OverdraftLimit = 1 + d.rng.Int64N(5000)
		case r < 95:
			c.OverdraftLimit = -1
		default:
			c.OverdraftLimit = AmountMax + 1
		}
	case r < 40:
		c.Kind = KindCredit
		c.AccountID = d.pick(d.ids)
	case r < 65:
		c.Kind = KindDebit
		c.AccountID = d.pick(d.ids)
	default:
		c.Kind = KindTransferDebit
		c.AccountID = d.pick(d.ids)
		c.Counterparty = d.pick(d.ids)
	}
	if c.Kind != KindOpen {
		c.Amount = d.amount()
		c.Currency = d.currencyFor(c.AccountID)
	}
	if d.rng.IntN(4) == 0 {
		c.Description = "note"
	}
	c.RequestHash = HashRequest(&c)
	return c
}

// step makes one random move.
func (d *modelDriver) step() {
	d.nowUs += 1 + d.rng.Int64N(1_000_000)
	if d.rng.IntN(100) == 0 {
		d.nowUs += IdempotencyWindowUs // let every key expire now and then
	}
	switch r := d.rng.IntN(100); {
	case r < 25 && len(d.queue) > 0:
		d.deliver(d.rng.IntN(len(d.queue)), true)
	case r < 32 && len(d.sent) > 0:
		// A client retry: the same request under a new TxID (ingress mints
		// one per HTTP request) at a later time.
		c := d.sent[d.rng.IntN(len(d.sent))]
		d.txSeq++
		c.TxID = txid(d.seed<<32 | d.txSeq)
		c.TimestampUs = d.nowUs
		d.run(c)
	case r < 33:
		d.setStatus()
	case r < 35 && d.seed%4 == 0:
		d.boost()
	default:
		c := d.newCommand()
		d.sent = append(d.sent, c)
		d.run(c)
	}
}

// deliver applies queued record i. A delivered record may be delivered
// again later, as a replay of its source partition would re-emit it.
func (d *modelDriver) deliver(i int, mayDuplicate bool) {
	c := d.queue[i]
	d.queue = append(d.queue[:i], d.queue[i+1:]...)
	r := d.run(c)
	// Only recorded deliveries are duplicated. A credit leg refused
	// because its account does not exist leaves no row and no key, so a
	// duplicate arriving after that account was opened would be credited
	// although the transfer was already refunded. Apply cannot tell; the
	// engine has to make sure such a duplicate never arrives (or the core
	// has to remember these refusals), so the driver does not send one.
	if mayDuplicate && !r.Unrecorded && d.rng.IntN(100) < 30 {
		d.queue = append(d.queue, c)
	}
}

// setStatus freezes, closes or reactivates an open account, as an
// operator would; both ledgers get the same change.
func (d *modelDriver) setStatus() {
	id := d.pick(d.ids[:d.open])
	ra := d.ref.account(id)
	if !ra.open {
		return
	}
	st := AccountStatus(1 + d.rng.IntN(3))
	d.account(id).Status = st
	ra.blocked = st != AccountActive
}

// boost sets an open account's balance near BalanceMax, an external credit,
// so the balance limit is reached.
func (d *modelDriver) boost() {
	id := d.pick(d.ids[:d.open])
	ra := d.ref.account(id)
	if !ra.open {
		return
	}
	// Within a few ordinary amounts of the limit, or within one big one.
	nb := BalanceMax - d.rng.Int64N(20_000)
	if d.rng.IntN(2) == 0 {
		nb = BalanceMax - d.rng.Int64N(2*AmountMax)
	}
	d.external[ra.currency] += nb - ra.balance
	ra.balance = nb
	d.account(id).Balance = nb
}

// run applies c to both ledgers and checks that they agree.
func (d *modelDriver) run(c Command) Result {
	t := d.t
	a := d.account(c.AccountID)
	e := Apply(a, &c)
	want, wantEmit := d.ref.apply(c)
	if e.Result != want {
		t.Fatalf("seed %d: %v on %v:\ncommand %+v\n    got %+v\n  model %+v", d.seed, c.Kind, c.AccountID, c, e.Result, want)
	}
	if !reflect.DeepEqual(e.Emit, wantEmit) {
		t.Fatalf("seed %d: %v emit:\n  got %+v\nmodel %+v", d.seed, c.Kind, e.Emit, wantEmit)
	}
	if e.Changed != (!want.Replayed && !want.Unrecorded) {
		t.Fatalf("seed %d: %v: Changed = %v for %+v", d.seed, c.Kind, e.Changed, want)
	}
	ra := d.ref.account(c.AccountID)
	if a.Exists != ra.open || a.Balance != ra.balance || a.Version != ra.version || a.Seq != ra.seq ||
		(ra.open && (a.Currency != ra.currency || a.OverdraftLimit != ra.overdraft)) {
		t.Fatalf("seed %d: account %v differs:\n  got %+v\nmodel %+v", d.seed, c.AccountID, scalars(a), *ra)
	}
	if !a.Keys.Complete() {
		t.Fatalf("seed %d: key index incomplete below its capacity", d.seed)
	}
	d.seen[fmt.Sprintf("%v/%v/%v", c.Kind, want.Status, want.Code)]++
	if want.Replayed {
		d.seen["replayed/"+c.Kind.String()]++
	}

	// Money bookkeeping, from the (now checked) result.
	if e.Emit != nil {
		d.queue = append(d.queue, *e.Emit)
	}
	if !want.Replayed && !want.Unrecorded {
		switch {
		case c.Kind == KindCredit && want.Status == StatusCompleted:
			d.external[c.Currency] += c.Amount
		case c.Kind == KindDebit && want.Status == StatusCompleted:
			d.external[c.Currency] -= c.Amount
		case c.Kind == KindTransferDebit && want.Status == StatusPending:
			d.inFlight[c.TxID] = c
		case c.Kind == KindTransferCredit && want.Status == StatusCompleted,
			c.Kind == KindTransferRefund && want.Status == StatusRefunded:
			if _, ok := d.inFlight[c.TxID]; !ok {
				t.Fatalf("seed %d: %v of transfer %v that is not in flight", d.seed, c.Kind, c.TxID)
			}
			delete(d.inFlight, c.TxID)
		}
	}
	d.checkInvariants()
	return e.Result
}

// checkInvariants checks rule 6 of ARCHITECTURE.md on the real ledger: per
// currency, balances plus money in flight equal external credits minus
// external debits, and no balance is below its overdraft limit. Sums use
// int64 wrap-around (balances near BalanceMax can add past it); equality
// modulo 2^64 of the same sums is still exact for any realistic error.
func (d *modelDriver) checkInvariants() {
	t := d.t
	sum := map[string]int64{}
	for id, a := range d.real {
		if a.Balance < -a.OverdraftLimit {
			t.Fatalf("seed %d: account %v balance %d below overdraft limit %d", d.seed, id, a.Balance, a.OverdraftLimit)
		}
		if a.Exists {
			sum[a.Currency] += a.Balance
		} else if a.Balance != 0 {
			t.Fatalf("seed %d: account %v does not exist but holds %d", d.seed, id, a.Balance)
		}
	}
	for _, c := range d.inFlight {
		sum[c.Currency] += c.Amount
	}
	for _, cur := range modelCurrencies {
		if sum[cur] != d.external[cur] {
			t.Fatalf("seed %d: %s not conserved: balances+in flight %d, external %d", d.seed, cur, sum[cur], d.external[cur])
		}
	}
}

// drain delivers everything still queued, without new duplicates.
func (d *modelDriver) drain() {
	for n := 0; len(d.queue) > 0; n++ {
		if n > 1_000_000 {
			d.t.Fatalf("seed %d: queue does not drain", d.seed)
		}
		d.deliver(0, false)
	}
	if len(d.inFlight) != 0 {
		d.t.Fatalf("seed %d: %d transfers still in flight after draining", d.seed, len(d.inFlight))
	}
}

func TestApplyMatchesModel(t *testing.T) {
	seeds, steps := 200, 500
	if testing.Short() {
		seeds = 20
	}
	seen := map[string]int{}
	for seed := range uint64(seeds) {
		d := newModelDriver(t, seed+1)
		for range steps {
			d.step()
		}
		d.drain()
		for k, n := range d.seen {
			seen[k] += n
		}
	}
	// The generator must actually reach the interesting outcomes, or the
	// comparison above proves little.
	for _, want := range []string{
		"open/completed/OK", "open/failed/ACCOUNT_EXISTS", "open/failed/INVALID_FIELD",
		"credit/completed/OK", "credit/failed/ACCOUNT_NOT_FOUND", "credit/failed/INVALID_AMOUNT",
		"credit/failed/CURRENCY_MISMATCH", "credit/failed/ACCOUNT_CLOSED", "credit/failed/BALANCE_LIMIT_EXCEEDED",
		"credit/failed/IDEMPOTENCY_KEY_REUSED",
		"debit/completed/OK", "debit/failed/INSUFFICIENT_FUNDS",
		"transfer_debit/pending/OK", "transfer_debit/failed/SAME_ACCOUNT", "transfer_debit/failed/INSUFFICIENT_FUNDS",
		"transfer_credit/completed/OK", "transfer_credit/failed/ACCOUNT_NOT_FOUND",
		"transfer_credit/failed/CURRENCY_MISMATCH", "transfer_credit/failed/ACCOUNT_CLOSED",
		"transfer_credit/failed/BALANCE_LIMIT_EXCEEDED",
		"transfer_refund/refunded/ACCOUNT_NOT_FOUND", "transfer_refund/refunded/CURRENCY_MISMATCH",
		"replayed/credit", "replayed/debit", "replayed/transfer_debit", "replayed/open",
		"replayed/transfer_credit", "replayed/transfer_refund",
	} {
		if seen[want] == 0 {
			t.Errorf("no step produced %s", want)
		}
	}
	if testing.Verbose() {
		t.Logf("outcomes: %v", seen)
	}
}
