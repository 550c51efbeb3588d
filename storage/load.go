package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const accountColumns = `account_id, customer_id, account_type, currency, status, overdraft_limit,
       balance, version, seq, created_at, updated_at, owner_id`

func scanAccount(row pgx.Row) (ledger.Account, error) {
	var (
		a                ledger.Account
		id               [16]byte
		status           string
		created, updated time.Time
	)
	err := row.Scan(&id, &a.CustomerID, &a.Type, &a.Currency, &status, &a.OverdraftLimit,
		&a.Balance, &a.Version, &a.Seq, &created, &updated, &a.Owner)
	if err != nil {
		return a, err
	}
	a.ID = id
	a.Exists = true
	a.Status = ledger.ParseAccountStatus(status)
	a.CreatedUs, a.UpdatedUs = created.UnixMicro(), updated.UnixMicro()
	return a, nil
}

// LoadAccounts loads the accounts with the given IDs, each with the
// idempotency keys it recorded since sinceUs (newest first, at most keysCap
// of them), in two queries whatever the number of IDs. IDs with no row are
// returned as non-existent accounts with a complete, empty key index.
func (s *Store) LoadAccounts(ctx context.Context, ids []uuid.UUID, sinceUs int64, keysCap int) (map[uuid.UUID]*ledger.Account, error) {
	out := make(map[uuid.UUID]*ledger.Account, len(ids))
	raw := make([][16]byte, len(ids))
	for i, id := range ids {
		raw[i] = id
		out[id] = &ledger.Account{ID: id, Keys: ledger.NewKeyIndex(keysCap, true)}
	}
	rows, err := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM accounts WHERE account_id = ANY($1)`, raw)
	if err != nil {
		return nil, fmt.Errorf("storage: load accounts: %w", err)
	}
	var found []uuid.UUID
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: load accounts: %w", err)
		}
		found = append(found, a.ID)
		*out[a.ID] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: load accounts: %w", err)
	}
	if err := s.loadKeys(ctx, found, out, sinceUs, keysCap); err != nil {
		return nil, err
	}
	if err := s.loadTombstones(ctx, raw, out, sinceUs); err != nil {
		return nil, err
	}
	return out, nil
}

// loadKeys fills the key index of each found account with its keys recorded
// since sinceUs, newest first, at most keysCap of them.
func (s *Store) loadKeys(ctx context.Context, found []uuid.UUID, out map[uuid.UUID]*ledger.Account, sinceUs int64, keysCap int) error {
	if len(found) == 0 {
		return nil
	}
	raw := make([][16]byte, 0, len(found))
	for _, id := range found {
		raw = append(raw, id)
	}
	// keysCap+1 rows tell whether the window holds more keys than fit.
	rows, err := s.pool.Query(ctx, `
SELECT t.account_id, t.idem_key, t.request_hash, t.counterparty_id, `+resultColumns+`
FROM unnest($1::uuid[]) AS a(id)
CROSS JOIN LATERAL (
    SELECT * FROM transactions
    WHERE account_id = a.id AND idem_key IS NOT NULL AND created_at >= $2
    ORDER BY seq DESC LIMIT $3) AS t`, raw, time.UnixMicro(sinceUs), keysCap+1)
	if err != nil {
		return fmt.Errorf("storage: load keys: %w", err)
	}
	defer rows.Close()
	type keyed struct {
		key  string
		hash uint64
		r    ledger.Result
	}
	perAccount := make(map[uuid.UUID][]keyed)
	for rows.Next() {
		var (
			id           [16]byte
			k            keyed
			hash         int64
			counterparty *[16]byte
		)
		r, err := scanResult(rows, &id, &k.key, &hash, &counterparty)
		if err != nil {
			return fmt.Errorf("storage: load keys: %w", err)
		}
		r.AccountID = id
		if counterparty != nil {
			r.Counterparty = *counterparty
		}
		k.hash, k.r = uint64(hash), r
		perAccount[id] = append(perAccount[id], k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: load keys: %w", err)
	}
	for _, id := range found {
		acc := out[id]
		ks := perAccount[id]
		complete := len(ks) <= keysCap
		if !complete {
			ks = ks[:keysCap]
		}
		acc.Keys = ledger.NewKeyIndex(keysCap, complete)
		// Oldest first, so the ring evicts in arrival order.
		for i := len(ks) - 1; i >= 0; i-- {
			r := ks[i].r
			r.Available = r.Balance + acc.OverdraftLimit
			acc.Keys.Remember(ks[i].key, ks[i].hash, r)
		}
	}
	return nil
}

// resultColumns rebuild a ledger.Result; see scanResult.
const resultColumns = `t.transaction_id, t.kind, t.status, t.code, t.amount, t.delta, t.currency,
       t.balance_after, t.version_after, t.seq, t.created_at`

// scanResult scans resultColumns after the given leading destinations.
func scanResult(row pgx.Row, lead ...any) (ledger.Result, error) {
	var (
		r                  ledger.Result
		tx                 [16]byte
		kind, status, code string
		created            time.Time
	)
	dst := append(lead, &tx, &kind, &status, &code, &r.Amount, &r.Delta, &r.Currency,
		&r.Balance, &r.Version, &r.Seq, &created)
	if err := row.Scan(dst...); err != nil {
		return r, err
	}
	r.TxID = tx
	r.Kind = ledger.ParseKind(kind)
	r.Status = ledger.ParseTxStatus(status)
	if code != "" {
		c, ok := ledger.ParseCode(code)
		if !ok {
			c = ledger.CodeInternal
		}
		r.Code = c
	}
	r.TimestampUs = created.UnixMicro()
	return r, nil
}

// LookupKeys finds the recorded outcomes of idempotency keys (or leg keys)
// on an account since sinceUs, the newest per key; keys never used are
// absent from the map. It backs an account whose in-memory key index is
// incomplete, one query per account per fetch batch.
func (s *Store) LookupKeys(ctx context.Context, account uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (t.idem_key) t.idem_key, t.request_hash, t.counterparty_id, `+resultColumns+`
FROM transactions t WHERE t.account_id = $1 AND t.idem_key = ANY($2) AND t.created_at >= $3
ORDER BY t.idem_key, t.seq DESC`, [16]byte(account), keys, time.UnixMicro(sinceUs))
	if err != nil {
		return nil, fmt.Errorf("storage: lookup keys: %w", err)
	}
	defer rows.Close()
	out := make(map[string]ledger.KeyRecord)
	for rows.Next() {
		var key string
		var h int64
		var counterparty *[16]byte
		r, err := scanResult(rows, &key, &h, &counterparty)
		if err != nil {
			return nil, fmt.Errorf("storage: lookup keys: %w", err)
		}
		r.AccountID = account
		if counterparty != nil {
			r.Counterparty = *counterparty
		}
		out[key] = ledger.KeyRecord{Hash: uint64(h), Result: r}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: lookup keys: %w", err)
	}
	// Leg keys may also be remembered as tombstones: refusals by an
	// account that did not exist yet, which left no transactions row.
	// They are few (a leg to a missing account), so the account's
	// tombstones in the window are read and matched here.
	legs := false
	for _, k := range keys {
		if strings.HasPrefix(k, "#") {
			legs = true
			break
		}
	}
	if !legs {
		return out, nil
	}
	trows, err := s.pool.Query(ctx, `SELECT `+tombstoneColumns+`
FROM leg_refusals WHERE account_id = $1 AND created_at >= $2`, [16]byte(account), time.UnixMicro(sinceUs))
	if err != nil {
		return nil, fmt.Errorf("storage: lookup leg refusals: %w", err)
	}
	defer trows.Close()
	want := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		want[k] = struct{}{}
	}
	for trows.Next() {
		key, hash, r, err := scanTombstone(trows)
		if err != nil {
			return nil, fmt.Errorf("storage: lookup leg refusals: %w", err)
		}
		if _, ok := want[key]; !ok {
			continue
		}
		if _, recorded := out[key]; !recorded {
			out[key] = ledger.KeyRecord{Hash: hash, Result: r}
		}
	}
	if err := trows.Err(); err != nil {
		return nil, fmt.Errorf("storage: lookup leg refusals: %w", err)
	}
	return out, nil
}

