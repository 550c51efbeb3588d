package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TxRow is one row of the transactions table.
type TxRow struct {
	Cmd       *ledger.Command
	Result    ledger.Result
	Partition int32
	Offset    int64
}

// PartitionMark is a partition's committed position: everything before
// NextOffset is in the batch or already in PostgreSQL. Epoch is the epoch the
// flushing node acquired the partition under.
type PartitionMark struct {
	Partition  int32
	Epoch      int64
	NextOffset int64
}

// Batch is what one flush writes: transaction rows, the final state of every
// touched account (written once however often it changed), and partition
// marks. The zero value is ready to use.
type Batch struct {
	Rows []TxRow
	// Tombstones are leg refusals by accounts that do not exist
	// (ledger.Result.Tombstone), kept in leg_refusals.
	Tombstones []TxRow
	Accounts   map[uuid.UUID]*ledger.Account
	Marks      []PartitionMark
	// Handovers are migration groups whose old partition's mark passes
	// their barrier in this batch (slot_handovers).
	Handovers []Handover
}

// Handover is one group of a slot migration handed over: every effect of
// its records up to the barrier at BarrierOffset of partition From is in
// the batch or before it.
type Handover struct {
	Version       int64 // the slot map the migration moves to
	Group         int
	From, To      int32
	BarrierOffset int64
	Slots         []int // the group's slots (their count is stored; the slot maps have them)
}

// Len is the number of rows the batch will write.
func (b *Batch) Len() int { return len(b.Rows) + len(b.Accounts) + len(b.Tombstones) }

// FencedError reports partitions whose epoch moved on: another node acquired
// them, so this node must stop owning them at once.
type FencedError struct{ Partitions []int32 }

func (e *FencedError) Error() string {
	return fmt.Sprintf("storage: fenced out of partitions %v", e.Partitions)
}

// ErrInvariant marks a flush refused because it would break a ledger
// invariant (an account going backwards, a leg applied twice). It is a bug,
// never retried.
var ErrInvariant = errors.New("storage: ledger invariant violated")

var txColumns = []string{
	"account_id", "seq", "transaction_id", "kind", "counterparty_id", "status", "code",
	"amount", "delta", "currency", "balance_after", "version_after", "description",
	"reference_id", "idem_key", "request_hash", "created_at", "partition", "kafka_offset", "created_by",
}

// txSource streams Batch rows into CopyFrom without building a [][]any.
type txSource struct {
	rows []TxRow
	i    int
	vals []any
}

func (s *txSource) Next() bool { s.i++; return s.i <= len(s.rows) }
func (s *txSource) Err() error { return nil }
func (s *txSource) Values() ([]any, error) {
	s.vals = appendTxValues(s.vals[:0], &s.rows[s.i-1])
	return s.vals, nil
}

// appendTxValues encodes one row in txColumns order.
func appendTxValues(dst []any, r *TxRow) []any {
	res, c := &r.Result, r.Cmd
	var counterparty any
	if c.Counterparty != uuid.Nil {
		counterparty = [16]byte(c.Counterparty)
	}
	var key any
	if k := ledger.DedupeKey(c); k != "" {
		key = k
	}
	code := ""
	if res.Code != ledger.OK {
		code = res.Code.String()
	}
	return append(dst,
		[16]byte(res.AccountID), res.Seq, [16]byte(res.TxID), res.Kind.String(), counterparty,
		res.Status.String(), code, res.Amount, res.Delta, res.Currency, res.Balance, res.Version,
		c.Description, c.ReferenceID, key, int64(c.RequestHash), time.UnixMicro(res.TimestampUs).UTC(),
		r.Partition, r.Offset, c.CreatedBy,
	)
}

// accountArrays are the columns of the account upsert, one array each.
type accountArrays struct {
	ids                                  [][16]byte
	customers, types, currencies, status []string
	owners                               []string
	overdraft, balance, version, seq     []int64
	created, updated                     []time.Time
}

