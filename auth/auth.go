// Package auth is Bursar's API keys: minting a token, checking one against
// the keys PostgreSQL holds, and the scopes a route needs.
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
)

// Scopes lists every scope, in the README's order.
var Scopes = []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite, MetricsRead, Admin}

// ParseScopes reads a comma-separated scope list, refusing unknown names
// and an empty list; "all" stands for every scope but admin.
func ParseScopes(text string) ([]Scope, error) {
	var out []Scope
	for _, s := range strings.Split(text, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case s == "all":
			for _, sc := range Scopes {
				if sc != Admin && !slices.Contains(out, sc) {
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

// Principal is who a request comes from: the key's ID and name, and what
// it may do.
type Principal struct {
	KeyID, Name string
	scopes      []Scope
}

// String is the principal as commands and rows record it (created_by).
func (p *Principal) String() string { return "apikey:" + p.KeyID }

// Allows reports whether p carries scope s (admin carries every scope).
func (p *Principal) Allows(s Scope) bool {
	return slices.Contains(p.scopes, s) || slices.Contains(p.scopes, Admin)
}
