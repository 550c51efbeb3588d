package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

// Role is what a user is; it names the scopes the user's tokens carry.
type Role string

// The roles.
const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleOperator runs the cluster and reads what it holds.
	RoleOperator Role = "operator"
	// RoleTeller reads and writes every account.
	RoleTeller Role = "teller"
	// RoleCustomer reads and writes its own accounts (Principal.Owner).
	RoleCustomer Role = "customer"
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleAdmin, RoleOperator, RoleTeller, RoleCustomer}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown role %q (roles: %s)", s, strings.Join(names, ", "))
}

// Scopes returns the scopes a user of role r carries (a new slice each
// call), or nil for an unknown role. A customer's are a teller's, limited
// by the caller to the customer's own accounts (Principal.Owner).
func (r Role) Scopes() []Scope {
	switch r {
	case RoleAdmin:
		return []Scope{Admin}
	case RoleOperator:
		return []Scope{Cluster, MetricsRead, AccountsRead, TransactionsRead}
	case RoleTeller, RoleCustomer:
		return []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite}
	}
	return nil
}

// Usernames are UsernameLenMin to UsernameLenMax characters of a-z, 0-9
// and "._@-", kept lower-case; upper-case ASCII is lower-cased.
const (
	UsernameLenMin = 3
	UsernameLenMax = 64
)

// NormalizeUsername returns name lower-cased, and whether it is a valid
// username. Only ASCII is accepted, before lower-casing, so that no other
// character folds into a username (as the Kelvin sign would into "k").
func NormalizeUsername(name string) (string, bool) {
	if len(name) < UsernameLenMin || len(name) > UsernameLenMax {
		return "", false
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '@', c == '-':
		default:
			return "", false
		}
	}
	return string(b), true
}

// FieldError is NewUser's refusal of a field ("username", "password" or
// "role") that breaks its rules. Its text is fit to show whoever asked.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// NewUser makes a user to store (storage.Store.CreateUser): a new ID, the
// username lower-cased, the password hashed. It refuses an invalid
// username, a password breaking the rules (CheckPasswordRules) and an
// unknown role with a *FieldError. createdBy is the principal creating it
// (Principal.String), or "".
func NewUser(username, password string, role Role, createdBy string) (storage.User, error) {
	name, ok := NormalizeUsername(username)
	if !ok {
		return storage.User{}, &FieldError{"username", fmt.Sprintf("a username is %d to %d characters of a-z, 0-9 and ._@-", UsernameLenMin, UsernameLenMax)}
	}
	if err := CheckPasswordRules(password); err != nil {
		return storage.User{}, &FieldError{"password", err.Error()}
	}
	if _, err := ParseRole(string(role)); err != nil {
		return storage.User{}, &FieldError{"role", err.Error()}
	}
	hash, err := HashPassword(password)
	if err != nil {
		return storage.User{}, err
	}
	return storage.User{ID: uuid.NewString(), Username: name, PasswordHash: hash, Role: string(role), CreatedBy: createdBy}, nil
}

// UserStore is what Login reads users from, and where it stores the first
// signing key when there is none: PostgreSQL (storage.Store).
type UserStore interface {
	UserByName(ctx context.Context, name string) (storage.User, error)
	SigningKeyStore
}

// Why a login is refused.
var (
	// ErrBadLogin is one error for an unknown user, a wrong password and
	// a disabled user: the client is not told which.
	ErrBadLogin = errors.New("wrong username or password")
	// ErrLoginBusy: LoginsMax logins were checking passwords for
	// LoginWaitMax.
	ErrLoginBusy = errors.New("too many logins at once; try again in a moment")
)

// Limits on logins. A password check (argon2id) takes some 20–50 ms of a
// core and 19 MiB; LoginsMax bound how many run at once, so that a flood
// of logins costs at most LoginsMax×19 MiB and LoginsMax cores. A login
// that waits LoginWaitMax for its turn is refused with ErrLoginBusy,
// counted in Verifier.LoginBusy.
const (
	LoginsMax    = 4
	LoginWaitMax = time.Second
)

// TokenTTLMin and TokenTTLMax bound a token's lifetime (Login's ttl).
// TokenTTLMax, with the leeway, stays within storage.DisabledUsersWindow,
// so a disabled user's tokens are refused until they have expired.
const (
	TokenTTLMin = time.Minute
	TokenTTLMax = 24 * time.Hour
)