func encodeAccounts(accts map[uuid.UUID]*ledger.Account) *accountArrays {
	n := len(accts)
	a := &accountArrays{
		ids: make([][16]byte, 0, n), customers: make([]string, 0, n), types: make([]string, 0, n),
		currencies: make([]string, 0, n), status: make([]string, 0, n), overdraft: make([]int64, 0, n),
		balance: make([]int64, 0, n), version: make([]int64, 0, n), seq: make([]int64, 0, n),
		created: make([]time.Time, 0, n), updated: make([]time.Time, 0, n), owners: make([]string, 0, n),
	}
	// Sorted so concurrent flushes (two partitions never share an account,
	// but tests and zombies may) lock rows in one order.
	ids := make([]uuid.UUID, 0, n)
	for id := range accts {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
	for _, id := range ids {
		acc := accts[id]
		a.ids = append(a.ids, [16]byte(id))
		a.customers = append(a.customers, acc.CustomerID)
		a.types = append(a.types, acc.Type)
		a.currencies = append(a.currencies, acc.Currency)
		a.status = append(a.status, acc.Status.String())
		a.overdraft = append(a.overdraft, acc.OverdraftLimit)
		a.balance = append(a.balance, acc.Balance)
		a.version = append(a.version, acc.Version)
		a.seq = append(a.seq, acc.Seq)
		a.created = append(a.created, time.UnixMicro(acc.CreatedUs).UTC())
		a.updated = append(a.updated, time.UnixMicro(acc.UpdatedUs).UTC())
		a.owners = append(a.owners, acc.Owner)
	}
	return a
}

const upsertAccounts = `
INSERT INTO accounts (account_id, customer_id, account_type, currency, status, overdraft_limit,
                      balance, version, seq, created_at, updated_at, owner_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                     $7::bigint[], $8::bigint[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::text[])
ON CONFLICT (account_id) DO UPDATE SET
    status = EXCLUDED.status, balance = EXCLUDED.balance, version = EXCLUDED.version,
    seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at
WHERE accounts.seq < EXCLUDED.seq`

const markPartitions = `
UPDATE partitions p SET next_offset = v.next_offset, updated_at = now()
FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS v(partition, epoch, next_offset)
WHERE p.partition = v.partition AND p.epoch = v.epoch AND p.next_offset <= v.next_offset
RETURNING p.partition`

// committedMarks finds, under a row lock, whether every partition of
// marks already stands at its mark with the same epoch: the batch has
// committed before. That is how a flush retried after its COMMIT's answer
// was lost (the connection died: PostgreSQL stopped, a network cut) learns
// that the first attempt did commit; copying its rows again would break
// the primary keys, and the engine would stop.
const committedMarks = `
SELECT count(*) FROM partitions p
JOIN unnest($1::int[], $2::bigint[], $3::bigint[]) AS v(partition, epoch, next_offset)
  ON p.partition = v.partition AND p.epoch = v.epoch AND p.next_offset = v.next_offset`

// Flush writes b in one transaction: partition marks first (so a fenced
// flush fails before copying anything), then the rows by CopyFrom, then the
// account upsert. Either all of it commits or none of it does. A batch
// that has already committed (every mark in place: a retry after a lost
// COMMIT answer) commits nothing again and returns nil; a batch always
// moves its partitions' offsets, so a new batch never looks committed.
func (s *Store) Flush(ctx context.Context, b *Batch) error {
	if len(b.Marks) == 0 && b.Len() == 0 {
		return nil
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("storage: flush begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit

	if len(b.Marks) > 0 {
		parts := make([]int32, len(b.Marks))
		epochs := make([]int64, len(b.Marks))
		offs := make([]int64, len(b.Marks))
		for i, m := range b.Marks {
			parts[i], epochs[i], offs[i] = m.Partition, m.Epoch, m.NextOffset
		}
		var already int
		if err := tx.QueryRow(ctx, committedMarks, parts, epochs, offs).Scan(&already); err != nil {
			return fmt.Errorf("storage: flush marks: %w", err)
		}
		if already == len(parts) {
			return nil // committed by an earlier attempt; the deferred rollback ends this one
		}
		rows, err := tx.Query(ctx, markPartitions, parts, epochs, offs)
		if err != nil {
			return fmt.Errorf("storage: flush marks: %w", err)
		}
		marked, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("storage: flush marks: %w", err)
		}
		if len(marked) != len(parts) {
			var fenced []int32
			for _, p := range parts {
				if !slices.Contains(marked, p) {
					fenced = append(fenced, p)
				}
			}
			return &FencedError{Partitions: fenced}
		}
	}
	if len(b.Rows) > 0 {
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"transactions"}, txColumns, &txSource{rows: b.Rows})
		if err != nil {
			return fmt.Errorf("storage: flush copy: %w", err)
		}
		if int(n) != len(b.Rows) {
			return fmt.Errorf("%w: copied %d of %d rows", ErrInvariant, n, len(b.Rows))
		}
	}
	if len(b.Tombstones) > 0 {
		rows := make([][]any, len(b.Tombstones))
		for i, r := range b.Tombstones {
			rows[i] = []any{[16]byte(r.Result.AccountID), [16]byte(r.Result.TxID), r.Result.Kind.String(),
				r.Result.Code.String(), r.Result.Amount, r.Result.Currency, int64(r.Cmd.RequestHash),
				time.UnixMicro(r.Result.TimestampUs).UTC(), r.Partition, r.Offset}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"leg_refusals"}, []string{"account_id", "transaction_id", "kind",
			"code", "amount", "currency", "request_hash", "created_at", "partition", "kafka_offset"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("storage: flush leg refusals: %w", err)
		}
	}
	if len(b.Accounts) > 0 {
		a := encodeAccounts(b.Accounts)
		tag, err := tx.Exec(ctx, upsertAccounts, a.ids, a.customers, a.types, a.currencies, a.status,
			a.overdraft, a.balance, a.version, a.seq, a.created, a.updated, a.owners)
		if err != nil {
			return fmt.Errorf("storage: flush accounts: %w", err)
		}
		if int(tag.RowsAffected()) != len(a.ids) {
			return fmt.Errorf("%w: %d of %d accounts moved forward", ErrInvariant, tag.RowsAffected(), len(a.ids))
		}
	}
	for _, h := range b.Handovers {
		if _, err := tx.Exec(ctx, `INSERT INTO slot_handovers (version, grp, from_partition, to_partition, slots, barrier_offset)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version, grp) DO NOTHING`, h.Version, h.Group, h.From, h.To, len(h.Slots), h.BarrierOffset); err != nil {
			return fmt.Errorf("storage: flush handover: %w", err)
		}
	}
	// The commit is not cancelled with ctx: a commit interrupted on the
	// client's side may still have happened on the server, and the caller
	// would then write the same rows again.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		// The outcome is unknown (the connection broke during the commit):
		// the marks say whether it happened.
		if ok, cerr := s.marksCommitted(cctx, b.Marks); cerr == nil && ok {
			return nil
		}
		return fmt.Errorf("storage: flush commit: %w", err)
	}
	return nil
}

// marksCommitted reports whether every mark is in PostgreSQL under its
// epoch: then the flush that wrote them committed.
func (s *Store) marksCommitted(ctx context.Context, marks []PartitionMark) (bool, error) {
	if len(marks) == 0 {
		return false, nil
	}
	for _, m := range marks {
		var epoch, next int64
		err := s.pool.QueryRow(ctx, `SELECT epoch, next_offset FROM partitions WHERE partition = $1`, m.Partition).Scan(&epoch, &next)
		if err != nil {
			return false, err
		}
		if epoch != m.Epoch || next != m.NextOffset {
			return false, nil
		}
	}
	return true, nil
}

// Retriable reports whether a flush error may succeed if tried again:
// connection and timeout errors are; fencing and invariant violations are
// not (the first ends ownership, the second is a bug).
func Retriable(err error) bool {
	var fe *FencedError
	switch {
	case err == nil:
		return false
	case errors.As(err, &fe):
		return false
	case errors.Is(err, ErrInvariant):
		return false
	case errors.Is(err, context.Canceled):
		return false
	}
	// Class 23 is an integrity constraint violation (a duplicate leg, a
	// balance below its overdraft limit): the batch itself is wrong.
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "23") {
		return false
	}
	return true
}
