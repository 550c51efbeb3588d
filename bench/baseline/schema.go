package baseline

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaLockKey serializes schema creation between baselines starting
// at once on one database (CREATE … IF NOT EXISTS is not safe against a
// concurrent create). Arbitrary, fixed.
const schemaLockKey = 0x62617365 // "base"

// schema is the baseline's whole schema. Amounts are bigint minor units,
// as in Bursar.
//
// One row per operation in baseline_transactions, as a straightforward
// design has it: a transfer is one row naming both accounts. Refusals that
// concern an existing account (insufficient funds, currency mismatch) are
// recorded too, with status failed, so that a retry with the same key
// returns the original refusal, as Bursar does. The indexes are the ones
// such a service needs and Bursar also keeps: the primary key, the
// idempotency key (unique: it is the authority that a retry is a retry),
// and each account's history on either side of a transfer.
const schema = `
CREATE TABLE IF NOT EXISTS baseline_accounts (
    account_id      uuid PRIMARY KEY,
    customer_id     text   NOT NULL,
    account_type    text   NOT NULL,
    currency        text   NOT NULL,
    overdraft_limit bigint NOT NULL CHECK (overdraft_limit >= 0),
    balance         bigint NOT NULL DEFAULT 0,
    version         bigint NOT NULL DEFAULT 0,
    idem_key        text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT baseline_accounts_overdraft CHECK (balance >= -overdraft_limit)
);

CREATE TABLE IF NOT EXISTS baseline_transactions (
    transaction_id  uuid   PRIMARY KEY,
    kind            text   NOT NULL CHECK (kind IN ('credit', 'debit', 'transfer')),
    account_id      uuid   NOT NULL,  -- credit, debit: the account; transfer: the source
    counterparty_id uuid,             -- transfer: the destination
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text   NOT NULL,
    status          text   NOT NULL CHECK (status IN ('completed', 'failed')),
    code            text   NOT NULL,  -- OK or the refusal's code
    balance_after   bigint NOT NULL,  -- account_id's balance after the operation
    description     text   NOT NULL,
    reference_id    text   NOT NULL,
    idem_key        text,
    created_at      timestamptz NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS baseline_transactions_idem ON baseline_transactions (idem_key);
CREATE INDEX IF NOT EXISTS baseline_transactions_account ON baseline_transactions (account_id, created_at);
CREATE INDEX IF NOT EXISTS baseline_transactions_counterparty ON baseline_transactions (counterparty_id, created_at)
    WHERE counterparty_id IS NOT NULL;
`

func createSchema(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("baseline: create schema: %w", err)
	}
	return nil
}
