-- Bursar schema, version 1. Amounts are bigint minor units.

-- One row per Kafka partition of bursar.commands: who owns it, under which
-- epoch (bumped on every acquisition, checked by every flush), and the next
-- offset to consume (committed with the effects of everything before it).
CREATE TABLE partitions (
    partition   integer PRIMARY KEY,
    epoch       bigint  NOT NULL DEFAULT 0,
    next_offset bigint  NOT NULL DEFAULT 0,
    owner       text    NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id      uuid PRIMARY KEY,
    customer_id     text   NOT NULL,
    account_type    text   NOT NULL,
    currency        text   NOT NULL,
    status          text   NOT NULL,
    overdraft_limit bigint NOT NULL CHECK (overdraft_limit >= 0),
    balance         bigint NOT NULL,
    version         bigint NOT NULL,
    seq             bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT accounts_overdraft CHECK (balance >= -overdraft_limit)
);

-- One row per recorded command on one account: opens, credits, debits,
-- transfer legs and refunds, completed or failed. delta is the signed change
-- to the balance (0 for failures), so balance = sum(delta) per account.
CREATE TABLE transactions (
    account_id      uuid    NOT NULL,
    seq             bigint  NOT NULL,
    transaction_id  uuid    NOT NULL,
    kind            text    NOT NULL,
    counterparty_id uuid,
    status          text    NOT NULL,
    code            text    NOT NULL,
    amount          bigint  NOT NULL,
    delta           bigint  NOT NULL,
    currency        text    NOT NULL,
    balance_after   bigint  NOT NULL,
    version_after   bigint  NOT NULL,
    description     text    NOT NULL,
    reference_id    text    NOT NULL,
    idem_key        text,
    request_hash    bigint  NOT NULL,
    created_at      timestamptz NOT NULL,
    partition       integer NOT NULL,
    kafka_offset    bigint  NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- A leg is applied at most once: a second row for the same transaction and
-- kind is a bug, and this index makes its flush fail loudly.
CREATE UNIQUE INDEX transactions_leg ON transactions (transaction_id, kind);
CREATE INDEX transactions_idem ON transactions (account_id, idem_key) WHERE idem_key IS NOT NULL;
