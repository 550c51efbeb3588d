package ledger

import (
	"github.com/google/uuid"
)

// TxStatus is the outcome of one applied command.
type TxStatus uint8

const (
	StatusCompleted TxStatus = iota + 1
	StatusFailed
	StatusPending  // a transfer's debit leg: money left the source, credit leg in flight
	StatusRefunded // a transfer whose credit leg was refused and refunded
)

var statusNames = [...]string{"", "completed", "failed", "pending", "refunded"}

func (s TxStatus) String() string {
	if int(s) >= len(statusNames) {
		return ""
	}
	return statusNames[s]
}

// ParseTxStatus is the inverse of TxStatus.String.
func ParseTxStatus(s string) TxStatus {
	for i := range statusNames[1:] {
		if statusNames[i+1] == s {
			return TxStatus(i + 1)
		}
	}
	return 0
}

// IdempotencyWindowUs is how long, in record time, an idempotency key keeps
// returning its first result: 24 hours.
const IdempotencyWindowUs int64 = 24 * 3600 * 1_000_000

// Result is what applying a command produced. It is the answer to the
// client and, unless Replayed or Unrecorded, one row in the transactions
// table.
type Result struct {
	TxID      uuid.UUID
	Kind      Kind
	AccountID uuid.UUID
	// Counterparty is the other account of a transfer leg (zero
	// otherwise), as recorded: a retried transfer re-sends its credit leg
	// to it, never to the account a retry names (the request hash is not
	// proof against a forged collision). Not in the wire encoding: answers
	// do not need it.
	Counterparty uuid.UUID
	Status       TxStatus
	Code         Code
	Amount       int64
	Delta        int64 // signed change to the balance (0 when failed)
	Currency     string
	Balance      int64 // balance after the command
	Available    int64 // balance + overdraft limit after the command
	Version      int64 // account version after the command
	Seq          int64 // account-local sequence of this transaction row
	TimestampUs  int64
	// Replayed is set when an idempotency key or a leg ID matched an earlier
	// command: the original outcome is returned and nothing is applied.
	Replayed bool
	// Unrecorded is set for refusals that leave no row: an unknown account, or
	// a reused key with a different request.
	Unrecorded bool
	// Tombstone marks an unrecorded refusal of a transfer leg by an account
	// that does not exist. It is still remembered (and stored apart from the
	// transactions), so that a replayed copy of the leg arriving after the
	// account is opened is recognized instead of creating money.
	Tombstone bool
}

// AccountStatus is the lifecycle state of an account.
type AccountStatus uint8

const (
	AccountActive AccountStatus = iota + 1
	AccountFrozen
	AccountClosed
)

var accountStatusNames = [...]string{"", "active", "frozen", "closed"}

func (s AccountStatus) String() string {
	if int(s) >= len(accountStatusNames) {
		return ""
	}
	return accountStatusNames[s]
}

// ParseAccountStatus is the inverse of AccountStatus.String.
func ParseAccountStatus(s string) AccountStatus {
	for i := range accountStatusNames[1:] {
		if accountStatusNames[i+1] == s {
			return AccountStatus(i + 1)
		}
	}
	return 0
}

// Account is the in-memory state of one account, owned by its actor.
type Account struct {
	ID             uuid.UUID
	Exists         bool
	CustomerID     string
	Owner          string // the owning user's ID, "" if none (see Command.Owner)
	Type           string
	Currency       string
	Status         AccountStatus
	OverdraftLimit int64
	Balance        int64
	Version        int64 // bumps on every balance change and on open
	Seq            int64 // bumps on every recorded transaction row
	CreatedUs      int64
	UpdatedUs      int64

	Keys KeyIndex
}

// Available is the amount the account can still pay out.
func (a *Account) Available() int64 { return a.Balance + a.OverdraftLimit }

// Effect is the output of one apply: the result, the account state to
// persist (when changed), and at most one record to emit to another
// account (a transfer's credit leg or refund).
type Effect struct {
	Result  Result
	Changed bool     // account row changed (open, balance, version, seq)
	Emit    *Command // credit leg or refund, to be produced to Kafka
}

// legKey is the dedupe key of a transfer leg on the account that applies it.
// It starts with '#', which client keys may not contain, so the two
// namespaces never collide.
func legKey(k Kind, tx uuid.UUID) string {
	var b [1 + 1 + 32]byte
	b[0] = '#'
	b[1] = byte('0' + k)
	const hex = "0123456789abcdef"
	for i, x := range tx {
		b[2+2*i] = hex[x>>4]
		b[3+2*i] = hex[x&0xf]
	}
	return string(b[:])
}

