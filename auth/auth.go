// Package auth is who may call Bursar and what they may do: API keys
// (this file), users with roles and passwords (users.go, password.go), and
// the short-lived JWTs a user's login returns (token.go); the Verifier
// (verifier.go) checks either kind of token against what PostgreSQL holds.
//
// An API key's token is described here; a user's in token.go.
//
// A token is "bsk_" + key ID + "_" + secret: the key ID (16 characters of
// lower-case base32, 80 random bits) names the key in lists, logs and
// revocations; the secret (52 characters, 256 random bits) is never stored.
// PostgreSQL keeps the SHA-256 of the whole token, which a high-entropy
// token makes enough (no password stretching is needed for 256 random
// bits), and a check compares the hashes in constant time.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scope is a permission a key carries.
type Scope string

// The scopes. Admin grants every other one.
const (
	AccountsRead      Scope = "accounts:read"
	AccountsWrite     Scope = "accounts:write"
	TransactionsRead  Scope = "transactions:read"
	TransactionsWrite Scope = "transactions:write"
	MetricsRead       Scope = "metrics:read"
	Admin             Scope = "admin"
	// Cluster is the operator's: draining a node, /internal/*, the
	// cluster's status.
	Cluster Scope = "cluster"
)

// Scopes lists every scope, in the README's order (new ones at the end).
var Scopes = []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite, MetricsRead, Admin, Cluster}

// ParseScopes reads a comma-separated scope list, refusing unknown names
// and an empty list; "all" stands for every data scope: all but admin and
// cluster (it meant that before cluster existed, and a key minted with
// "all" for a client should not be able to drain nodes).
func ParseScopes(text string) ([]Scope, error) {
	var out []Scope
	for _, s := range strings.Split(text, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case s == "all":
			for _, sc := range Scopes {
				if sc != Admin && sc != Cluster && !slices.Contains(out, sc) {
					out = append(out, sc)
				}
			}
		case slices.Contains(Scopes, Scope(s)):
			if !slices.Contains(out, Scope(s)) {
				out = append(out, Scope(s))
			}
		default:
			return nil, fmt.Errorf("unknown scope %q (scopes: %s, or all)", s, joinScopes(Scopes))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scope given")
	}
	return out, nil
}

func joinScopes(s []Scope) string { return strings.Join(Names(s), ", ") }

// Names returns the scopes' names, as api_keys stores them.
func Names(scopes []Scope) []string {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	return names
}

// Prefix starts every token.
const Prefix = "bsk_"

const (
	idLen     = 16 // base32 characters: 80 bits
	secretLen = 52 // base32 characters: 256 bits (and 4 spare)
	// TokenLen is the length of every token.
	TokenLen = len(Prefix) + idLen + 1 + secretLen
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken mints a token and returns it with its key ID and hash.
func NewToken() (token, id string, hash [32]byte) {
	var idBytes [10]byte
	var secret [33]byte   // 264 bits: 52 base32 characters, 256 of them random enough and more
	rand.Read(idBytes[:]) //nolint:errcheck // crypto/rand.Read never fails (it panics)
	rand.Read(secret[:])  //nolint:errcheck // as above
	id = b32.EncodeToString(idBytes[:])
	token = Prefix + id + "_" + b32.EncodeToString(secret[:])[:secretLen]
	return token, id, Hash(token)
}

// Hash is the stored form of a token.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// KeyID returns the key ID of a well-formed token, and false for anything
// else (wrong prefix, length or alphabet): such a token is refused without
// a lookup.
func KeyID(token []byte) (string, bool) {
	if len(token) != TokenLen || string(token[:len(Prefix)]) != Prefix || token[len(Prefix)+idLen] != '_' {
		return "", false
	}
	for i, c := range token[len(Prefix):] {
		if i == idLen {
			continue // the separator, checked above
		}
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", false
		}
	}
	return string(token[len(Prefix) : len(Prefix)+idLen]), true
}

// Principal is who a request comes from, an API key or a user, and what
// it may do.
type Principal struct {
	// KeyID is the API key's ID; "" for a user.
	KeyID string
	// Name is the key's name, or the user's username.
	Name string
	// UserID is the user's ID (a UUID, as text); "" for an API key.
	UserID string
	// Role is the user's role; "" for an API key.
	Role   Role
	scopes []Scope
}

// String is the principal as commands and rows record it (created_by):
// "apikey:<key ID>" (20 bytes) or "user:<user ID>" (41 bytes).
func (p *Principal) String() string {
	if p.IsUser() {
		return "user:" + p.UserID
	}
	return "apikey:" + p.KeyID
}

// IsUser reports whether p is a user (logged in with a JWT) rather than
// an API key.
func (p *Principal) IsUser() bool { return p.UserID != "" }

// Owner is the user ID p's accounts must belong to: a customer's own ID,
// and "" (any account) for every other principal. The caller limits a
// principal with an owner to the accounts whose owner is that ID.
func (p *Principal) Owner() string {
	if p.IsUser() && p.Role == RoleCustomer {
		return p.UserID
	}
	return ""
}

// Allows reports whether p carries scope s (admin carries every scope).
func (p *Principal) Allows(s Scope) bool {
	return slices.Contains(p.scopes, s) || slices.Contains(p.scopes, Admin)
}