// dummyHash is what Login checks a password against for an unknown user,
// so that the time taken tells nothing of which usernames exist. It has
// HashPassword's parameters (a test pins it).
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$rsr7b89rcCxG20fE7pm9og$vlLRO1EDc9Xz57z+VHudb2JdRI+xP7htOPYFX/bAQDs"

// Login checks username and password against store and returns a token
// for the user, valid for ttl (TokenTTLMin to TokenTTLMax), when it
// expires, and the user's principal. It refuses an unknown user, a wrong
// password and a disabled user alike with ErrBadLogin, and ErrLoginBusy
// when too many logins are under way (LoginsMax); another error is
// operational (PostgreSQL). The token is signed with the newest signing
// key this verifier loaded; if there is none yet, Login creates one.
func (v *Verifier) Login(ctx context.Context, store UserStore, username, password string, ttl time.Duration) (token string, expires time.Time, p *Principal, err error) {
	if ttl < TokenTTLMin || ttl > TokenTTLMax {
		return "", time.Time{}, nil, fmt.Errorf("auth: a token lives %s to %s, not %s", TokenTTLMin, TokenTTLMax, ttl)
	}
	p, err = v.authenticate(ctx, store, username, password)
	switch {
	case errors.Is(err, ErrBadLogin):
		v.LoginFailures.Add(1)
		return "", time.Time{}, nil, err
	case errors.Is(err, ErrLoginBusy):
		v.LoginBusy.Add(1)
		return "", time.Time{}, nil, err
	case err != nil:
		return "", time.Time{}, nil, err
	}
	k, err := v.signer(ctx, store)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	token, expires, err = k.sign(p, time.Now(), ttl)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	v.Logins.Add(1)
	return token, expires, p, nil
}

// authenticate returns the principal of the user username if password is
// theirs and they are not disabled. The password is checked, against
// dummyHash if need be, whatever the user: an unknown, a disabled and a
// known user take the same time.
func (v *Verifier) authenticate(ctx context.Context, store UserStore, username, password string) (*Principal, error) {
	if err := v.acquireLogin(ctx); err != nil {
		return nil, err
	}
	defer v.releaseLogin()
	u, err := storage.User{}, storage.ErrUserNotFound
	if name, ok := NormalizeUsername(username); ok && len(password) <= PasswordLenMax {
		u, err = store.UserByName(ctx, name)
	}
	switch {
	case errors.Is(err, storage.ErrUserNotFound):
		VerifyPassword(dummyHash, password) //nolint:errcheck // for its time only
		return nil, ErrBadLogin
	case err != nil:
		return nil, fmt.Errorf("auth: login: %w", err)
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		v.log.Warn("a user's stored password hash is unreadable; the user cannot log in", "user_id", u.ID, "err", err)
		return nil, ErrBadLogin
	}
	if !ok || u.Disabled() {
		return nil, ErrBadLogin
	}
	p, err := userPrincipal(u.ID, u.Username, u.Role)
	if err != nil {
		v.log.Warn("a user's row is invalid; the user cannot log in", "user_id", u.ID, "err", err)
		return nil, ErrBadLogin
	}
	return p, nil
}

// userPrincipal is the principal of a user, from its row or its token's
// claims; it refuses values no row holds.
func userPrincipal(id, name, role string) (*Principal, error) {
	uid, err := uuid.Parse(id)
	if err != nil || uid.String() != id {
		return nil, errors.New("the user ID is not a UUID in canonical form")
	}
	if n, ok := NormalizeUsername(name); !ok || n != name {
		return nil, errors.New("the username is invalid")
	}
	r, err := ParseRole(role)
	if err != nil {
		return nil, err
	}
	return &Principal{UserID: id, Name: name, Role: r, scopes: r.Scopes()}, nil
}

// acquireLogin takes one of the LoginsMax turns, waiting at most
// LoginWaitMax (ErrLoginBusy) or until ctx ends (its error).
func (v *Verifier) acquireLogin(ctx context.Context) error {
	select {
	case v.logins <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(LoginWaitMax)
	defer t.Stop()
	select {
	case v.logins <- struct{}{}:
		return nil
	case <-t.C:
		return ErrLoginBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *Verifier) releaseLogin() { <-v.logins }
