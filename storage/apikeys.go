package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// APIKey is an api_keys row: a key's public ID, name, token hash and
// scopes. The token itself is never stored.
type APIKey struct {
	ID        string     `json:"key_id"`
	Name      string     `json:"name"`
	Hash      []byte     `json:"-"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// APIKeysMax bounds the keys a database holds that are not revoked: every
// node keeps them all in memory.
const APIKeysMax = 10_000

// ErrTooManyKeys is CreateAPIKey's error at APIKeysMax live keys.
var ErrTooManyKeys = fmt.Errorf("storage: %d API keys are live; revoke some first", APIKeysMax)

// CreateAPIKey stores a new key. It refuses a key ID in use and a key
// beyond APIKeysMax live ones.
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One creator at a time, so that the count holds.
		if _, err := tx.Exec(ctx, `LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE revoked_at IS NULL`).Scan(&live); err != nil {
			return err
		}
		if live >= APIKeysMax {
			return ErrTooManyKeys
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (key_id, name, token_hash, scopes) VALUES ($1, $2, $3, $4)`,
			k.ID, k.Name, k.Hash, k.Scopes)
		return err
	})
}

// APIKeys returns every key, revoked ones included, oldest first.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	return collectKeys(s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, key_id`))
}

const keyColumns = `key_id, name, token_hash, scopes, created_at, revoked_at`

func collectKeys(rows pgx.Rows, err error) ([]APIKey, error) {
	if err != nil {
		return nil, fmt.Errorf("storage: api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		err := row.Scan(&k.ID, &k.Name, &k.Hash, &k.Scopes, &k.CreatedAt, &k.RevokedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: api keys: %w", err)
	}
	return keys, nil
}

// LiveAPIKeys returns the keys a node checks tokens against: the live
// ones, and those revoked within the last day (so that a revoked key is
// reported as revoked for a while); older revoked keys stay in the table
// for `apikey ls` but are not loaded.
func (s *Store) LiveAPIKeys(ctx context.Context) ([]APIKey, error) {
	return collectKeys(s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys
WHERE revoked_at IS NULL OR revoked_at > now() - interval '1 day'`))
}

// ErrNoSuchKey is RevokeAPIKey's error for an unknown key ID.
var ErrNoSuchKey = errors.New("storage: no API key has this ID")

// RevokeAPIKey revokes a key; revoking a revoked key is a no-op.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1`, id)
	if err != nil {
		return fmt.Errorf("storage: revoke api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNoSuchKey
	}
	return nil
}
