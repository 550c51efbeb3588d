-- Users and the keys that sign their tokens (issue 13). A user logs in
-- with a password (argon2id, PHC string in password_hash) and gets a
-- short-lived EdDSA JWT; its role names the scopes it carries. Usernames
-- are kept lower-case so that "Alice" and "alice" are one user. Disabling
-- sets disabled_at; the row stays, for the list and for who-did-what.
CREATE TABLE users (
    user_id       uuid PRIMARY KEY,
    username      text NOT NULL CONSTRAINT users_username_unique UNIQUE
                  CHECK (username = lower(username) AND length(username) BETWEEN 3 AND 64),
    password_hash text NOT NULL CHECK (length(password_hash) <= 512),
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'teller', 'customer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    disabled_at   timestamptz
);

-- Nodes load the recently disabled users on every refresh.
CREATE INDEX users_disabled_at ON users (disabled_at) WHERE disabled_at IS NOT NULL;

-- Ed25519 keys signing the tokens, shared by every node so that any node
-- verifies what another signed. The newest key not retired signs; every
-- key not retired verifies. private_key is the 32-byte seed: whoever can
-- read this table can mint tokens, as whoever can write accounts can mint
-- money.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 64),
    algorithm   text NOT NULL CHECK (algorithm = 'EdDSA'),
    private_key bytea NOT NULL CHECK (length(private_key) = 32),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
