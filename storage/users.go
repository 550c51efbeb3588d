package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// User is a users row. Package auth makes them (auth.NewUser) and checks
// their passwords; storage only keeps them. Username is lower-case.
type User struct {
	ID           string     `json:"user_id"` // a UUID, as text
	Username     string     `json:"username"`
	PasswordHash string     `json:"-"` // argon2id, PHC string
	Role         string     `json:"role"`
	CreatedAt    time.Time  `json:"created_at"`
	CreatedBy    string     `json:"created_by"` // a principal ("user:…", "apikey:…"), or "" from the CLI
	DisabledAt   *time.Time `json:"disabled_at"`
}

// Disabled reports whether the user is disabled.
func (u *User) Disabled() bool { return u.DisabledAt != nil }

// Why a user operation fails.
var (
	ErrUserExists   = errors.New("storage: a user of this name exists")
	ErrUserNotFound = errors.New("storage: no user has this name")
)

// UsersListMax bounds Users: a larger limit is lowered to it.
const UsersListMax = 1000

// DisabledUsersWindow is how long after its disabling a user stays in
// DisabledUserIDs. It is longer than a token lives (auth.TokenTTLMax, and
// the clock leeway), so a token issued before the disabling is refused
// until it has expired; past the window the token has expired anyway, and
// the login that would issue a new one refuses the user.
const DisabledUsersWindow = 25 * time.Hour

// DisabledUsersMax bounds DisabledUserIDs, which every node keeps in
// memory: more users disabled within DisabledUsersWindow than this is an
// error (ErrTooManyDisabled) rather than a list cut short, which would let
// a disabled user's token through.
const DisabledUsersMax = 100_000

// ErrTooManyDisabled is DisabledUserIDs' error beyond DisabledUsersMax.
var ErrTooManyDisabled = fmt.Errorf("storage: more than %d users disabled within %s", DisabledUsersMax, DisabledUsersWindow)

const userColumns = `user_id::text, username, password_hash, role, created_at, coalesce(created_by, ''), disabled_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Role, &u.CreatedAt, &u.CreatedBy, &u.DisabledAt)
	return u, err
}

// CreateUser stores a new user, its name lower-cased; ErrUserExists if
// the name is taken. CreatedAt and DisabledAt are set by the database.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO users (user_id, username, password_hash, role, created_by)
VALUES ($1::uuid, $2, $3, $4, nullif($5, ''))`, u.ID, strings.ToLower(u.Username), u.PasswordHash, u.Role, u.CreatedBy)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "users_username_unique":
		return ErrUserExists
	default:
		return fmt.Errorf("storage: create user: %w", err)
	}
}

// UserByName returns the user of that name (in any case), disabled or
// not; ErrUserNotFound if there is none.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, strings.ToLower(name)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return User{}, ErrUserNotFound
	case err != nil:
		return User{}, fmt.Errorf("storage: user: %w", err)
	}
	return u, nil
}

// Users returns up to limit users (UsersListMax if limit is not in 1 to
// UsersListMax), disabled ones included, by name.
func (s *Store) Users(ctx context.Context, limit int) ([]User, error) {
	if limit <= 0 || limit > UsersListMax {
		limit = UsersListMax
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY username LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) { return scanUser(row) })
	if err != nil {
		return nil, fmt.Errorf("storage: users: %w", err)
	}
	return users, nil
}

// DisableUser disables the user of that name; disabling a disabled user
// is a no-op that keeps the first disabled_at. It reports whether there is
// such a user.
func (s *Store) DisableUser(ctx context.Context, name string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE username = $1`, strings.ToLower(name))
	if err != nil {
		return false, fmt.Errorf("storage: disable user: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// DisabledUserIDs returns the IDs of the users disabled within
// DisabledUsersWindow: those whose tokens may not have expired yet.
func (s *Store) DisabledUserIDs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id::text FROM users
WHERE disabled_at > now() - make_interval(secs => $1) LIMIT $2`, DisabledUsersWindow.Seconds(), DisabledUsersMax+1)
	if err != nil {
		return nil, fmt.Errorf("storage: disabled users: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("storage: disabled users: %w", err)
	}
	if len(ids) > DisabledUsersMax {
		return nil, ErrTooManyDisabled
	}
	return ids, nil
}

// SigningKey is a signing_keys row: an Ed25519 key pair that signs and
// verifies users' tokens. PrivateKey is the 32-byte seed.
type SigningKey struct {
	ID         string     `json:"kid"`
	Algorithm  string     `json:"algorithm"` // "EdDSA"
	PrivateKey []byte     `json:"-"`
	PublicKey  []byte     `json:"public_key"`
	CreatedAt  time.Time  `json:"created_at"`
	RetiredAt  *time.Time `json:"retired_at"`
}

// SigningKeysMax bounds SigningKeys: keys not retired beyond the newest
// this many are neither loaded nor verify. Rotation retires old keys long
// before.
const SigningKeysMax = 32

// AddSigningKey stores a new signing key. CreatedAt is set by the
// database.
func (s *Store) AddSigningKey(ctx context.Context, k SigningKey) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (kid, algorithm, private_key, public_key) VALUES ($1, $2, $3, $4)`,
		k.ID, k.Algorithm, k.PrivateKey, k.PublicKey); err != nil {
		return fmt.Errorf("storage: add signing key: %w", err)
	}
	return nil
}

// SigningKeys returns the keys not retired, newest first, at most
// SigningKeysMax.
func (s *Store) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT kid, algorithm, private_key, public_key, created_at, retired_at FROM signing_keys
WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT $1`, SigningKeysMax)
	if err != nil {
		return nil, fmt.Errorf("storage: signing keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SigningKey, error) {
		var k SigningKey
		err := row.Scan(&k.ID, &k.Algorithm, &k.PrivateKey, &k.PublicKey, &k.CreatedAt, &k.RetiredAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: signing keys: %w", err)
	}
	return keys, nil
}

// RetireSigningKey retires a key: it no longer signs nor verifies, once
// the nodes have reloaded. Retiring a retired key is a no-op. It reports
// whether there is such a key.
func (s *Store) RetireSigningKey(ctx context.Context, kid string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE signing_keys SET retired_at = coalesce(retired_at, now()) WHERE kid = $1`, kid)
	if err != nil {
		return false, fmt.Errorf("storage: retire signing key: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// IsCustomer reports whether id (a UUID) names a customer user that is
// not disabled.
func (s *Store) IsCustomer(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users
WHERE user_id = $1::uuid AND role = 'customer' AND disabled_at IS NULL)`, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("storage: is customer: %w", err)
	}
	return ok, nil
}
