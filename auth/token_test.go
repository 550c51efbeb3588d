package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/storage"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// tokenKid returns the kid in a token's header.
func tokenKid(t *testing.T, token string) string {
	t.Helper()
	header, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("token header %q: %v", header, err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("token header %s: %v", b, err)
	}
	return h.Kid
}

// claimsOf returns good claims for user u issued at now, for 1 h.
func claimsOf(u storage.User, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "bursar", "aud": "bursar", "sub": u.ID, "name": u.Username, "role": u.Role,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "test-jti",
	}
}

// signRaw signs claims with method and key, kid in the header.
func signRaw(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func segment(v any) string {
	b, _ := json.Marshal(v) //nolint:errcheck // maps of strings and numbers
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestTokenRefusals: a token is accepted only as Login signs it; each
// deviation is refused with the error a client should see.
func TestTokenRefusals(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	u := addUser(t, s, "tess", RoleTeller)
	v := newTestVerifier(t, s)
	good, _, _, err := v.Login(ctx, s, "tess", testPassword, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k := v.loadedSigner()
	now := time.Now()
	with := func(change func(jwt.MapClaims)) string {
		c := claimsOf(u, now)
		change(c)
		return signRaw(t, jwt.SigningMethodEdDSA, k.key, k.kid, c)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	header, payload, _ := strings.Cut(good, ".")
	payload, sig, _ := strings.Cut(payload, ".")
	var claims map[string]any
	if b, err := base64.RawURLEncoding.DecodeString(payload); err != nil || json.Unmarshal(b, &claims) != nil {
		t.Fatalf("the good token's payload %q", payload)
	}
	claims["role"] = "admin"
	// 86 characters carry the signature's 512 bits and 4 spare: the last
	// character with its lowest bit flipped decodes, leniently, alike.
	const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	strayBits := sig[:len(sig)-1] + string(b64url[strings.IndexByte(b64url, sig[len(sig)-1])^1])
	p, err := userPrincipal(u.ID, u.Username, u.Role)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := k.sign(p, now.Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"expired", expired, ErrExpired},
		{"expired within the leeway", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }), nil},
		{"an unknown key", signRaw(t, jwt.SigningMethodEdDSA, otherKey, "nosuchkid", claimsOf(u, now)), ErrUnknown},
		{"no kid", signRaw(t, jwt.SigningMethodEdDSA, k.key, "", claimsOf(u, now)), ErrUnknown},
		{"another key under our kid", signRaw(t, jwt.SigningMethodEdDSA, otherKey, k.kid, claimsOf(u, now)), ErrBadToken},
		{"alg none", signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, k.kid, claimsOf(u, now)), ErrMalformed},
		{"alg none with a signature", segment(map[string]string{"alg": "none", "kid": k.kid}) + "." + segment(claimsOf(u, now)) + "." + sig, ErrBadToken},
		{"HS256 keyed with the public key", signRaw(t, jwt.SigningMethodHS256, []byte(k.key.Public().(ed25519.PublicKey)), k.kid, claimsOf(u, now)), ErrBadToken},
		{"a tampered payload", header + "." + segment(claims) + "." + sig, ErrBadToken},
		{"a tampered signature", header + "." + payload + "." + strings.Repeat("A", len(sig)), ErrBadToken},
		{"stray bits in the signature", header + "." + payload + "." + strayBits, ErrBadToken},
		{"another issuer", with(func(c jwt.MapClaims) { c["iss"] = "other" }), ErrBadToken},
		{"another audience", with(func(c jwt.MapClaims) { c["aud"] = []string{"other"} }), ErrBadToken},
		{"no exp", with(func(c jwt.MapClaims) { delete(c, "exp") }), ErrBadToken},
		{"no iat", with(func(c jwt.MapClaims) { delete(c, "iat") }), ErrBadToken},
		{"no jti", with(func(c jwt.MapClaims) { delete(c, "jti") }), ErrBadToken},
		{"issued in the future", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), ErrBadToken},
		{"not valid yet", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), ErrBadToken},
		{"living beyond TokenTTLMax", with(func(c jwt.MapClaims) { c["exp"] = now.Add(TokenTTLMax + time.Hour).Unix() }), ErrBadToken},
		{"an unknown role", with(func(c jwt.MapClaims) { c["role"] = "root" }), ErrBadToken},
		{"a subject not a UUID", with(func(c jwt.MapClaims) { c["sub"] = "tess" }), ErrBadToken},
		{"an upper-case UUID", with(func(c jwt.MapClaims) { c["sub"] = strings.ToUpper(u.ID) }), ErrBadToken},
		{"an invalid name", with(func(c jwt.MapClaims) { c["name"] = "Tess" }), ErrBadToken},
		{"exp a string", with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), ErrBadToken},
		{"four segments", good + ".e30", ErrMalformed},
		{"padding", good + "=", ErrMalformed},
		{"beyond TokenLenMax", header + "." + strings.Repeat("A", TokenLenMax) + "." + sig, ErrMalformed},
		{"not JSON", "bm90.anNvbg.c2ln", ErrBadToken},
	} {
		p, err := v.Check(ctx, []byte(tc.token))
		if !errors.Is(err, tc.want) || (err == nil) != (p != nil) {
			t.Errorf("%s: %+v, %v; want %v", tc.name, p, err, tc.want)
		}
	}
	if _, err := v.Check(ctx, []byte(good)); err != nil {
		t.Fatalf("the good token: %v", err)
	}
}

