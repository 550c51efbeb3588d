-- API keys (issue 12): a key is the token bsk_<key_id>_<secret>; only the
-- SHA-256 of the whole token is kept. Revoking sets revoked_at; the row
-- stays, so that a revoked key is told apart from an unknown one and the
-- list shows who had access.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    name        text NOT NULL,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
