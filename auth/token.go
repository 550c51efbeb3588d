package auth

// A user's token is a JWT (RFC 7519) signed with EdDSA (Ed25519, RFC
// 8037): header {"alg":"EdDSA","kid":…,"typ":"JWT"}, claims iss and aud
// "bursar", sub the user ID, name the username, role, iat, nbf, exp (at
// most TokenTTLMax after iat) and a random jti. Nothing else is accepted:
// no other algorithm, no token without exp, iat or a known kid.
//
// The signing keys live in PostgreSQL (signing_keys), so every node signs
// and verifies alike. Each node loads them with the API keys: the newest
// key not retired signs, and every key not retired verifies. Rotating
// (RotateSigningKey) adds a key, which the nodes sign with from their next
// reload on; the old key goes on verifying the tokens it signed. Once
// every token it signed has expired — TokenTTLMax (or the longest TTL the
// logins use) after the nodes took up the new key, plus the refresh — an
// operator retires it (storage.Store.RetireSigningKey), and from the
// nodes' next reload its tokens are refused. A node that must sign and has
// no key creates one; two nodes doing so at once make two keys, both good.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bursar/bursar/storage"
	"github.com/golang-jwt/jwt/v5"
)

const (
	tokenIssuer   = "bursar"
	tokenAudience = "bursar"
	tokenAlg      = "EdDSA"
	// tokenLeeway is the clock skew between nodes that exp, nbf and iat
	// tolerate.
	tokenLeeway = 30 * time.Second
	// TokenLenMax bounds a bearer token before it is parsed; a token
	// Login signs is some 400 bytes.
	TokenLenMax = 4096
	kidLenMax   = 64
)

// tokenClaims are a token's claims.
type tokenClaims struct {
	Name string `json:"name"`
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// tokenParser checks what can be checked without the keys. A Parser only
// reads its options, so one serves every goroutine. Strict decoding
// refuses base64 with stray trailing bits, so that a token verifies in
// only the one spelling it was signed in.
var tokenParser = jwt.NewParser(
	jwt.WithValidMethods([]string{tokenAlg}),
	jwt.WithIssuer(tokenIssuer),
	jwt.WithAudience(tokenAudience),
	jwt.WithExpirationRequired(),
	jwt.WithIssuedAt(),
	jwt.WithLeeway(tokenLeeway),
	jwt.WithStrictDecoding(),
)

// SigningKeyStore is where RotateSigningKey stores a key: PostgreSQL
// (storage.Store).
type SigningKeyStore interface {
	AddSigningKey(ctx context.Context, k storage.SigningKey) error
}

// RotateSigningKey generates a new Ed25519 key, stores it and returns its
// kid. The nodes sign with it from their next reload on; the keys before
// it go on verifying until they are retired.
func RotateSigningKey(ctx context.Context, store SigningKeyStore) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("auth: generate a signing key: %w", err)
	}
	var kidBytes [10]byte
	rand.Read(kidBytes[:]) //nolint:errcheck // crypto/rand.Read never fails (it panics)
	kid := b32.EncodeToString(kidBytes[:])
	if err := store.AddSigningKey(ctx, storage.SigningKey{ID: kid, Algorithm: tokenAlg, PrivateKey: priv.Seed(), PublicKey: pub}); err != nil {
		return "", err
	}
	return kid, nil
}

// signer is the key a node signs with.
type signer struct {
	kid string
	key ed25519.PrivateKey
}

// sign returns a token for user principal p, issued at now and valid for
// ttl, and when it expires. Times are whole seconds, as JWTs carry them.
func (k *signer) sign(p *Principal, now time.Time, ttl time.Duration) (string, time.Time, error) {
	now = now.Truncate(time.Second)
	expires := now.Add(ttl).Truncate(time.Second)
	var jti [16]byte
	rand.Read(jti[:]) //nolint:errcheck // crypto/rand.Read never fails (it panics)
	c := tokenClaims{Name: p.Name, Role: string(p.Role), RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Audience:  jwt.ClaimStrings{tokenAudience},
		Subject:   p.UserID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(expires),
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
	}}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = k.kid
	s, err := t.SignedString(k.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign a token: %w", err)
	}
	return s, expires, nil
}

// signingKeys is what a load makes of the signing_keys rows.
type signingKeys struct {
	verify map[string]ed25519.PublicKey
	signer *signer // the newest; nil if there is no key
	jwks   []byte
}

