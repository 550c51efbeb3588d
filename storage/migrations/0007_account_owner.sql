-- The user who owns an account (issue 12): a customer's user ID, set by
-- the open command and never changed; empty for accounts with no owner
-- (opened by a service key or a teller without one). A customer's
-- credential reaches only accounts whose owner_id is its user ID. The
-- partial index serves the lookups of one owner's accounts; a constant
-- default adds the column without rewriting the table.
ALTER TABLE accounts ADD COLUMN owner_id text NOT NULL DEFAULT '';
CREATE INDEX accounts_owner_idx ON accounts (owner_id) WHERE owner_id <> '';