// TestRotation: after a rotation tokens carry the new kid, old ones still
// verify, on this node and on another; after the old key is retired and
// the nodes reload, its tokens are refused; the JWKS lists the keys not
// retired.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addUser(t, s, "alice", RoleAdmin)
	v := newTestVerifier(t, s)
	old, _, _, err := v.Login(ctx, s, "alice", testPassword, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldKid := tokenKid(t, old)
	other := newTestVerifier(t, s) // another node, loaded before the rotation

	newKid, err := RotateSigningKey(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("the rotation reused the kid")
	}
	if err := v.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, _, _, err := v.Login(ctx, s, "alice", testPassword, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if kid := tokenKid(t, fresh); kid != newKid {
		t.Fatalf("a token after the rotation has kid %q, want %q", kid, newKid)
	}
	if !slices.Equal(jwksKids(t, v.JWKS()), []string{newKid, oldKid}) {
		t.Fatalf("JWKS after the rotation: %s", v.JWKS())
	}
	// The other node does not know the new kid: CheckLoaded refuses, and
	// Check reloads for the miss and accepts.
	if _, err := other.CheckLoaded([]byte(fresh)); !errors.Is(err, ErrUnknown) {
		t.Fatalf("CheckLoaded of a new kid on another node: %v, want ErrUnknown", err)
	}
	for name, ver := range map[string]*Verifier{"this node": v, "another node": other} {
		for tokName, tok := range map[string]string{"old": old, "fresh": fresh} {
			if p, err := ver.Check(ctx, []byte(tok)); err != nil || !p.Allows(Cluster) {
				t.Fatalf("%s, the %s token: %+v %v", name, tokName, p, err)
			}
		}
	}

	if ok, err := s.RetireSigningKey(ctx, oldKid); err != nil || !ok {
		t.Fatalf("retire %s: %v %v", oldKid, ok, err)
	}
	for _, ver := range []*Verifier{v, other} {
		if err := ver.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ver.Check(ctx, []byte(old)); !errors.Is(err, ErrUnknown) {
			t.Fatalf("a token of a retired key: %v, want ErrUnknown", err)
		}
		if _, err := ver.Check(ctx, []byte(fresh)); err != nil {
			t.Fatalf("a token of the key not retired: %v", err)
		}
		if !slices.Equal(jwksKids(t, ver.JWKS()), []string{newKid}) {
			t.Fatalf("JWKS after retiring %s: %s", oldKid, ver.JWKS())
		}
	}
}

// jwksKids checks a JWKS's form and returns its kids in order.
func jwksKids(t *testing.T, b []byte) []string {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	var kids []string
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || err != nil || len(x) != ed25519.PublicKeySize || len(k) != 6 {
			t.Fatalf("JWKS key %v", k)
		}
		kids = append(kids, k["kid"])
	}
	return kids
}

