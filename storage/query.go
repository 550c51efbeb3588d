package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TxRecord is a transactions row as the API shows it.
type TxRecord struct {
	ledger.Result
	Counterparty uuid.UUID
	Description  string
	ReferenceID  string
	Partition    int32
	Offset       int64
	CreatedBy    string // the principal that asked for it; "" if unknown
}

const recordColumns = `t.account_id, t.counterparty_id, t.description, t.reference_id, t.partition, t.kafka_offset, t.created_by, ` + resultColumns

func scanRecord(row pgx.Row) (TxRecord, error) {
	var (
		rec     TxRecord
		id      [16]byte
		counter *[16]byte
	)
	r, err := scanResult(row, &id, &counter, &rec.Description, &rec.ReferenceID, &rec.Partition, &rec.Offset, &rec.CreatedBy)
	if err != nil {
		return rec, err
	}
	rec.Result = r
	rec.AccountID = id
	if counter != nil {
		rec.Counterparty = *counter
	}
	return rec, nil
}

func collectRecords(rows pgx.Rows, err error) ([]TxRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TxRecord
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// Rows are append-only: a transfer's debit leg is written as pending when
// the money leaves the source and never rewritten (the audit counts on
// it). Reads show the leg's final status instead, derived from the legs
// recorded after it: completed once the credit leg completed, refunded
// once the credit leg was refused or the refund recorded, pending while
// the credit leg is in flight.

// debitLegStatus is the final status of a pending debit leg given the
// statuses of its transfer's credit leg and whether a refund is recorded
// (0 for a leg not recorded yet).
func debitLegStatus(credit ledger.TxStatus, refunded bool) ledger.TxStatus {
	switch {
	case refunded || credit == ledger.StatusFailed:
		return ledger.StatusRefunded
	case credit == ledger.StatusCompleted:
		return ledger.StatusCompleted
	default:
		return ledger.StatusPending
	}
}

// settleLegs gives the pending debit leg among one transaction's legs its
// final status.
func settleLegs(recs []TxRecord) {
	var (
		debit    *TxRecord
		credit   ledger.TxStatus
		refunded bool
	)
	for i := range recs {
		switch recs[i].Kind {
		case ledger.KindTransferDebit:
			debit = &recs[i]
		case ledger.KindTransferCredit:
			credit = recs[i].Status
		case ledger.KindTransferRefund:
			refunded = true
		}
	}
	if debit != nil && debit.Status == ledger.StatusPending {
		debit.Status = debitLegStatus(credit, refunded)
	}
}

// Transaction returns every recorded leg of a transaction ID (one for a
// credit or debit; up to three for a transfer), in order of kind, each
// with its final status.
func (s *Store) Transaction(ctx context.Context, id uuid.UUID) ([]TxRecord, error) {
	recs, err := collectRecords(s.pool.Query(ctx, `SELECT `+recordColumns+`
FROM transactions t WHERE t.transaction_id = $1 ORDER BY t.created_at, t.kind`, [16]byte(id)))
	if err != nil {
		return nil, fmt.Errorf("storage: transaction: %w", err)
	}
	settleLegs(recs)
	return recs, nil
}

// settleHistory gives the pending debit legs of a history page their
// final status, reading their transfers' later legs in one query (by the
// transactions_leg index).
func (s *Store) settleHistory(ctx context.Context, recs []TxRecord) error {
	var ids [][16]byte
	for i := range recs {
		if recs[i].Kind == ledger.KindTransferDebit && recs[i].Status == ledger.StatusPending {
			ids = append(ids, recs[i].TxID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	type later struct {
		credit   ledger.TxStatus
		refunded bool
	}
	legs := make(map[uuid.UUID]later, len(ids))
	rows, err := s.pool.Query(ctx, `SELECT transaction_id, kind, status FROM transactions
WHERE transaction_id = ANY($1) AND kind IN ('transfer_credit', 'transfer_refund')`, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id           [16]byte
			kind, status string
		)
		if err := rows.Scan(&id, &kind, &status); err != nil {
			return err
		}
		l := legs[id]
		if ledger.ParseKind(kind) == ledger.KindTransferRefund {
			l.refunded = true
		} else {
			l.credit = ledger.ParseTxStatus(status)
		}
		legs[id] = l
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range recs {
		if recs[i].Kind == ledger.KindTransferDebit && recs[i].Status == ledger.StatusPending {
			l := legs[recs[i].TxID]
			recs[i].Status = debitLegStatus(l.credit, l.refunded)
		}
	}
	return nil
}

// History returns up to limit money transactions of an account, each with
// its final status, newest first, with seq below beforeSeq (0 means from the newest). The next page
// starts before the last returned row's Seq.
func (s *Store) History(ctx context.Context, account uuid.UUID, beforeSeq int64, limit int) ([]TxRecord, error) {
	if beforeSeq <= 0 {
		beforeSeq = 1<<63 - 1
	}
	recs, err := collectRecords(s.pool.Query(ctx, `SELECT `+recordColumns+`
FROM transactions t WHERE t.account_id = $1 AND t.seq < $2 AND t.kind <> 'open'
ORDER BY t.seq DESC LIMIT $3`, [16]byte(account), beforeSeq, limit))
	if err != nil {
		return nil, fmt.Errorf("storage: history: %w", err)
	}
	if err := s.settleHistory(ctx, recs); err != nil {
		return nil, fmt.Errorf("storage: history: %w", err)
	}
	return recs, nil
}

// ErrNotFound is returned by point reads of a missing row.
var ErrNotFound = errors.New("storage: not found")

// Account reads one account row (without its keys).
func (s *Store) Account(ctx context.Context, id uuid.UUID) (ledger.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE account_id = $1`, [16]byte(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("storage: account: %w", err)
	}
	return a, nil
}

// AccountOwnersMax bounds the IDs of one AccountOwners call.
const AccountOwnersMax = 1000

// AccountOwners returns the owner ("" for none) of each stored account
// among ids; an ID with no row is absent from the map.
func (s *Store) AccountOwners(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error) {
	if len(ids) > AccountOwnersMax {
		return nil, fmt.Errorf("storage: account owners: %d IDs, at most %d", len(ids), AccountOwnersMax)
	}
	raw := make([][16]byte, len(ids))
	for i, id := range ids {
		raw[i] = id
	}
	rows, err := s.pool.Query(ctx, `SELECT account_id, owner_id FROM accounts WHERE account_id = ANY($1)`, raw)
	if err != nil {
		return nil, fmt.Errorf("storage: account owners: %w", err)
	}
	out := make(map[uuid.UUID]string, len(ids))
	for rows.Next() {
		var (
			id    [16]byte
			owner string
		)
		if err := rows.Scan(&id, &owner); err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: account owners: %w", err)
		}
		out[id] = owner
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: account owners: %w", err)
	}
	return out, nil
}
