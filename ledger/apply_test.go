package ledger

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// Test fixtures shared by the tests of this package.

var (
	acctA = uuid.MustParse("0190f1a2-0000-7000-8000-00000000000a")
	acctB = uuid.MustParse("0190f1a2-0000-7000-8000-00000000000b")
	acctC = uuid.MustParse("0190f1a2-0000-7000-8000-00000000000c")
)

// t0 is the record time the fixtures start at (2023-11-14, unix µs).
const t0 int64 = 1_700_000_000_000_000

// txid returns a UUIDv7-shaped transaction ID numbered n.
func txid(n uint64) uuid.UUID {
	var u uuid.UUID
	u[6] = 0x70
	u[8] = 0x80
	binary.BigEndian.PutUint64(u[8:], n|1<<63)
	return u
}

type cmdOpt func(*Command)

func withTx(n uint64) cmdOpt       { return func(c *Command) { c.TxID = txid(n) } }
func withKey(k string) cmdOpt      { return func(c *Command) { c.IdemKey = k } }
func withTime(us int64) cmdOpt     { return func(c *Command) { c.TimestampUs = us } }
func withCurrency(s string) cmdOpt { return func(c *Command) { c.Currency = s } }
func withDesc(s string) cmdOpt     { return func(c *Command) { c.Description = s } }
func withReply(node string, seq uint64) cmdOpt {
	return func(c *Command) { c.ReplyNode, c.ReplySeq = node, seq }
}

// mk builds a client command the way ingress would: IDs and time minted,
// RequestHash computed last. The default TxID is derived from the other
// fields, so two calls with the same arguments give the same command.
func mk(kind Kind, acct uuid.UUID, amount int64, opts ...cmdOpt) Command {
	c := Command{Kind: kind, AccountID: acct, TimestampUs: t0, Amount: amount, Currency: "USD"}
	for _, o := range opts {
		o(&c)
	}
	if c.TxID == uuid.Nil {
		c.TxID = txid(HashRequest(&c) ^ uint64(c.TimestampUs))
	}
	c.RequestHash = HashRequest(&c)
	return c
}

func openCmd(acct uuid.UUID, currency string, overdraft int64, opts ...cmdOpt) Command {
	return mk(KindOpen, acct, 0, append([]cmdOpt{func(c *Command) {
		c.Currency, c.OverdraftLimit, c.CustomerID, c.AccountType = currency, overdraft, "cust-1", "checking"
	}}, opts...)...)
}

func creditCmd(acct uuid.UUID, amount int64, opts ...cmdOpt) Command {
	return mk(KindCredit, acct, amount, opts...)
}

func debitCmd(acct uuid.UUID, amount int64, opts ...cmdOpt) Command {
	return mk(KindDebit, acct, amount, opts...)
}

func transferCmd(from, to uuid.UUID, amount int64, opts ...cmdOpt) Command {
	return mk(KindTransferDebit, from, amount, append([]cmdOpt{func(c *Command) { c.Counterparty = to }}, opts...)...)
}

// creditLegOf is the credit leg a transfer's debit leg must emit, built by
// hand from the documented rule rather than by the code under test.
func creditLegOf(d Command) Command {
	leg := d
	leg.Kind = KindTransferCredit
	leg.AccountID, leg.Counterparty = d.Counterparty, d.AccountID
	leg.IdemKey = ""
	return leg
}

// refundOf is the refund a refused credit leg must emit.
// resentLegOf is the credit leg a retry of a pending transfer sends again:
// the transfer's ID, the retry's timestamp and reply address.
func resentLegOf(retry Command, tx uuid.UUID) Command {
	leg := retry
	leg.Kind, leg.TxID, leg.IdemKey = KindTransferCredit, tx, ""
	leg.AccountID, leg.Counterparty = retry.Counterparty, retry.AccountID
	return leg
}

func refundOf(leg Command, code Code) Command {
	r := leg
	r.Kind = KindTransferRefund
	r.AccountID, r.Counterparty = leg.Counterparty, leg.AccountID
	r.FailCode = code
	return r
}

// res is the result c produces with the given outcome and account figures.
func res(c Command, st TxStatus, code Code, delta, bal, avail, ver, seq int64) Result {
	return Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Counterparty: c.Counterparty, Status: st, Code: code,
		Amount: c.Amount, Delta: delta, Currency: c.Currency, Balance: bal, Available: avail,
		Version: ver, Seq: seq, TimestampUs: c.TimestampUs,
	}
}

func unrecorded(r Result) Result { r.Unrecorded = true; return r }
func replayed(r Result) Result   { r.Replayed = true; return r }
func tombstone(r Result) Result  { r.Tombstone = true; return r }

// world holds accounts by ID; an unknown ID is a zero Account, as the actor
// of an account that was never opened would hold.
type world map[uuid.UUID]*Account

func (w world) get(id uuid.UUID) *Account {
	a, ok := w[id]
	if !ok {
		a = &Account{}
		w[id] = a
	}
	return a
}

