package storage

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

var pgxRepeatableRead = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// AuditCheck is the outcome of one audit rule.
type AuditCheck struct {
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Violations int64    `json:"violations"`
	Examples   []string `json:"examples,omitempty"`
}

// CurrencyTotals is the conservation line of one currency, in minor units.
type CurrencyTotals struct {
	Currency      string `json:"currency"`
	Accounts      int64  `json:"accounts"`
	Balances      int64  `json:"balances"`
	ExternalIn    int64  `json:"external_in"`
	ExternalOut   int64  `json:"external_out"`
	InFlight      int64  `json:"in_flight"`
	Discrepancy   int64  `json:"discrepancy"` // balances + in_flight - (in - out); 0 when conserved
	Transactions  int64  `json:"transactions"`
	FailedRecords int64  `json:"failed"`
}

// PartitionLag is how far PostgreSQL is behind the log of one partition.
type PartitionLag struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     int64  `json:"epoch"`
	Committed int64  `json:"committed_offset"`
	End       int64  `json:"end_offset"`
	Unflushed int64  `json:"unflushed_records"`
}

// AuditReport is the result of Audit. Clean is true when every check holds.
type AuditReport struct {
	Clean      bool             `json:"clean"`
	Checks     []AuditCheck     `json:"checks"`
	Currencies []CurrencyTotals `json:"currencies"`
	Partitions []PartitionLag   `json:"partitions,omitempty"`
	// Unflushed counts log records not yet reflected in PostgreSQL. They are
	// not violations; the audit is exact once it is zero.
	Unflushed int64 `json:"unflushed_records"`
}

// auditExamples bounds the example rows each check reports.
const auditExamples = 5

// auditRules are the checks; each query returns one text per violating
// thing, so the count and examples come from the same rows.
var auditRules = []struct{ name, query string }{
	{"balance_equals_entries", `
SELECT a.account_id::text || ' balance ' || a.balance || ' entries ' || coalesce(t.s, 0)
FROM accounts a LEFT JOIN (SELECT account_id, sum(delta) s FROM transactions GROUP BY account_id) t USING (account_id)
WHERE a.balance <> coalesce(t.s, 0)`},
	{"no_balance_below_overdraft_limit", `
SELECT account_id::text || ' balance ' || balance || ' limit ' || overdraft_limit
FROM accounts WHERE balance < -overdraft_limit`},
	{"sequence_without_gaps", `
SELECT a.account_id::text || ' seq ' || a.seq || ' rows ' || coalesce(t.n, 0) || ' max ' || coalesce(t.m, 0)
FROM accounts a LEFT JOIN (SELECT account_id, count(*) n, max(seq) m FROM transactions GROUP BY account_id) t USING (account_id)
WHERE a.seq <> coalesce(t.n, 0) OR a.seq <> coalesce(t.m, 0)`},
	{"no_orphan_rows", `
SELECT t.account_id::text || ' seq ' || t.seq FROM transactions t
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = t.account_id)`},
	{"no_duplicate_operation", `
SELECT account_id::text || ' key ' || idem_key || ' x' || count(*) FROM transactions
WHERE idem_key IS NOT NULL
GROUP BY account_id, idem_key
HAVING count(*) > 1 AND max(created_at) - min(created_at) < interval '24 hours'`},
	{"transfer_legs_match", `
WITH legs AS (
    SELECT transaction_id,
           count(*) FILTER (WHERE kind = 'transfer_debit' AND status = 'pending') AS debits,
           count(*) FILTER (WHERE kind = 'transfer_credit' AND status = 'completed') AS credits,
           count(*) FILTER (WHERE kind = 'transfer_refund') AS refunds,
           count(*) FILTER (WHERE kind IN ('transfer_credit', 'transfer_refund') AND delta <> 0) AS moves
    FROM transactions WHERE kind IN ('transfer_debit', 'transfer_credit', 'transfer_refund')
    GROUP BY transaction_id)
SELECT transaction_id::text || ' debits ' || debits || ' credits ' || credits || ' refunds ' || refunds
FROM legs WHERE credits + refunds > 1 OR (moves > 0 AND debits = 0)`},
}

