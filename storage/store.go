// Package storage is Bursar's PostgreSQL layer: embedded migrations, the
// write-behind flush (CopyFrom rows, account upserts and partition offsets in
// one fenced transaction), batched account loads for recovery, and the reads
// the API and the audit serve.
package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the PostgreSQL pool.
type Config struct {
	// URL is the PostgreSQL connection string. Required.
	URL string
	// MaxConns is the pool size. Default 16.
	MaxConns int32
	// StatementTimeout bounds every statement. Default 30s.
	StatementTimeout time.Duration
	// IdleInTxTimeout makes PostgreSQL end a session that sits inside a
	// transaction this long. A node paused in the middle of a flush (GC,
	// SIGSTOP, a cut-off network) otherwise keeps its partitions' rows
	// locked, and the node taking them over waits on the lock for as long as
	// the pause lasts. Default 5s.
	IdleInTxTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 16
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = 30 * time.Second
	}
	if c.IdleInTxTimeout <= 0 {
		c.IdleInTxTimeout = 5 * time.Second
	}
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("storage: database URL is required (--database-url or DATABASE_URL)")
	}
	return nil
}

// Store is a PostgreSQL pool with Bursar's queries.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to PostgreSQL and checks the connection.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("storage: parse database URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(cfg.StatementTimeout.Milliseconds())
	pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(cfg.IdleInTxTimeout.Milliseconds())
	pc.ConnConfig.RuntimeParams["application_name"] = "bursar"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("storage: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage: ping: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Pool exposes the pool to tests and the audit.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockID is the advisory lock that serializes concurrent migrators.
const migrationLockID = 0x6275727361720001

// Migrate applies every embedded migration not yet applied, in name order,
// each in its own transaction. Concurrent callers serialize on an advisory
// lock, so several nodes starting at once is safe.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockID)); err != nil {
		return nil, fmt.Errorf("storage: migrate lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLockID)) //nolint:errcheck // released with the session anyway
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("storage: migrate: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)", base).Scan(&done); err != nil {
			return applied, fmt.Errorf("storage: migrate: %w", err)
		}
		if done {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return applied, err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (name) VALUES ($1)", base)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("storage: migration %s: %w", base, err)
		}
		applied = append(applied, base)
	}
	return applied, nil
}
