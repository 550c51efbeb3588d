package baseline

import (
	"context"
	"fmt"

	"github.com/bursar/bursar/storage"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AuditCheck is the outcome of one audit rule: the same shape as Bursar's,
// so one printer serves both.
type AuditCheck = storage.AuditCheck

// CurrencyTotals is the conservation line of one currency, in minor units:
// the balances must equal what came in from outside (credits) less what
// went out (debits); transfers only move money between accounts.
type CurrencyTotals struct {
	Currency     string `json:"currency"`
	Accounts     int64  `json:"accounts"`
	Balances     int64  `json:"balances"`
	Credits      int64  `json:"credits"`
	Debits       int64  `json:"debits"`
	Discrepancy  int64  `json:"discrepancy"` // balances - (credits - debits); 0 when conserved
	Transactions int64  `json:"transactions"`
	Failed       int64  `json:"failed"`
}

// AuditReport is the baseline's money audit. Clean is true when every
// check holds.
type AuditReport struct {
	Clean      bool             `json:"clean"`
	Checks     []AuditCheck     `json:"checks"`
	Currencies []CurrencyTotals `json:"currencies"`
}

// auditRules return one text per violating thing.
var auditRules = []struct{ name, query string }{
	{"conservation", `
WITH b AS (SELECT currency, sum(balance) s FROM baseline_accounts GROUP BY currency),
     f AS (SELECT currency,
                  coalesce(sum(amount) FILTER (WHERE kind = 'credit'), 0) - coalesce(sum(amount) FILTER (WHERE kind = 'debit'), 0) s
           FROM baseline_transactions WHERE status = 'completed' GROUP BY currency)
SELECT coalesce(b.currency, f.currency) || ' balances ' || coalesce(b.s, 0) || ' credits-debits ' || coalesce(f.s, 0)
FROM b FULL JOIN f USING (currency) WHERE coalesce(b.s, 0) <> coalesce(f.s, 0)`},
	{"balance_equals_transactions", `
WITH d AS (
    SELECT account_id id, CASE kind WHEN 'credit' THEN amount ELSE -amount END delta
    FROM baseline_transactions WHERE status = 'completed'
    UNION ALL
    SELECT counterparty_id, amount FROM baseline_transactions WHERE status = 'completed' AND kind = 'transfer')
SELECT a.account_id::text || ' balance ' || a.balance || ' transactions ' || coalesce(s.sum, 0)
FROM baseline_accounts a LEFT JOIN (SELECT id, sum(delta) sum FROM d GROUP BY id) s ON s.id = a.account_id
WHERE a.balance <> coalesce(s.sum, 0)`},
	{"no_balance_below_overdraft_limit", `
SELECT account_id::text || ' balance ' || balance || ' limit ' || overdraft_limit
FROM baseline_accounts WHERE balance < -overdraft_limit`},
	{"no_orphan_transactions", `
SELECT t.transaction_id::text FROM baseline_transactions t
WHERE NOT EXISTS (SELECT 1 FROM baseline_accounts a WHERE a.account_id = t.account_id)
   OR (t.counterparty_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM baseline_accounts a WHERE a.account_id = t.counterparty_id))`},
}

const auditTotals = `
WITH b AS (SELECT currency, count(*) n, sum(balance)::bigint s FROM baseline_accounts GROUP BY currency),
     t AS (SELECT currency,
                  coalesce(sum(amount) FILTER (WHERE kind = 'credit' AND status = 'completed'), 0)::bigint cr,
                  coalesce(sum(amount) FILTER (WHERE kind = 'debit' AND status = 'completed'), 0)::bigint db,
                  count(*) n, count(*) FILTER (WHERE status = 'failed') failed
           FROM baseline_transactions GROUP BY currency)
SELECT coalesce(b.currency, t.currency), coalesce(b.n, 0), coalesce(b.s, 0), coalesce(t.cr, 0), coalesce(t.db, 0),
       coalesce(t.n, 0), coalesce(t.failed, 0)
FROM b FULL JOIN t USING (currency) ORDER BY 1`

// Audit checks the baseline's tables in one consistent snapshot: per
// currency, Σ balances = Σ completed credits − Σ completed debits; each
// account's balance equals its completed transactions; no balance is
// below its overdraft limit; no transaction names a missing account. Run
// it when no requests are in flight; with requests in flight it is still
// exact, since every operation commits atomically.
func Audit(ctx context.Context, pool *pgxpool.Pool) (*AuditReport, error) {
	rep := &AuditReport{Clean: true}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, r := range auditRules {
			c, err := storage.RunCheck(ctx, tx, r.name, r.query)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			rep.Clean = rep.Clean && c.OK
			rep.Checks = append(rep.Checks, c)
		}
		rows, err := tx.Query(ctx, auditTotals)
		if err != nil {
			return fmt.Errorf("totals: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t CurrencyTotals
			if err := rows.Scan(&t.Currency, &t.Accounts, &t.Balances, &t.Credits, &t.Debits, &t.Transactions, &t.Failed); err != nil {
				return fmt.Errorf("totals: %w", err)
			}
			t.Discrepancy = t.Balances - (t.Credits - t.Debits)
			rep.Currencies = append(rep.Currencies, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("baseline audit: %w", err)
	}
	return rep, nil
}

// AuditURL runs Audit on the database at url.
func AuditURL(ctx context.Context, url string) (*AuditReport, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("baseline audit: database URL: %w", err)
	}
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("baseline audit: connect: %w", err)
	}
	defer pool.Close()
	return Audit(ctx, pool)
}

// Audit runs the money audit on the server's tables.
func (s *Server) Audit(ctx context.Context) (*AuditReport, error) { return Audit(ctx, s.pool) }