// TestJWKSVerifiesTokens: another service verifies a token with the key
// the JWKS gives for its kid, and nothing else.
func TestJWKSVerifiesTokens(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addUser(t, s, "carl", RoleCustomer)
	v := newTestVerifier(t, s)
	tok, _, _, err := v.Login(ctx, s, "carl", testPassword, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct{ Kid, X string } `json:"keys"`
	}
	if err := json.Unmarshal(v.JWKS(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != tokenKid(t, tok) {
		t.Fatalf("JWKS %s: %v", v.JWKS(), err)
	}
	x, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X) //nolint:errcheck // checked by ed25519.Verify
	i := strings.LastIndexByte(tok, '.')
	rawSig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || !ed25519.Verify(ed25519.PublicKey(x), []byte(tok[:i]), rawSig) {
		t.Fatalf("the JWKS key does not verify the token: %v", err)
	}
}

// TestInvalidSigningKeysAreSkipped: a row that is not a valid Ed25519 pair
// neither signs nor verifies; the valid ones still load.
func TestInvalidSigningKeysAreSkipped(t *testing.T) {
	seed := sha256.Sum256([]byte("a"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	otherSeed := sha256.Sum256([]byte("b"))
	good := storage.SigningKey{ID: "good", Algorithm: "EdDSA", PrivateKey: seed[:], PublicKey: pub}
	sk, bad := newSigningKeys([]storage.SigningKey{
		{ID: "mismatched", Algorithm: "EdDSA", PrivateKey: otherSeed[:], PublicKey: pub},
		{ID: "hs", Algorithm: "HS256", PrivateKey: seed[:], PublicKey: pub},
		{ID: "short", Algorithm: "EdDSA", PrivateKey: seed[:31], PublicKey: pub},
		{ID: "", Algorithm: "EdDSA", PrivateKey: seed[:], PublicKey: pub},
		good,
		{ID: "good", Algorithm: "EdDSA", PrivateKey: otherSeed[:], PublicKey: ed25519.NewKeyFromSeed(otherSeed[:]).Public().(ed25519.PublicKey)},
	})
	if len(bad) != 4 || len(sk.verify) != 1 || sk.signer == nil || sk.signer.kid != "good" || !sk.verify["good"].Equal(pub) {
		t.Fatalf("loaded %d keys, signer %+v, %d refused (%v)", len(sk.verify), sk.signer, len(bad), bad)
	}
	if !slices.Equal(jwksKids(t, sk.jwks), []string{"good"}) {
		t.Fatalf("JWKS %s", sk.jwks)
	}
}

// fuzzVerifier is a verifier with no store, a fixed signing key and one
// disabled user; its keys count as loaded after every miss, which then
// does not reload.
func fuzzVerifier(tb testing.TB) *Verifier {
	tb.Helper()
	seed := sha256.Sum256([]byte("bursar fuzz signing key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	sk, bad := newSigningKeys([]storage.SigningKey{{ID: fuzzKid, Algorithm: "EdDSA", PrivateKey: seed[:], PublicKey: priv.Public().(ed25519.PublicKey)}})
	if len(bad) != 0 {
		tb.Fatal(bad)
	}
	return &Verifier{keys: map[string]key{}, signing: sk, disabled: map[string]struct{}{fuzzDisabledUser: {}}, log: quiet,
		loadedAt: time.Now().Add(time.Hour), reload: make(chan struct{}, 1), logins: make(chan struct{}, LoginsMax)}
}

const (
	fuzzKid          = "fuzzkidfuzzkid23"
	fuzzUser         = "6f1c1a52-3b1e-4e0c-9d8b-2a6f0e1c7d44"
	fuzzDisabledUser = "0b7e2d6a-91c4-4f3e-8a55-c3d2e1f0a9b8"
)

// FuzzCheckToken: whatever the bearer bytes, Check does not panic,
// returns one of its errors (whose texts are fit for clients), and
// accepts only tokens the verifier's key signed, exactly as signed:
// Ed25519 signatures are deterministic, so signing the header and
// payload again must give the token byte for byte. (A set of the tokens
// signed here would not do: each fuzzing worker signs its own.)
func FuzzCheckToken(f *testing.F) {
	v := fuzzVerifier(f)
	k := v.loadedSigner()
	for _, p := range []*Principal{
		{UserID: fuzzUser, Name: "fuzz", Role: RoleTeller},
		{UserID: uuid.NewString(), Name: "carl@example.com", Role: RoleCustomer},
	} {
		tok, _, err := k.sign(p, time.Now(), time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(tok))
	}
	// Refused: a disabled user's, and an expired one.
	for _, p := range []struct {
		p   Principal
		now time.Time
	}{
		{Principal{UserID: fuzzDisabledUser, Name: "gone", Role: RoleAdmin}, time.Now()},
		{Principal{UserID: fuzzUser, Name: "fuzz", Role: RoleTeller}, time.Now().Add(-3 * time.Hour)},
	} {
		tok, _, err := k.sign(&p.p, p.now, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(tok))
	}
	known := []error{ErrMalformed, ErrUnknown, ErrRevoked, ErrExpired, ErrBadToken, ErrUserDisabled}
	f.Fuzz(func(t *testing.T, token []byte) {
		p, err := v.Check(context.Background(), token)
		if err != nil {
			if p != nil || !slices.Contains(known, err) {
				t.Fatalf("Check(%q) = %+v, %v: not one of its errors", token, p, err)
			}
			return
		}
		i := bytes.LastIndexByte(token, '.')
		if i < 0 || p == nil || !p.IsUser() ||
			string(token[:i])+"."+base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.key, token[:i])) != string(token) {
			t.Fatalf("Check(%q) accepted a token it did not sign: %+v", token, p)
		}
	})
}