// loadTombstones remembers, in each account's key index, the transfer legs
// it refused before it existed (see ledger.Result.Tombstone).
func (s *Store) loadTombstones(ctx context.Context, ids [][16]byte, out map[uuid.UUID]*ledger.Account, sinceUs int64) error {
	rows, err := s.pool.Query(ctx, `SELECT `+tombstoneColumns+`
FROM leg_refusals WHERE account_id = ANY($1) AND created_at >= $2 ORDER BY created_at`, ids, time.UnixMicro(sinceUs))
	if err != nil {
		return fmt.Errorf("storage: load leg refusals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		key, hash, r, err := scanTombstone(rows)
		if err != nil {
			return fmt.Errorf("storage: load leg refusals: %w", err)
		}
		out[r.AccountID].Keys.Remember(key, hash, r)
	}
	return rows.Err()
}

// tombstoneColumns rebuild a leg refusal's key and outcome; see scanTombstone.
const tombstoneColumns = `account_id, transaction_id, kind, code, amount, currency, request_hash, created_at`

// scanTombstone scans tombstoneColumns into the leg's dedupe key, request
// hash and outcome, as ledger.Apply recorded them.
func scanTombstone(row pgx.Row) (key string, hash uint64, r ledger.Result, err error) {
	var (
		id, tx     [16]byte
		kind, code string
		h          int64
		created    time.Time
	)
	if err := row.Scan(&id, &tx, &kind, &code, &r.Amount, &r.Currency, &h, &created); err != nil {
		return "", 0, r, err
	}
	r.AccountID, r.TxID, r.Kind, r.Status = id, tx, ledger.ParseKind(kind), ledger.StatusFailed
	r.Code, _ = ledger.ParseCode(code)
	r.TimestampUs, r.Unrecorded, r.Tombstone = created.UnixMicro(), true, true
	return ledger.DedupeKey(&ledger.Command{Kind: r.Kind, TxID: r.TxID}), uint64(h), r, nil
}