const currencyTotals = `
WITH b AS (SELECT currency, count(*) n, coalesce(sum(balance), 0) s FROM accounts GROUP BY currency),
     t AS (SELECT currency,
                  coalesce(sum(delta) FILTER (WHERE kind = 'credit'), 0) ext_in,
                  coalesce(-sum(delta) FILTER (WHERE kind = 'debit'), 0) ext_out,
                  count(*) FILTER (WHERE kind <> 'open') txs,
                  count(*) FILTER (WHERE status = 'failed') failed
           FROM transactions GROUP BY currency),
     legs AS (SELECT transaction_id, min(currency) AS currency,
                     sum(amount) FILTER (WHERE kind = 'transfer_debit' AND status = 'pending') AS debited,
                     count(*) FILTER (WHERE (kind = 'transfer_credit' AND status = 'completed') OR kind = 'transfer_refund') AS settled
              FROM transactions WHERE kind IN ('transfer_debit', 'transfer_credit', 'transfer_refund')
              GROUP BY transaction_id),
     f AS (SELECT currency, coalesce(sum(debited), 0) s FROM legs
           WHERE debited IS NOT NULL AND settled = 0 GROUP BY currency)
SELECT coalesce(b.currency, t.currency), coalesce(b.n, 0), coalesce(b.s, 0), coalesce(t.ext_in, 0),
       coalesce(t.ext_out, 0), coalesce(f.s, 0), coalesce(t.txs, 0), coalesce(t.failed, 0)
FROM b FULL JOIN t USING (currency) LEFT JOIN f ON f.currency = coalesce(b.currency, t.currency)
ORDER BY 1`

// RunCheck runs one audit rule in tx: query returns one text per violating
// thing, so the count and the examples (the first auditExamples) come from
// the same rows. The baseline's audit runs its own rules with it.
func RunCheck(ctx context.Context, tx pgx.Tx, name, query string) (AuditCheck, error) {
	c := AuditCheck{Name: name}
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	for rows.Next() {
		var ex string
		if err := rows.Scan(&ex); err != nil {
			return c, err
		}
		c.Violations++
		if len(c.Examples) < auditExamples {
			c.Examples = append(c.Examples, ex)
		}
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	c.OK = c.Violations == 0
	return c, nil
}

// Audit checks the money invariants over everything PostgreSQL holds, in one
// repeatable-read snapshot. endOffsets, when given, are the log end offsets
// per partition, so that unflushed work is reported instead of being
// mistaken for a violation.
func (s *Store) Audit(ctx context.Context, endOffsets map[int32]int64) (*AuditReport, error) {
	tx, err := s.pool.BeginTx(ctx, pgxRepeatableRead)
	if err != nil {
		return nil, fmt.Errorf("storage: audit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	// The audit scans every row; the pool's per-statement timeout is for
	// the serving path. ctx bounds the audit instead.
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
		return nil, fmt.Errorf("storage: audit: %w", err)
	}

	rep := &AuditReport{Clean: true}
	for _, rule := range auditRules {
		c, err := RunCheck(ctx, tx, rule.name, rule.query)
		if err != nil {
			return nil, fmt.Errorf("storage: audit %s: %w", rule.name, err)
		}
		rep.Clean = rep.Clean && c.OK
		rep.Checks = append(rep.Checks, c)
	}

	rows, err := tx.Query(ctx, currencyTotals)
	if err != nil {
		return nil, fmt.Errorf("storage: audit totals: %w", err)
	}
	cons := AuditCheck{Name: "money_conserved_per_currency", OK: true}
	for rows.Next() {
		var t CurrencyTotals
		if err := rows.Scan(&t.Currency, &t.Accounts, &t.Balances, &t.ExternalIn, &t.ExternalOut,
			&t.InFlight, &t.Transactions, &t.FailedRecords); err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: audit totals: %w", err)
		}
		t.Discrepancy = t.Balances + t.InFlight - (t.ExternalIn - t.ExternalOut)
		if t.Discrepancy != 0 {
			cons.OK = false
			cons.Violations++
			cons.Examples = append(cons.Examples, fmt.Sprintf("%s off by %d", t.Currency, t.Discrepancy))
		}
		rep.Currencies = append(rep.Currencies, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: audit totals: %w", err)
	}
	rep.Checks = append(rep.Checks, cons)
	rep.Clean = rep.Clean && cons.OK

	prows, err := tx.Query(ctx, `SELECT partition, owner, epoch, next_offset FROM partitions ORDER BY partition`)
	if err != nil {
		return nil, fmt.Errorf("storage: audit partitions: %w", err)
	}
	defer prows.Close()
	for prows.Next() {
		var p PartitionLag
		if err := prows.Scan(&p.Partition, &p.Owner, &p.Epoch, &p.Committed); err != nil {
			return nil, fmt.Errorf("storage: audit partitions: %w", err)
		}
		if end, ok := endOffsets[p.Partition]; ok {
			p.End = end
			p.Unflushed = max(0, end-p.Committed)
			rep.Unflushed += p.Unflushed
		}
		rep.Partitions = append(rep.Partitions, p)
	}
	if err := prows.Err(); err != nil {
		return nil, fmt.Errorf("storage: audit partitions: %w", err)
	}
	// Partitions no node ever acquired have committed nothing.
	for part, end := range endOffsets {
		if end > 0 && !slices.ContainsFunc(rep.Partitions, func(p PartitionLag) bool { return p.Partition == part }) {
			rep.Partitions = append(rep.Partitions, PartitionLag{Partition: part, End: end, Unflushed: end})
			rep.Unflushed += end
		}
	}
	return rep, nil
}
