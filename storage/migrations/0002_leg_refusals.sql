-- Transfer legs refused by an account that did not exist. They leave no
-- transactions row (there is no account to attach it to) but are remembered,
-- so that a replayed copy of the leg, arriving after the account is opened,
-- is recognized as a duplicate instead of creating money.
CREATE TABLE leg_refusals (
    account_id     uuid    NOT NULL,
    transaction_id uuid    NOT NULL,
    kind           text    NOT NULL,
    code           text    NOT NULL,
    amount         bigint  NOT NULL,
    currency       text    NOT NULL,
    request_hash   bigint  NOT NULL,
    created_at     timestamptz NOT NULL,
    partition      integer NOT NULL,
    kafka_offset   bigint  NOT NULL,
    PRIMARY KEY (account_id, transaction_id, kind)
);
