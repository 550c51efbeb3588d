package baseline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// account is a row of baseline_accounts.
type account struct {
	ID         uuid.UUID
	CustomerID string
	Type       string
	Currency   string
	Overdraft  int64
	Balance    int64
	Version    int64
	IdemKey    *string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// operation is a credit, debit or transfer as requested.
type operation struct {
	Kind         string    // kindCredit, kindDebit, kindTransfer
	Account      uuid.UUID // the account; a transfer's source
	Counterparty uuid.UUID // a transfer's destination
	Amount       int64
	Currency     string
	Description  string
	ReferenceID  string
	IdemKey      string // "" = not idempotent
}

// sameRequest reports whether o asks for what p asked for: the rule for
// telling a retry from a reused key.
func (o *operation) sameRequest(p *operation) bool {
	return o.Kind == p.Kind && o.Account == p.Account && o.Counterparty == p.Counterparty &&
		o.Amount == p.Amount && o.Currency == p.Currency
}

// result is an operation's recorded outcome.
type result struct {
	operation
	TxID         uuid.UUID
	Code         ledger.Code // OK, or the refusal
	BalanceAfter int64       // of Account
	Overdraft    int64       // of Account
	At           time.Time
	Replayed     bool
}

// SQL. Every statement runs through pgx's statement cache, so each is
// parsed and planned once per connection.
const (
	// Locks in account ID order, so two transfers over the same pair in
	// opposite directions can never deadlock: the sort runs below the
	// row-locking step.
	sqlLock = `SELECT account_id, currency, balance, overdraft_limit FROM baseline_accounts
WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE`
	sqlInsertTx = `INSERT INTO baseline_transactions (transaction_id, kind, account_id, counterparty_id, amount,
currency, status, code, balance_after, description, reference_id, idem_key, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	sqlUpdateOne = `UPDATE baseline_accounts SET balance = $2, version = version + 1, updated_at = $3
WHERE account_id = $1`
	sqlUpdateTwo = `UPDATE baseline_accounts AS a SET balance = v.balance, version = a.version + 1, updated_at = $5
FROM (VALUES ($1::uuid, $2::bigint), ($3::uuid, $4::bigint)) AS v(id, balance) WHERE a.account_id = v.id`
	sqlByIdemKey = `SELECT t.transaction_id, t.kind, t.account_id, t.counterparty_id, t.amount, t.currency, t.code,
t.balance_after, t.description, t.reference_id, t.created_at, a.overdraft_limit
FROM baseline_transactions t JOIN baseline_accounts a USING (account_id) WHERE t.idem_key = $1`
	sqlOpen = `INSERT INTO baseline_accounts (account_id, customer_id, account_type, currency, overdraft_limit,
idem_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (account_id) DO NOTHING`
	sqlAccount = `SELECT account_id, customer_id, account_type, currency, overdraft_limit, balance, version, idem_key,
created_at, updated_at FROM baseline_accounts WHERE account_id = $1`
	sqlBalance = `SELECT currency, balance, overdraft_limit, version FROM baseline_accounts WHERE account_id = $1`
)

// opError turns an operational error into the API's answer: a timeout
// (the pool or PostgreSQL too busy to answer in time) is 503, to be
// retried with the same key; anything else is 500 and logged.
func (s *Server) opError(what string, err error) *apiError {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return bad(ledger.CodeUnavailable, what+" timed out; retry with the same idempotency key")
	}
	s.log.Warn("baseline operation failed", "op", what, "err", err)
	return bad(ledger.CodeInternal, what+" failed; retry with the same idempotency key")
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// apply runs a credit, debit or transfer as one transaction in two
// pipelined round trips:
//
//  1. BEGIN; SELECT … FOR UPDATE the accounts in ID order.
//  2. INSERT the transaction row; UPDATE the balances (unless refused);
//     COMMIT.
//
// Between them Go checks existence, currency and funds under the locks. A
// refusal of an existing account is recorded (status failed) so that a
// retry returns it; a missing account is not (nothing to attach it to),
// as in Bursar. The INSERT goes first in round trip 2 so that a reused
// idempotency key aborts the transaction before any balance changes; the
// unique index then says the key was used, and the original is returned.
func (s *Server) apply(ctx context.Context, op *operation) (*result, *apiError) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.opError(op.Kind, err)
	}
	defer conn.Release()
	res, aerr, err := s.applyOn(ctx, conn.Conn(), op)
	switch {
	case err == nil:
		return res, aerr
	case isUniqueViolation(err) && op.IdemKey != "":
		return s.replay(ctx, conn.Conn(), op)
	}
	return nil, s.opError(op.Kind, err)
}

// applyOn is apply on one connection. It returns an operational error
// (err), or the outcome: a result or a refusal that is not recorded.
func (s *Server) applyOn(ctx context.Context, conn *pgx.Conn, op *operation) (res *result, aerr *apiError, err error) {
	open := false // a transaction is open on conn
	defer func() {
		if open {
			// The request's context may be what failed; the rollback gets
			// its own. If it fails too, the pool discards the connection
			// (it is not idle), so nothing leaks into the next request.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(rctx, "ROLLBACK")
		}
	}()

	ids := []uuid.UUID{op.Account}
	if op.Kind == kindTransfer {
		ids = append(ids, op.Counterparty)
	}
	type locked struct {
		currency           string
		balance, overdraft int64
		found              bool
	}
	var src, dst locked

	// Round trip 1: BEGIN and lock.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLock, ids)
	br := conn.SendBatch(ctx, b)
	open = true
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, nil, err
	}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var id uuid.UUID
			var l locked
			if err = rows.Scan(&id, &l.currency, &l.balance, &l.overdraft); err != nil {
				break
			}
			l.found = true
			if id == op.Account {
				src = l
			} else {
				dst = l
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	if st := conn.PgConn().TxStatus(); st != 'T' {
		// The locks are only held inside the explicit transaction; without
		// it the checks below would race.
		return nil, nil, fmt.Errorf("baseline: expected an open transaction after BEGIN, status %q", st)
	}

	// Decide under the locks.
	switch {
	case !src.found:
		return nil, bad(ledger.CodeAccountNotFound, "no account "+op.Account.String()), nil
	case op.Kind == kindTransfer && !dst.found:
		return nil, bad(ledger.CodeAccountNotFound, "no account "+op.Counterparty.String()), nil
	}
	now := time.Now()
	res = &result{operation: *op, TxID: uuid.New(), At: now, Overdraft: src.overdraft, BalanceAfter: src.balance}
	srcAfter, dstAfter := src.balance, dst.balance
	switch {
	case src.currency != op.Currency || (op.Kind == kindTransfer && dst.currency != op.Currency):
		res.Code = ledger.CodeCurrencyMismatch
	case op.Kind == kindCredit:
		if src.balance > ledger.BalanceMax-op.Amount {
			res.Code = ledger.CodeBalanceLimitExceeded
		} else {
			srcAfter += op.Amount
		}
	case src.balance-op.Amount < -src.overdraft: // debit, transfer
		res.Code = ledger.CodeInsufficientFunds
	case op.Kind == kindTransfer && dst.balance > ledger.BalanceMax-op.Amount:
		res.Code = ledger.CodeBalanceLimitExceeded
	default:
		srcAfter -= op.Amount
		dstAfter += op.Amount
	}
	status := "completed"
	if res.Code != ledger.OK {
		status = "failed"
	} else {
		res.BalanceAfter = srcAfter
	}

	// Round trip 2: record, update, commit.
	var counterparty, idem any
	if op.Kind == kindTransfer {
		counterparty = op.Counterparty
	}
	if op.IdemKey != "" {
		idem = op.IdemKey
	}
	b = &pgx.Batch{}
	b.Queue(sqlInsertTx, res.TxID, op.Kind, op.Account, counterparty, op.Amount, op.Currency, status,
		res.Code.String(), res.BalanceAfter, op.Description, op.ReferenceID, idem, now)
	if res.Code == ledger.OK {
		if op.Kind == kindTransfer {
			b.Queue(sqlUpdateTwo, op.Account, srcAfter, op.Counterparty, dstAfter, now)
		} else {
			b.Queue(sqlUpdateOne, op.Account, srcAfter, now)
		}
	}
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	open = false
	return res, nil, nil
}

// replay answers a retry: the key's original result when the request is
// the same, IDEMPOTENCY_KEY_REUSED when it is not.
func (s *Server) replay(ctx context.Context, conn *pgx.Conn, op *operation) (*result, *apiError) {
	var r result
	var code string
	var counterparty *uuid.UUID
	err := conn.QueryRow(ctx, sqlByIdemKey, op.IdemKey).Scan(&r.TxID, &r.Kind, &r.Account, &counterparty, &r.Amount,
		&r.Currency, &code, &r.BalanceAfter, &r.Description, &r.ReferenceID, &r.At, &r.Overdraft)
	if err != nil {
		return nil, s.opError(op.Kind, err)
	}
	if counterparty != nil {
		r.Counterparty = *counterparty
	}
	if !r.sameRequest(op) {
		return nil, bad(ledger.CodeIdempotencyKeyReused, "idempotency key "+op.IdemKey+" was used for a different request (transaction "+r.TxID.String()+")")
	}
	c, ok := ledger.ParseCode(code)
	if !ok {
		return nil, s.opError(op.Kind, errors.New("unknown stored code "+code))
	}
	r.Code, r.Replayed, r.IdemKey = c, true, op.IdemKey
	return &r, nil
}

// open inserts an account. An existing account with the same ID is a
// replay when it was opened with the same idempotency key and attributes,
// else ACCOUNT_EXISTS. One statement: its implicit transaction commits
// synchronously like the others.
func (s *Server) open(ctx context.Context, a account, key string) (account, bool, *apiError) {
	var idem any
	if key != "" {
		idem = key
	}
	now := time.Now()
	tag, err := s.pool.Exec(ctx, sqlOpen, a.ID, a.CustomerID, a.Type, a.Currency, a.Overdraft, idem, now)
	if err != nil {
		return a, false, s.opError("open", err)
	}
	if tag.RowsAffected() == 1 {
		a.CreatedAt, a.UpdatedAt = now, now
		return a, false, nil
	}
	var got account
	err = s.pool.QueryRow(ctx, sqlAccount, a.ID).Scan(&got.ID, &got.CustomerID, &got.Type, &got.Currency,
		&got.Overdraft, &got.Balance, &got.Version, &got.IdemKey, &got.CreatedAt, &got.UpdatedAt)
	if err != nil {
		return a, false, s.opError("open", err)
	}
	if key != "" && got.IdemKey != nil && *got.IdemKey == key && got.CustomerID == a.CustomerID &&
		got.Type == a.Type && got.Currency == a.Currency && got.Overdraft == a.Overdraft {
		return got, true, nil
	}
	return a, false, bad(ledger.CodeAccountExists, "an account "+a.ID.String()+" already exists")
}

// balance reads an account's committed balance: one statement, no
// transaction of its own beyond the implicit one.
func (s *Server) balance(ctx context.Context, id uuid.UUID) (account, *apiError) {
	a := account{ID: id}
	err := s.pool.QueryRow(ctx, sqlBalance, id).Scan(&a.Currency, &a.Balance, &a.Overdraft, &a.Version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return a, bad(ledger.CodeAccountNotFound, "no account "+id.String())
	case err != nil:
		return a, s.opError("balance", err)
	}
	return a, nil
}