// DedupeKey returns the key under which c's result is remembered on its
// account: the client's idempotency key when there is one, else the
// transaction ID and kind. Every record is therefore applied at most once,
// even when Kafka holds it twice (a producer retry, a replayed leg); legs
// always use their transfer ID, which is their stable identity (rule 4).
func DedupeKey(c *Command) string {
	switch c.Kind {
	case KindTransferCredit, KindTransferRefund:
		return legKey(c.Kind, c.TxID)
	}
	if c.IdemKey == "" {
		return legKey(c.Kind, c.TxID)
	}
	return c.IdemKey
}

// Apply applies c to a and returns its effect. It depends only on a and c:
// no clock, no randomness, no map iteration. The caller has made sure a.Keys
// holds every key that matters for c (see KeyIndex.Complete).
func Apply(a *Account, c *Command) Effect {
	if c.Owner != "" && c.Kind != KindOpen && (!a.Exists || a.Owner != c.Owner) {
		// Checked first, before any idempotency key: a customer's key
		// must not fetch another owner's result.
		return refuse(a, c, CodeAccountNotFound, false)
	}
	key := DedupeKey(c)
	if key != "" {
		if prev, ok := a.Keys.Lookup(key, c.TimestampUs); ok {
			if prev.hash != c.RequestHash {
				return refuse(a, c, CodeIdempotencyKeyReused, false)
			}
			r := prev.result
			r.Replayed = true
			e := Effect{Result: r}
			if c.Kind == KindTransferDebit && r.Kind == KindTransferDebit && r.Status == StatusPending && r.Counterparty != uuid.Nil {
				// A retried transfer whose debit was applied: its outcome is
				// the credit leg's, in the destination's history. Send the leg
				// again, carrying the retry's reply address: the destination
				// deduplicates it (rule 4) and answers with the leg's recorded
				// outcome, or applies it if the first copy is still on its
				// way (the first copy is then the duplicate).
				e.Emit = resentLeg(c, &r)
			}
			return e
		}
	}
	var e Effect
	switch c.Kind {
	case KindOpen:
		e = applyOpen(a, c)
	case KindCredit:
		e = applyCredit(a, c)
	case KindDebit:
		e = applyDebit(a, c, StatusCompleted)
	case KindTransferDebit:
		e = applyTransferDebit(a, c)
	case KindTransferCredit:
		e = applyTransferCredit(a, c)
	case KindTransferRefund:
		e = applyRefund(a, c)
	default:
		e = refuse(a, c, CodeMalformedRequest, false)
	}
	if key != "" && (!e.Result.Unrecorded || e.Result.Tombstone) {
		a.Keys.Remember(key, c.RequestHash, e.Result)
	}
	return e
}

// refuse builds a failed result. Recorded refusals take a sequence number
// and become a transaction row so that a retry returns the same failure.
func refuse(a *Account, c *Command, code Code, record bool) Effect {
	r := Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Counterparty: c.Counterparty, Status: StatusFailed, Code: code,
		Amount: c.Amount, Currency: c.Currency, TimestampUs: c.TimestampUs,
		Balance: a.Balance, Available: a.Available(), Version: a.Version,
		Unrecorded: !record,
	}
	if record {
		a.Seq++
		a.UpdatedUs = c.TimestampUs
		r.Seq = a.Seq
		return Effect{Result: r, Changed: true}
	}
	return Effect{Result: r}
}

// move changes the balance by delta and records a completed row.
func move(a *Account, c *Command, delta int64, status TxStatus) Effect {
	a.Balance += delta
	a.Version++
	a.Seq++
	a.UpdatedUs = c.TimestampUs
	return Effect{Changed: true, Result: Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Counterparty: c.Counterparty, Status: status,
		Amount: c.Amount, Delta: delta, Currency: c.Currency, TimestampUs: c.TimestampUs,
		Balance: a.Balance, Available: a.Available(), Version: a.Version, Seq: a.Seq,
	}}
}

