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
}

const recordColumns = `t.account_id, t.counterparty_id, t.description, t.reference_id, t.partition, t.kafka_offset, ` + resultColumns

func scanRecord(row pgx.Row) (TxRecord, error) {
	var (
		rec     TxRecord
		id      [16]byte
		counter *[16]byte
	)
	r, err := scanResult(row, &id, &counter, &rec.Description, &rec.ReferenceID, &rec.Partition, &rec.Offset)
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

// Transaction returns every recorded leg of a transaction ID (one for a
// credit or debit; up to three for a transfer), in order of kind.
func (s *Store) Transaction(ctx context.Context, id uuid.UUID) ([]TxRecord, error) {
	recs, err := collectRecords(s.pool.Query(ctx, `SELECT `+recordColumns+`
FROM transactions t WHERE t.transaction_id = $1 ORDER BY t.created_at, t.kind`, [16]byte(id)))
	if err != nil {
		return nil, fmt.Errorf("storage: transaction: %w", err)
	}
	return recs, nil
}

// History returns up to limit money transactions of an account, newest
// first, with seq below beforeSeq (0 means from the newest). The next page
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
