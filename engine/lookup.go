package engine

import (
	"context"

	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

// unflushedFirst is the key lookup of account actors whose bounded key
// index is incomplete: it looks in the partition's unflushed rows first,
// then in PostgreSQL. PostgreSQL alone would miss an outcome the index
// evicted before its flush committed (a busy account with more than
// --keys-per-account keyed commands unflushed, while PostgreSQL is slow or
// down), and the retry, or a re-sent transfer leg, would be applied a
// second time.
//
// The scan is linear in the unflushed rows (at most twice
// --max-unflushed-rows), only for accounts whose index is incomplete, once
// per account per fetch batch.
type unflushedFirst struct{ e *Engine }

func (l unflushedFirst) LookupKeys(ctx context.Context, account uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error) {
	found := l.e.unflushedKeys(account, keys, sinceUs)
	if len(found) == len(keys) {
		return found, nil
	}
	missing := make([]string, 0, len(keys)-len(found))
	for _, k := range keys {
		if _, ok := found[k]; !ok {
			missing = append(missing, k)
		}
	}
	stored, err := l.e.store.LookupKeys(ctx, account, missing, sinceUs)
	if err != nil {
		return nil, err
	}
	// Unflushed rows come after everything PostgreSQL holds of the account.
	for k, r := range found {
		stored[k] = r
	}
	return stored, nil
}

// unflushedKeys returns the newest outcome per key among the unflushed
// rows (and leg tombstones) of account since sinceUs.
func (e *Engine) unflushedKeys(account uuid.UUID, keys []string, sinceUs int64) map[string]ledger.KeyRecord {
	out := make(map[string]ledger.KeyRecord)
	p := e.partition(e.routing.Load().PartitionOf(account))
	if p == nil {
		return out
	}
	want := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		want[k] = struct{}{}
	}
	scan := func(rows []storage.TxRow) {
		for i := range rows {
			r := &rows[i]
			if r.Cmd.AccountID != account || r.Result.TimestampUs < sinceUs {
				continue
			}
			k := ledger.DedupeKey(r.Cmd)
			if _, ok := want[k]; ok {
				out[k] = ledger.KeyRecord{Hash: r.Cmd.RequestHash, Result: r.Result} // later rows win
			}
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, b := range append(p.flushing[:len(p.flushing):len(p.flushing)], p.buf) {
		scan(b.rows)
		scan(b.tombstones)
	}
	return out
}