func applyOpen(a *Account, c *Command) Effect {
	if a.Exists {
		return refuse(a, c, CodeAccountExists, false)
	}
	if _, ok := CurrencyExponent(c.Currency); !ok || c.OverdraftLimit < 0 || c.OverdraftLimit > AmountMax {
		// Ingress validates these; a record that gets here anyway is refused.
		return refuse(a, c, CodeInvalidField, false)
	}
	*a = Account{
		ID: c.AccountID, Exists: true, CustomerID: c.CustomerID, Owner: c.Owner, Type: c.AccountType,
		Currency: c.Currency, Status: AccountActive, OverdraftLimit: c.OverdraftLimit,
		Version: 1, Seq: 1, CreatedUs: c.TimestampUs, UpdatedUs: c.TimestampUs, Keys: a.Keys,
	}
	return Effect{Changed: true, Result: Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Status: StatusCompleted,
		Currency: c.Currency, TimestampUs: c.TimestampUs, Available: a.Available(),
		Version: a.Version, Seq: a.Seq,
	}}
}

// precheck refuses commands that no account state could accept.
func precheck(a *Account, c *Command) (Code, bool) {
	switch {
	case !a.Exists:
		return CodeAccountNotFound, false
	case c.Amount <= 0 || c.Amount > AmountMax:
		return CodeInvalidAmount, false
	case a.Status != AccountActive:
		return CodeAccountClosed, true
	case c.Currency != a.Currency:
		return CodeCurrencyMismatch, true
	}
	return OK, false
}

func applyCredit(a *Account, c *Command) Effect {
	if code, rec := precheck(a, c); code != OK {
		return refuse(a, c, code, rec)
	}
	if a.Balance > BalanceMax-c.Amount {
		return refuse(a, c, CodeBalanceLimitExceeded, true)
	}
	return move(a, c, c.Amount, StatusCompleted)
}

func applyDebit(a *Account, c *Command, status TxStatus) Effect {
	if code, rec := precheck(a, c); code != OK {
		return refuse(a, c, code, rec)
	}
	if a.Balance-c.Amount < -a.OverdraftLimit {
		return refuse(a, c, CodeInsufficientFunds, true)
	}
	return move(a, c, -c.Amount, status)
}

func applyTransferDebit(a *Account, c *Command) Effect {
	if c.Counterparty == c.AccountID {
		if !a.Exists {
			return refuse(a, c, CodeAccountNotFound, false)
		}
		return refuse(a, c, CodeSameAccount, true)
	}
	e := applyDebit(a, c, StatusPending)
	if e.Result.Status == StatusPending {
		leg := *c
		leg.Kind = KindTransferCredit
		leg.AccountID, leg.Counterparty = c.Counterparty, c.AccountID
		leg.IdemKey, leg.Owner = "", ""
		e.Emit = &leg
	}
	return e
}

// resentLeg is the credit leg of the transfer whose debit r recorded, sent
// again for the retry c. Where the money goes and how much is taken from
// the record, not from the retry: the retry matched by its request hash,
// which a forged collision could fake. It keeps the transfer's ID, so it
// dedupes against the first copy, and takes the retry's timestamp and
// reply address: the first copy's timestamp is within the idempotency
// window of it (the retry found the debit), so the destination still finds
// the first copy's outcome.
func resentLeg(c *Command, r *Result) *Command {
	leg := *c
	leg.Kind = KindTransferCredit
	leg.TxID = r.TxID
	leg.AccountID, leg.Counterparty = r.Counterparty, r.AccountID
	leg.Amount, leg.Currency = r.Amount, r.Currency
	leg.IdemKey, leg.Owner = "", ""
	return &leg
}

func applyTransferCredit(a *Account, c *Command) Effect {
	code, rec := precheck(a, c)
	if code == OK && a.Balance > BalanceMax-c.Amount {
		code, rec = CodeBalanceLimitExceeded, true
	}
	if code != OK {
		// The money is already out of the source: send it back.
		e := refuse(a, c, code, rec && a.Exists)
		e.Result.Tombstone = !a.Exists
		refund := *c
		refund.Kind = KindTransferRefund
		refund.AccountID, refund.Counterparty = c.Counterparty, c.AccountID
		refund.FailCode = code
		e.Emit = &refund
		return e
	}
	return move(a, c, c.Amount, StatusCompleted)
}

func applyRefund(a *Account, c *Command) Effect {
	if !a.Exists {
		// The source existed when its debit leg ran and accounts are never
		// deleted, so this is a corrupt log: refuse without a row.
		return refuse(a, c, CodeAccountNotFound, false)
	}
	if c.Amount <= 0 || c.Amount > AmountMax {
		// Likewise corrupt (a debit leg moved a valid amount): moving it
		// would take money from the source. Refuse without a row.
		return refuse(a, c, CodeInvalidAmount, false)
	}
	// A refund returns money that left this account; it bypasses the status
	// and limit checks a client credit would get.
	e := move(a, c, c.Amount, StatusRefunded)
	e.Result.Code = c.FailCode
	return e
}
