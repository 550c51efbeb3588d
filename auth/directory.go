package auth

import (
	"context"
	"errors"
	"time"

	"github.com/bursar/bursar/storage"
)

// Directory is the user and key service the API's management routes
// use: logins through the Verifier, users and keys in PostgreSQL. A
// change that takes a credential away (a user disabled, a key revoked)
// reloads this node's Verifier at once; other nodes see it within their
// refresh.
type Directory struct {
	V     *Verifier
	Store *storage.Store
	// TTL is the lifetime of the tokens Login issues.
	TTL time.Duration
}

// Login exchanges a username and password for a token.
func (d *Directory) Login(ctx context.Context, username, password string) (string, time.Time, error) {
	token, expires, _, err := d.V.Login(ctx, d.Store, username, password, d.TTL)
	return token, expires, err
}

// CreateUser validates, hashes and stores a user, and returns it as
// stored (with its creation time).
func (d *Directory) CreateUser(ctx context.Context, username, password string, role Role, createdBy string) (storage.User, error) {
	u, err := NewUser(username, password, role, createdBy)
	if err != nil {
		return storage.User{}, err
	}
	if err := d.Store.CreateUser(ctx, u); err != nil {
		return storage.User{}, err
	}
	return d.Store.UserByName(ctx, u.Username)
}

// Users lists up to limit users.
func (d *Directory) Users(ctx context.Context, limit int) ([]storage.User, error) {
	return d.Store.Users(ctx, limit)
}

// DisableUser disables a user; its tokens stop working on this node at
// once.
func (d *Directory) DisableUser(ctx context.Context, username string) (bool, error) {
	ok, err := d.Store.DisableUser(ctx, username)
	if err == nil && ok {
		d.reload(ctx)
	}
	return ok, err
}

// IsCustomer reports whether id names a live customer user.
func (d *Directory) IsCustomer(ctx context.Context, id string) (bool, error) {
	return d.Store.IsCustomer(ctx, id)
}

// JWKS is the verifying keys' set.
func (d *Directory) JWKS() []byte { return d.V.JWKS() }

// CreateAPIKey mints and stores a key; the token is returned once.
func (d *Directory) CreateAPIKey(ctx context.Context, name string, scopes []Scope) (string, storage.APIKey, error) {
	token, id, hash := NewToken()
	k := storage.APIKey{ID: id, Name: name, Hash: hash[:], Scopes: Names(scopes), CreatedAt: time.Now().UTC()}
	if err := d.Store.CreateAPIKey(ctx, k); err != nil {
		return "", storage.APIKey{}, err
	}
	return token, k, nil
}

// APIKeys lists every key, without tokens.
func (d *Directory) APIKeys(ctx context.Context) ([]storage.APIKey, error) {
	return d.Store.APIKeys(ctx)
}

// RevokeAPIKey revokes a key; it stops working on this node at once.
func (d *Directory) RevokeAPIKey(ctx context.Context, id string) (bool, error) {
	err := d.Store.RevokeAPIKey(ctx, id)
	if errors.Is(err, storage.ErrNoSuchKey) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d.reload(ctx)
	return true, nil
}

// reload reloads the Verifier after a change that takes a credential
// away; a failure leaves it to the next refresh (logged there).
func (d *Directory) reload(ctx context.Context) {
	if err := d.V.Reload(ctx); err != nil {
		d.V.log.Warn("reloading credentials after a change failed; the next refresh picks it up", "err", err)
	}
}