func (w world) apply(c Command) Effect { return Apply(w.get(c.AccountID), &c) }

// acctState is an Account without its key index, which holds a map and
// cannot be compared with ==.
type acctState struct {
	ID                         uuid.UUID
	Exists                     bool
	CustomerID, Type, Currency string
	Status                     AccountStatus
	OverdraftLimit, Balance    int64
	Version, Seq               int64
	CreatedUs, UpdatedUs       int64
}

func scalars(a *Account) acctState {
	return acctState{
		ID: a.ID, Exists: a.Exists, CustomerID: a.CustomerID, Type: a.Type, Currency: a.Currency,
		Status: a.Status, OverdraftLimit: a.OverdraftLimit, Balance: a.Balance,
		Version: a.Version, Seq: a.Seq, CreatedUs: a.CreatedUs, UpdatedUs: a.UpdatedUs,
	}
}

func TestApply(t *testing.T) {
	const window = IdempotencyWindowUs
	openA := openCmd(acctA, "USD", 0)
	openAOverdraft := openCmd(acctA, "USD", 500)
	openB := openCmd(acctB, "USD", 0)
	openBEUR := openCmd(acctB, "EUR", 0)
	fundA := creditCmd(acctA, 1000, withDesc("fund"))

	creditK := creditCmd(acctA, 100, withKey("k"), withTx(100))
	creditKRetry := creditCmd(acctA, 100, withKey("k"), withTx(101), withTime(t0+1000), withReply("node-b", 77))
	debitKShort := debitCmd(acctA, 500, withKey("k"), withTx(110))

	td := transferCmd(acctA, acctB, 300, withKey("kt"), withTx(200), withReply("node-a", 9), withDesc("rent"))
	retry := transferCmd(acctA, acctB, 300, withKey("kt"), withTx(201), withTime(t0+50), withReply("node-b", 4), withDesc("rent"))
	leg := creditLegOf(td)
	refundNotFound := refundOf(leg, CodeAccountNotFound)
	badRefund := refundOf(leg, CodeInvalidAmount)
	badRefund.Amount = -300

	tests := []struct {
		name    string
		setup   []Command     // applied in order first
		prep    func(w world) // then direct state changes
		cmd     Command
		want    Result
		changed bool
		emit    *Command
		check   func(t *testing.T, w world)
	}{
		// Open.
		{
			name: "open new account", cmd: openA,
			want:    Result{TxID: openA.TxID, Kind: KindOpen, AccountID: acctA, Status: StatusCompleted, Currency: "USD", TimestampUs: t0, Version: 1, Seq: 1},
			changed: true,
			check: func(t *testing.T, w world) {
				got := scalars(w.get(acctA))
				want := acctState{ID: acctA, Exists: true, CustomerID: "cust-1", Type: "checking", Currency: "USD",
					Status: AccountActive, Version: 1, Seq: 1, CreatedUs: t0, UpdatedUs: t0}
				if got != want {
					t.Errorf("account after open:\n got %+v\nwant %+v", got, want)
				}
			},
		},
		{
			name: "open with overdraft limit", cmd: openAOverdraft,
			want:    Result{TxID: openAOverdraft.TxID, Kind: KindOpen, AccountID: acctA, Status: StatusCompleted, Currency: "USD", TimestampUs: t0, Available: 500, Version: 1, Seq: 1},
			changed: true,
		},
		{
			name: "open an existing account", setup: []Command{openA},
			cmd:  openCmd(acctA, "EUR", 0, withTx(2)),
			want: unrecorded(res(openCmd(acctA, "EUR", 0, withTx(2)), StatusFailed, CodeAccountExists, 0, 0, 0, 1, 0)),
		},
		{
			name: "open with an unsupported currency", cmd: openCmd(acctA, "XAU", 0),
			want: unrecorded(res(openCmd(acctA, "XAU", 0), StatusFailed, CodeInvalidField, 0, 0, 0, 0, 0)),
			check: func(t *testing.T, w world) {
				if w.get(acctA).Exists {
					t.Error("refused open created the account")
				}
			},
		},
		{
			name: "open with a negative overdraft", cmd: openCmd(acctA, "USD", -1),
			want: unrecorded(res(openCmd(acctA, "USD", -1), StatusFailed, CodeInvalidField, 0, 0, 0, 0, 0)),
		},
		{
			name: "open with an overdraft past AmountMax", cmd: openCmd(acctA, "USD", AmountMax+1),
			want: unrecorded(res(openCmd(acctA, "USD", AmountMax+1), StatusFailed, CodeInvalidField, 0, 0, 0, 0, 0)),
		},

		// Credit and debit.
		{
			name: "credit", setup: []Command{openA}, cmd: fundA,
			want: res(fundA, StatusCompleted, OK, 1000, 1000, 1000, 2, 2), changed: true,
		},
		{
			name: "debit", setup: []Command{openA, fundA}, cmd: debitCmd(acctA, 300),
			want: res(debitCmd(acctA, 300), StatusCompleted, OK, -300, 700, 700, 3, 3), changed: true,
		},
		{
			name: "debit the whole balance", setup: []Command{openA, fundA}, cmd: debitCmd(acctA, 1000),
			want: res(debitCmd(acctA, 1000), StatusCompleted, OK, -1000, 0, 0, 3, 3), changed: true,
		},
		{
			name: "insufficient funds is a recorded failure", setup: []Command{openA, fundA}, cmd: debitCmd(acctA, 1001),
			// Seq bumps (a transaction row), Version does not (no balance change).
			want: res(debitCmd(acctA, 1001), StatusFailed, CodeInsufficientFunds, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "overdraft allows going down to minus the limit", setup: []Command{openAOverdraft, fundA}, cmd: debitCmd(acctA, 1500),
			want: res(debitCmd(acctA, 1500), StatusCompleted, OK, -1500, -500, 0, 3, 3), changed: true,
		},
		{
			name: "overdraft limit exceeded by one unit", setup: []Command{openAOverdraft, fundA}, cmd: debitCmd(acctA, 1501),
			want: res(debitCmd(acctA, 1501), StatusFailed, CodeInsufficientFunds, 0, 1000, 1500, 2, 3), changed: true,
		},
		{
			name:  "nothing more at minus the limit",
			setup: []Command{openAOverdraft, debitCmd(acctA, 500)}, cmd: debitCmd(acctA, 1, withTx(3)),
			want: res(debitCmd(acctA, 1, withTx(3)), StatusFailed, CodeInsufficientFunds, 0, -500, 0, 2, 3), changed: true,
		},
		{
			name: "credit in another currency", setup: []Command{openA}, cmd: creditCmd(acctA, 100, withCurrency("EUR")),
			want: res(creditCmd(acctA, 100, withCurrency("EUR")), StatusFailed, CodeCurrencyMismatch, 0, 0, 0, 1, 2), changed: true,
		},
		{
			name: "debit in another currency", setup: []Command{openA, fundA}, cmd: debitCmd(acctA, 100, withCurrency("EUR")),
			want: res(debitCmd(acctA, 100, withCurrency("EUR")), StatusFailed, CodeCurrencyMismatch, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "credit to an unknown account", cmd: creditCmd(acctB, 100),
			want: unrecorded(res(creditCmd(acctB, 100), StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			name: "debit from an unknown account", setup: []Command{openA}, cmd: debitCmd(acctB, 100),
			want: unrecorded(res(debitCmd(acctB, 100), StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			name: "unknown account is checked before the amount", cmd: creditCmd(acctB, 0),
			want: unrecorded(res(creditCmd(acctB, 0), StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			name: "zero amount", setup: []Command{openA}, cmd: creditCmd(acctA, 0),
			want: unrecorded(res(creditCmd(acctA, 0), StatusFailed, CodeInvalidAmount, 0, 0, 0, 1, 0)),
		},
		{
			name: "negative amount", setup: []Command{openA, fundA}, cmd: debitCmd(acctA, -5),
			want: unrecorded(res(debitCmd(acctA, -5), StatusFailed, CodeInvalidAmount, 0, 1000, 1000, 2, 0)),
		},
		{
			name: "amount past AmountMax", setup: []Command{openA}, cmd: creditCmd(acctA, AmountMax+1),
			want: unrecorded(res(creditCmd(acctA, AmountMax+1), StatusFailed, CodeInvalidAmount, 0, 0, 0, 1, 0)),
		},
		{
			name: "amount of AmountMax", setup: []Command{openA}, cmd: creditCmd(acctA, AmountMax),
			want: res(creditCmd(acctA, AmountMax), StatusCompleted, OK, AmountMax, AmountMax, AmountMax, 2, 2), changed: true,
		},
		{
			name: "credit up to BalanceMax", setup: []Command{openA},
			prep: func(w world) { w.get(acctA).Balance = BalanceMax - 10 },
			cmd:  creditCmd(acctA, 10),
			want: res(creditCmd(acctA, 10), StatusCompleted, OK, 10, BalanceMax, BalanceMax, 2, 2), changed: true,
		},
		{
			name: "credit past BalanceMax", setup: []Command{openA},
			prep: func(w world) { w.get(acctA).Balance = BalanceMax - 10 },
			cmd:  creditCmd(acctA, 11),
			want: res(creditCmd(acctA, 11), StatusFailed, CodeBalanceLimitExceeded, 0, BalanceMax-10, BalanceMax-10, 1, 2), changed: true,
		},
		{
			name: "credit to a frozen account", setup: []Command{openA},
			prep: func(w world) { w.get(acctA).Status = AccountFrozen },
			cmd:  creditCmd(acctA, 100),
			want: res(creditCmd(acctA, 100), StatusFailed, CodeAccountClosed, 0, 0, 0, 1, 2), changed: true,
		},
		{
			name: "debit from a closed account", setup: []Command{openA, fundA},
			prep: func(w world) { w.get(acctA).Status = AccountClosed },
			cmd:  debitCmd(acctA, 100),
			want: res(debitCmd(acctA, 100), StatusFailed, CodeAccountClosed, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "amount is checked before the status", setup: []Command{openA},
			prep: func(w world) { w.get(acctA).Status = AccountFrozen },
			cmd:  creditCmd(acctA, 0),
			want: unrecorded(res(creditCmd(acctA, 0), StatusFailed, CodeInvalidAmount, 0, 0, 0, 1, 0)),
		},
		{
			name: "unknown kind", setup: []Command{openA}, cmd: mk(Kind(99), acctA, 100),
			want: unrecorded(res(mk(Kind(99), acctA, 100), StatusFailed, CodeMalformedRequest, 0, 0, 0, 1, 0)),
		},

		// Idempotency keys.
		{
			name: "first use of a key", setup: []Command{openA}, cmd: creditK,
			want: res(creditK, StatusCompleted, OK, 100, 100, 100, 2, 2), changed: true,
			check: func(t *testing.T, w world) {
				// The open is remembered under its transaction ID, the credit
				// under its key.
				if n := w.get(acctA).Keys.Len(); n != 2 {
					t.Errorf("Keys.Len() = %d; want 2", n)
				}
			},
		},
		{
			name: "same key, same request: the original result", setup: []Command{openA, creditK}, cmd: creditKRetry,
			want: replayed(res(creditK, StatusCompleted, OK, 100, 100, 100, 2, 2)),
		},
		{
			name: "same key, same request: the original failure", setup: []Command{openA, debitKShort, fundA},
			cmd:  debitCmd(acctA, 500, withKey("k"), withTx(111), withTime(t0+5)),
			want: replayed(res(debitKShort, StatusFailed, CodeInsufficientFunds, 0, 0, 0, 1, 2)),
		},
		{
			name: "same key, different amount", setup: []Command{openA, creditK},
			cmd:  creditCmd(acctA, 200, withKey("k"), withTx(102)),
			want: unrecorded(res(creditCmd(acctA, 200, withKey("k"), withTx(102)), StatusFailed, CodeIdempotencyKeyReused, 0, 100, 100, 2, 0)),
		},
		{
			name: "same key, different description", setup: []Command{openA, creditK},
			cmd:  creditCmd(acctA, 100, withKey("k"), withTx(102), withDesc("other")),
			want: unrecorded(res(creditCmd(acctA, 100, withKey("k"), withTx(102), withDesc("other")), StatusFailed, CodeIdempotencyKeyReused, 0, 100, 100, 2, 0)),
		},
		{
			name: "same key, different kind", setup: []Command{openA, creditK},
			cmd:  debitCmd(acctA, 100, withKey("k"), withTx(102)),
			want: unrecorded(res(debitCmd(acctA, 100, withKey("k"), withTx(102)), StatusFailed, CodeIdempotencyKeyReused, 0, 100, 100, 2, 0)),
		},
		{
			name:  "a reused-key refusal is not remembered",
			setup: []Command{openA, creditK, creditCmd(acctA, 200, withKey("k"), withTx(102))},
			cmd:   creditKRetry,
			want:  replayed(res(creditK, StatusCompleted, OK, 100, 100, 100, 2, 2)),
		},
		{
			name: "key still held at the end of the window", setup: []Command{openA, creditK},
			cmd:  creditCmd(acctA, 200, withKey("k"), withTx(103), withTime(t0+window)),
			want: unrecorded(res(creditCmd(acctA, 200, withKey("k"), withTx(103), withTime(t0+window)), StatusFailed, CodeIdempotencyKeyReused, 0, 100, 100, 2, 0)),
		},
		{
			name: "key expired after the window: a new request", setup: []Command{openA, creditK},
			cmd:  creditCmd(acctA, 200, withKey("k"), withTx(103), withTime(t0+window+1)),
			want: res(creditCmd(acctA, 200, withKey("k"), withTx(103), withTime(t0+window+1)), StatusCompleted, OK, 200, 300, 300, 3, 3), changed: true,
			check: func(t *testing.T, w world) {
				p, ok := w.get(acctA).Keys.Lookup("k", t0+window+2)
				if !ok || p.result.TxID != txid(103) || w.get(acctA).Keys.Len() != 2 {
					t.Errorf("key not replaced by the new result: %v %+v len %d", ok, p.result, w.get(acctA).Keys.Len())
				}
			},
		},
		{
			name: "key expired after the window: the same request applies again", setup: []Command{openA, creditK},
			cmd:  creditCmd(acctA, 100, withKey("k"), withTx(104), withTime(t0+window+1)),
			want: res(creditCmd(acctA, 100, withKey("k"), withTx(104), withTime(t0+window+1)), StatusCompleted, OK, 100, 200, 200, 3, 3), changed: true,
		},
		{
			name: "keys are per account", setup: []Command{openA, openB, creditK},
			cmd:  creditCmd(acctB, 100, withKey("k"), withTx(105)),
			want: res(creditCmd(acctB, 100, withKey("k"), withTx(105)), StatusCompleted, OK, 100, 100, 100, 2, 2), changed: true,
		},
		{
			name:  "an unrecorded refusal is not remembered",
			setup: []Command{creditCmd(acctB, 100, withKey("k"), withTx(106)), openB},
			cmd:   creditCmd(acctB, 100, withKey("k"), withTx(106)),
			want:  res(creditCmd(acctB, 100, withKey("k"), withTx(106)), StatusCompleted, OK, 100, 100, 100, 2, 2), changed: true,
		},
		{
			name: "open retried with its key", setup: []Command{openCmd(acctA, "USD", 0, withKey("ko"), withTx(1))},
			cmd:  openCmd(acctA, "USD", 0, withKey("ko"), withTx(2), withTime(t0+9)),
			want: replayed(Result{TxID: txid(1), Kind: KindOpen, AccountID: acctA, Status: StatusCompleted, Currency: "USD", TimestampUs: t0, Version: 1, Seq: 1}),
		},

		// Transfer debit leg.
		{
			name: "transfer debit emits the credit leg", setup: []Command{openA, fundA}, cmd: td,
			want: res(td, StatusPending, OK, -300, 700, 700, 3, 3), changed: true,
			emit: &leg,
		},
		{
			name: "transfer debit with insufficient funds emits nothing", setup: []Command{openA, fundA},
			cmd:  transferCmd(acctA, acctB, 1001),
			want: res(transferCmd(acctA, acctB, 1001), StatusFailed, CodeInsufficientFunds, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "transfer debit in another currency", setup: []Command{openA, fundA},
			cmd:  transferCmd(acctA, acctB, 10, withCurrency("EUR")),
			want: res(transferCmd(acctA, acctB, 10, withCurrency("EUR")), StatusFailed, CodeCurrencyMismatch, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "transfer from an unknown account", cmd: td,
			want: unrecorded(res(td, StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			name: "transfer to the same account", setup: []Command{openA, fundA}, cmd: transferCmd(acctA, acctA, 100),
			want: res(transferCmd(acctA, acctA, 100), StatusFailed, CodeSameAccount, 0, 1000, 1000, 2, 3), changed: true,
		},
		{
			name: "transfer to the same unknown account", cmd: transferCmd(acctA, acctA, 100),
			want: unrecorded(res(transferCmd(acctA, acctA, 100), StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			name: "transfer retried with its key sends its credit leg again", setup: []Command{openA, fundA, td},
			cmd:  retry,
			want: replayed(res(td, StatusPending, OK, -300, 700, 700, 3, 3)),
			emit: ptr(resentLegOf(retry, td.TxID)),
		},

		// Credit leg.
		{
			name: "credit leg", setup: []Command{openB}, cmd: leg,
			want: res(leg, StatusCompleted, OK, 300, 300, 300, 2, 2), changed: true,
		},
		{
			name: "credit leg to a missing account emits a refund", cmd: leg,
			want: tombstone(unrecorded(res(leg, StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0))),
			emit: &refundNotFound,
		},
		{
			name: "credit leg in another currency emits a refund", setup: []Command{openBEUR}, cmd: leg,
			want: res(leg, StatusFailed, CodeCurrencyMismatch, 0, 0, 0, 1, 2), changed: true,
			emit: ptr(refundOf(leg, CodeCurrencyMismatch)),
		},
		{
			name: "credit leg to a frozen account emits a refund", setup: []Command{openB},
			prep: func(w world) { w.get(acctB).Status = AccountFrozen },
			cmd:  leg,
			want: res(leg, StatusFailed, CodeAccountClosed, 0, 0, 0, 1, 2), changed: true,
			emit: ptr(refundOf(leg, CodeAccountClosed)),
		},
		{
			name: "credit leg past BalanceMax emits a refund", setup: []Command{openB},
			prep: func(w world) { w.get(acctB).Balance = BalanceMax },
			cmd:  leg,
			want: res(leg, StatusFailed, CodeBalanceLimitExceeded, 0, BalanceMax, BalanceMax, 1, 2), changed: true,
			emit: ptr(refundOf(leg, CodeBalanceLimitExceeded)),
		},
		{
			name: "credit leg applied twice", setup: []Command{openB, leg}, cmd: leg,
			want: replayed(res(leg, StatusCompleted, OK, 300, 300, 300, 2, 2)),
		},
		{
			name: "refused credit leg applied twice refunds once", setup: []Command{openBEUR, leg}, cmd: leg,
			want: replayed(res(leg, StatusFailed, CodeCurrencyMismatch, 0, 0, 0, 1, 2)),
		},
		{
			name: "credit leg is not blocked by the transfer's client key",
			// The leg dedupes on its transfer ID; the client key stays on
			// the source account.
			setup: []Command{openB, creditCmd(acctB, 5, withKey("kt"))}, cmd: leg,
			want: res(leg, StatusCompleted, OK, 300, 305, 305, 3, 3), changed: true,
		},

		// Refund.
		{
			name: "refund restores the balance", setup: []Command{openA, fundA, td}, cmd: refundNotFound,
			want:    res(refundNotFound, StatusRefunded, CodeAccountNotFound, 300, 1000, 1000, 4, 4),
			changed: true,
		},
		{
			name: "refund to a frozen account still applies", setup: []Command{openA, fundA, td},
			prep: func(w world) { w.get(acctA).Status = AccountFrozen },
			cmd:  refundNotFound,
			want: res(refundNotFound, StatusRefunded, CodeAccountNotFound, 300, 1000, 1000, 4, 4), changed: true,
		},
		{
			name: "refund applied twice", setup: []Command{openA, fundA, td, refundNotFound}, cmd: refundNotFound,
			want: replayed(res(refundNotFound, StatusRefunded, CodeAccountNotFound, 300, 1000, 1000, 4, 4)),
		},
		{
			name: "refund to a missing account", cmd: refundNotFound,
			want: unrecorded(res(refundNotFound, StatusFailed, CodeAccountNotFound, 0, 0, 0, 0, 0)),
		},
		{
			// Only a corrupt log carries one: moving it would take money
			// from the source.
			name: "refund of an invalid amount is refused without a row", setup: []Command{openA, fundA, td}, cmd: badRefund,
			want: unrecorded(res(badRefund, StatusFailed, CodeInvalidAmount, 0, 700, 700, 3, 0)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := world{}
			for _, c := range tt.setup {
				w.apply(c)
			}
			if tt.prep != nil {
				tt.prep(w)
			}
			a := w.get(tt.cmd.AccountID)
			before, keysBefore := scalars(a), a.Keys.Len()

			e := w.apply(tt.cmd)

			if e.Result != tt.want {
				t.Errorf("result:\n got %+v\nwant %+v", e.Result, tt.want)
			}
			if e.Changed != tt.changed {
				t.Errorf("Changed = %v; want %v", e.Changed, tt.changed)
			}
			if !reflect.DeepEqual(e.Emit, tt.emit) {
				t.Errorf("emit:\n got %+v\nwant %+v", e.Emit, tt.emit)
			}
			if (e.Result.Replayed || e.Result.Unrecorded) && e.Changed {
				t.Error("a replayed or unrecorded result changed the account")
			}
			after := scalars(a)
			if !tt.changed {
				// A tombstone changes nothing but the key index.
				if after != before || (a.Keys.Len() != keysBefore && !e.Result.Tombstone) {
					t.Errorf("account changed:\nbefore %+v (%d keys)\n after %+v (%d keys)", before, keysBefore, after, a.Keys.Len())
				}
			} else {
				if a.Balance != tt.want.Balance || a.Version != tt.want.Version || a.Seq != tt.want.Seq || a.UpdatedUs != tt.cmd.TimestampUs {
					t.Errorf("account after apply: %+v; want balance %d version %d seq %d updated %d",
						after, tt.want.Balance, tt.want.Version, tt.want.Seq, tt.cmd.TimestampUs)
				}
				if a.Available() != tt.want.Available {
					t.Errorf("Available() = %d; want %d", a.Available(), tt.want.Available)
				}
			}
			if tt.check != nil {
				tt.check(t, w)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestTransferFlows drives whole transfers through both accounts, the way
// the engine routes emitted records, and checks every leg and the totals.
func TestTransferFlows(t *testing.T) {
	t.Run("completed", func(t *testing.T) {
		w := world{}
		w.apply(openCmd(acctA, "USD", 0))
		w.apply(openCmd(acctB, "USD", 0))
		w.apply(creditCmd(acctA, 1000))
		d := w.apply(transferCmd(acctA, acctB, 400, withTx(1)))
		if d.Result.Status != StatusPending || d.Emit == nil {
			t.Fatalf("debit leg: %+v emit %v", d.Result, d.Emit)
		}
		c := w.apply(*d.Emit)
		if c.Result.Status != StatusCompleted || c.Emit != nil || c.Result.TxID != txid(1) {
			t.Fatalf("credit leg: %+v emit %v", c.Result, c.Emit)
		}
		if a, b := w.get(acctA).Balance, w.get(acctB).Balance; a != 600 || b != 400 {
			t.Fatalf("balances %d, %d; want 600, 400", a, b)
		}
		// A duplicate of the credit leg, as a replay of A's partition
		// would produce, changes nothing.
		if again := w.apply(*d.Emit); !again.Result.Replayed || again.Changed || w.get(acctB).Balance != 400 {
			t.Fatalf("duplicate credit leg: %+v, balance %d", again.Result, w.get(acctB).Balance)
		}
	})
	t.Run("refunded", func(t *testing.T) {
		w := world{}
		w.apply(openCmd(acctA, "USD", 0))
		w.apply(openCmd(acctB, "EUR", 0))
		w.apply(creditCmd(acctA, 1000))
		for i, to := range []uuid.UUID{acctB, acctC} { // currency mismatch, then missing
			want := map[uuid.UUID]Code{acctB: CodeCurrencyMismatch, acctC: CodeAccountNotFound}[to]
			d := w.apply(transferCmd(acctA, to, 250, withTx(uint64(10+i))))
			if d.Result.Status != StatusPending || w.get(acctA).Balance != 750 {
				t.Fatalf("debit leg to %v: %+v", to, d.Result)
			}
			c := w.apply(*d.Emit)
			if c.Result.Status != StatusFailed || c.Result.Code != want || c.Emit == nil {
				t.Fatalf("credit leg to %v: %+v emit %v", to, c.Result, c.Emit)
			}
			r := w.apply(*c.Emit)
			if r.Result.Status != StatusRefunded || r.Result.Code != want || r.Result.Delta != 250 || r.Result.AccountID != acctA {
				t.Fatalf("refund from %v: %+v", to, r.Result)
			}
			if w.get(acctA).Balance != 1000 || w.get(to).Balance != 0 {
				t.Fatalf("after refund: A %d, %v %d", w.get(acctA).Balance, to, w.get(to).Balance)
			}
			if again := w.apply(*c.Emit); !again.Result.Replayed || w.get(acctA).Balance != 1000 {
				t.Fatalf("duplicate refund: %+v, balance %d", again.Result, w.get(acctA).Balance)
			}
		}
	})
}

// TestOwnerCheck: an open records its owner; a debit or a transfer's
// debit leg that names an owner is applied only to an account of that
// owner, and is refused otherwise as ACCOUNT_NOT_FOUND, unrecorded and
// before the idempotency lookup (another owner's key fetches nothing);
// the credit leg and refund never carry the owner, so paying another
// owner's account works.
func TestOwnerCheck(t *testing.T) {
	const alice, bob = "user-alice", "user-bob"
	withOwner := func(o string) cmdOpt { return func(c *Command) { c.Owner = o } }
	tests := []struct {
		name   string
		cmd    Command
		status TxStatus
		code   Code
	}{
		{"owner's debit", debitCmd(acctA, 10, withOwner(alice), withTx(1)), StatusCompleted, OK},
		{"another owner's debit", debitCmd(acctA, 10, withOwner(bob), withTx(2)), StatusFailed, CodeAccountNotFound},
		{"another owner reusing the owner's key", debitCmd(acctA, 10, withOwner(bob), withKey("k1")), StatusFailed, CodeAccountNotFound},
		{"debit of an account with no owner", debitCmd(acctC, 10, withOwner(alice), withTx(3)), StatusFailed, CodeAccountNotFound},
		{"debit of a missing account", debitCmd(uuid.MustParse("0190f1a2-0000-7000-8000-0000000000ff"), 10, withOwner(alice)), StatusFailed, CodeAccountNotFound},
		{"another owner's transfer", transferCmd(acctA, acctB, 10, withOwner(bob), withTx(4)), StatusFailed, CodeAccountNotFound},
		{"owner's transfer to another owner", transferCmd(acctA, acctB, 10, withOwner(alice), withTx(5)), StatusPending, OK},
		{"a debit with no owner named (a teller)", debitCmd(acctA, 10, withTx(6)), StatusCompleted, OK},
	}
	w := world{}
	w.apply(openCmd(acctA, "USD", 0, withOwner(alice)))
	w.apply(openCmd(acctB, "USD", 0, withOwner(bob)))
	w.apply(openCmd(acctC, "USD", 0))
	if got := w.get(acctA).Owner; got != alice {
		t.Fatalf("owner after open: %q", got)
	}
	w.apply(creditCmd(acctA, 1000))
	w.apply(creditCmd(acctC, 1000))
	if e := w.apply(debitCmd(acctA, 10, withOwner(alice), withKey("k1"))); e.Result.Status != StatusCompleted {
		t.Fatalf("owner's keyed debit: %+v", e.Result)
	}
	for _, tt := range tests {
		before := scalars(w.get(tt.cmd.AccountID))
		e := w.apply(tt.cmd)
		if e.Result.Status != tt.status || e.Result.Code != tt.code {
			t.Errorf("%s: %v %v; want %v %v", tt.name, e.Result.Status, e.Result.Code, tt.status, tt.code)
		}
		if tt.code == CodeAccountNotFound && (!e.Result.Unrecorded || e.Changed || e.Emit != nil || scalars(w.get(tt.cmd.AccountID)) != before) {
			t.Errorf("%s: the refusal changed something or left a row: %+v", tt.name, e)
		}
		if e.Emit != nil {
			if e.Emit.Owner != "" {
				t.Errorf("%s: the credit leg carries the owner %q", tt.name, e.Emit.Owner)
			}
			if c := w.apply(*e.Emit); c.Result.Status != StatusCompleted {
				t.Errorf("%s: credit leg: %+v", tt.name, c.Result)
			}
		}
	}
	if a, b := w.get(acctA).Balance, w.get(acctB).Balance; a != 1000-10-10-10-10 || b != 10 {
		t.Fatalf("balances A %d B %d", a, b)
	}
	// A retry of the owner's transfer resends a leg without the owner.
	retry := transferCmd(acctA, acctB, 10, withOwner(alice), withKey("t1"))
	first := w.apply(retry)
	again := w.apply(retry)
	if !again.Result.Replayed || again.Emit == nil || again.Emit.Owner != "" || first.Emit.Owner != "" {
		t.Fatalf("retried transfer: %+v emit %+v", again.Result, again.Emit)
	}
}

func TestDedupeKey(t *testing.T) {
	tx := uuid.MustParse("00112233-4455-6677-8899-aabbccddeeff")
	tests := []struct {
		c    Command
		want string
	}{
		{Command{Kind: KindCredit, TxID: tx, IdemKey: "client-key"}, "client-key"},
		// Without a client key, the transaction ID and kind.
		{Command{Kind: KindDebit, TxID: tx}, "#300112233445566778899aabbccddeeff"},
		{Command{Kind: KindTransferDebit, TxID: tx, IdemKey: "k"}, "k"},
		{Command{Kind: KindOpen, TxID: tx, IdemKey: "k"}, "k"},
		// Legs ignore any client key and dedupe on transfer ID and leg.
		{Command{Kind: KindTransferCredit, TxID: tx, IdemKey: "k"}, "#500112233445566778899aabbccddeeff"},
		{Command{Kind: KindTransferRefund, TxID: tx}, "#600112233445566778899aabbccddeeff"},
	}
	for _, tt := range tests {
		if got := DedupeKey(&tt.c); got != tt.want {
			t.Errorf("DedupeKey(%v %s) = %q; want %q", tt.c.Kind, tt.c.IdemKey, got, tt.want)
		}
	}
	// Leg keys start with '#' and have a fixed length.
	if k := legKey(KindTransferCredit, uuid.Nil); !strings.HasPrefix(k, "#") || len(k) != 34 {
		t.Errorf("legKey = %q", k)
	}
}

func TestStatusNames(t *testing.T) {
	for s, name := range map[TxStatus]string{StatusCompleted: "completed", StatusFailed: "failed", StatusPending: "pending", StatusRefunded: "refunded"} {
		if s.String() != name || ParseTxStatus(name) != s {
			t.Errorf("TxStatus %d: String %q, Parse(%q) = %d", s, s.String(), name, ParseTxStatus(name))
		}
	}
	if TxStatus(0).String() != "" || TxStatus(9).String() != "" || ParseTxStatus("") != 0 || ParseTxStatus("done") != 0 {
		t.Error("unknown TxStatus values are not empty / zero")
	}
	for s, name := range map[AccountStatus]string{AccountActive: "active", AccountFrozen: "frozen", AccountClosed: "closed"} {
		if s.String() != name || ParseAccountStatus(name) != s {
			t.Errorf("AccountStatus %d: String %q, Parse(%q) = %d", s, s.String(), name, ParseAccountStatus(name))
		}
	}
	if AccountStatus(9).String() != "" || ParseAccountStatus("open") != 0 {
		t.Error("unknown AccountStatus values are not empty / zero")
	}
}

// TestResentLegTakesTheRecord: a retry is matched to the first request by
// its request hash alone. A forged collision (same key and hash, another
// destination and amount) must not move other money: the re-sent credit
// leg goes to the recorded destination with the recorded amount.
func TestResentLegTakesTheRecord(t *testing.T) {
	w := world{}
	for _, c := range []Command{openCmd(acctA, "USD", 0), creditCmd(acctA, 1000, withKey("fund"))} {
		Apply(w.get(c.AccountID), &c)
	}
	first := transferCmd(acctA, acctB, 1, withKey("k"), withTx(300))
	if e := Apply(w.get(acctA), &first); e.Emit == nil || e.Emit.AccountID != acctB {
		t.Fatalf("first transfer: %+v", e)
	}
	forged := transferCmd(acctA, acctC, 900, withKey("k"), withTx(301), withTime(t0+5))
	forged.RequestHash = first.RequestHash // the collision
	e := Apply(w.get(acctA), &forged)
	if !e.Result.Replayed || e.Emit == nil {
		t.Fatalf("forged retry: %+v", e)
	}
	if leg := e.Emit; leg.AccountID != acctB || leg.Counterparty != acctA || leg.Amount != 1 || leg.Currency != "USD" || leg.TxID != first.TxID {
		t.Fatalf("re-sent leg %+v: want 1 USD to %v under %v", leg, acctB, first.TxID)
	}
	if w.get(acctA).Balance != 999 {
		t.Fatalf("source balance %d, want 999", w.get(acctA).Balance)
	}
}