// newSigningKeys reads the rows (newest first), leaving out (and
// reporting) those that are not a valid Ed25519 pair.
func newSigningKeys(rows []storage.SigningKey) (signingKeys, []error) {
	sk := signingKeys{verify: make(map[string]ed25519.PublicKey, len(rows))}
	var bad []error
	set := jwkSet{Keys: make([]jwk, 0, len(rows))}
	for _, r := range rows {
		if r.Algorithm != tokenAlg || len(r.ID) == 0 || len(r.ID) > kidLenMax ||
			len(r.PrivateKey) != ed25519.SeedSize || len(r.PublicKey) != ed25519.PublicKeySize {
			bad = append(bad, fmt.Errorf("signing key %q: not an Ed25519 key", r.ID))
			continue
		}
		priv := ed25519.NewKeyFromSeed(r.PrivateKey)
		pub := ed25519.PublicKey(bytes.Clone(r.PublicKey))
		if !pub.Equal(priv.Public()) {
			bad = append(bad, fmt.Errorf("signing key %q: the public key is not the private key's", r.ID))
			continue
		}
		if _, dup := sk.verify[r.ID]; dup {
			continue
		}
		sk.verify[r.ID] = pub
		if sk.signer == nil {
			sk.signer = &signer{kid: r.ID, key: priv}
		}
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: r.ID, Alg: tokenAlg, Use: "sig"})
	}
	sk.jwks, _ = json.Marshal(set) //nolint:errcheck // strings only: it cannot fail
	return sk, bad
}

// jwkSet is a JSON Web Key Set (RFC 7517) of Ed25519 keys (RFC 8037).
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// emptyJWKS is JWKS before any load.
var emptyJWKS = []byte(`{"keys":[]}`)

// JWKS returns the JSON Web Key Set of the keys that verify tokens, for
// other services to verify them with: {"keys":[{"kty":"OKP",
// "crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"},…]}, newest
// first.
func (v *Verifier) JWKS() []byte {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.signing.jwks == nil {
		return bytes.Clone(emptyJWKS)
	}
	return bytes.Clone(v.signing.jwks)
}

// signer returns the key to sign with. With none loaded, it creates one in
// store and loads it; one caller at a time does, so a node makes at most
// one.
func (v *Verifier) signer(ctx context.Context, store SigningKeyStore) (*signer, error) {
	if k := v.loadedSigner(); k != nil {
		return k, nil
	}
	v.signerMu.Lock()
	defer v.signerMu.Unlock()
	if k := v.loadedSigner(); k != nil {
		return k, nil // made by the caller before
	}
	kid, err := RotateSigningKey(ctx, store)
	if err != nil {
		return nil, err
	}
	v.log.Info("no signing key for users' tokens: created one", "kid", kid)
	if err := v.load(ctx); err != nil {
		return nil, err
	}
	if k := v.loadedSigner(); k != nil {
		return k, nil
	}
	// The verifier's source is another database than store.
	return nil, errors.New("auth: no signing key loaded after creating one")
}

func (v *Verifier) loadedSigner() *signer {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.signing.signer
}

func (v *Verifier) publicKey(kid string) (ed25519.PublicKey, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.signing.verify[kid]
	return k, ok
}

func (v *Verifier) userDisabled(id string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.disabled[id]
	return ok
}

// isJWT reports whether token has a JWT's shape: three non-empty
// base64url segments. It says nothing of their content.
func isJWT(token []byte) bool {
	dots, segment := 0, 0
	for _, c := range token {
		switch {
		case c == '.':
			if segment == 0 {
				return false
			}
			dots, segment = dots+1, 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			segment++
		default:
			return false
		}
	}
	return dots == 2 && segment > 0
}

// errUnknownKid is checkJWT's key lookup failing.
var errUnknownKid = errors.New("auth: unknown kid")

// checkJWT checks a token of JWT shape (isJWT): ErrUnknown if no key
// loaded has its kid (after a miss's reload if reload), ErrExpired,
// ErrBadToken for anything else wrong with it, ErrUserDisabled if its
// user is disabled.
func (v *Verifier) checkJWT(ctx context.Context, token string, reload bool) (*Principal, error) {
	var c tokenClaims
	_, err := tokenParser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" || len(kid) > kidLenMax {
			return nil, errUnknownKid
		}
		k, ok := v.publicKey(kid)
		if !ok && reload && v.missReload(ctx, time.Now()) {
			k, ok = v.publicKey(kid)
		}
		if !ok {
			return nil, errUnknownKid
		}
		return k, nil
	})
	switch {
	case errors.Is(err, errUnknownKid):
		return nil, ErrUnknown
	case errors.Is(err, jwt.ErrTokenExpired):
		// Only once the signature holds: a forged token is ErrBadToken.
		return nil, ErrExpired
	case err != nil:
		return nil, ErrBadToken
	}
	// Signed by one of our keys, so made by sign; checked all the same,
	// as a stolen key could sign anything.
	if c.IssuedAt == nil || c.ExpiresAt == nil || c.ID == "" || c.ExpiresAt.Sub(c.IssuedAt.Time) > TokenTTLMax {
		return nil, ErrBadToken
	}
	p, err := userPrincipal(c.Subject, c.Name, c.Role)
	if err != nil {
		return nil, ErrBadToken
	}
	if v.userDisabled(p.UserID) {
		return nil, ErrUserDisabled
	}
	return p, nil
}
