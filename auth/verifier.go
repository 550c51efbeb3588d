package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/storage"
)

// Source is where keys come from: PostgreSQL (storage.Store).
type Source interface {
	LiveAPIKeys(ctx context.Context) ([]storage.APIKey, error)
	SigningKeys(ctx context.Context) ([]storage.SigningKey, error)
	DisabledUserIDs(ctx context.Context) ([]string, error)
}

// Verifier checks tokens, API keys and users' JWTs, against what it
// loaded: the API keys, the signing keys and the disabled users. It
// reloads them every Refresh, which bounds how long a revoked key, a
// retired signing key or a disabled user's token keeps working on this
// node; a token with a key ID or kid it does not know makes it reload at
// once, at most once per missReloadEvery, so that a key created a moment
// ago works at once while random tokens cannot make every request a query
// (they share one reload a second, and wait for it). While PostgreSQL is
// down it keeps what it has.
type Verifier struct {
	src     Source
	refresh time.Duration
	log     *slog.Logger

	mu       sync.RWMutex
	keys     map[string]key
	signing  signingKeys
	disabled map[string]struct{} // user IDs
	loadedAt time.Time

	signerMu sync.Mutex    // held while creating the first signing key (signer)
	logins   chan struct{} // a token for each login checking a password (LoginsMax)

	reload       chan struct{} // one load at a time: held while it has its token (lockReload)
	missedAt     time.Time     // when the last reload for a miss started (under reload)
	missFailedAt time.Time     // when the last reload for a miss failed (under reload)

	// Counters, read by the node's metrics: loads and failed loads; logins
	// that got a token, were refused (ErrBadLogin), and waited in vain for
	// a turn (ErrLoginBusy).
	Loads, LoadErrors                atomic.Uint64
	Logins, LoginFailures, LoginBusy atomic.Uint64
}

type key struct {
	hash      [32]byte
	principal Principal
	revoked   bool
}

// missReloadEvery bounds the reloads unknown key IDs cause.
const missReloadEvery = time.Second

// NewVerifier loads the keys once; refresh is the reload interval (the
// bound on revoking a key, retiring a signing key and disabling a user).
func NewVerifier(ctx context.Context, src Source, refresh time.Duration, log *slog.Logger) (*Verifier, error) {
	v := &Verifier{src: src, refresh: refresh, log: log, keys: map[string]key{}, reload: make(chan struct{}, 1), logins: make(chan struct{}, LoginsMax)}
	if err := v.load(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Run reloads the keys every refresh until ctx ends.
func (v *Verifier) Run(ctx context.Context) {
	t := time.NewTicker(v.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := v.load(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("reloading API keys, signing keys and disabled users failed; keeping those loaded before", "err", err, "loaded_at", v.LoadedAt())
		}
	}
}

// Reload loads the keys now.
func (v *Verifier) Reload(ctx context.Context) error { return v.load(ctx) }

func (v *Verifier) load(ctx context.Context) error {
	v.reload <- struct{}{}
	defer v.unlockReload()
	return v.loadLocked(ctx, 5*time.Second)
}

// loadLocked loads the API keys, the signing keys and the disabled users
// within timeout, all or nothing; the caller holds the reload token.
// LoadedAt becomes the moment the first query started: a row committed
// after it may be missing from the result.
func (v *Verifier) loadLocked(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	started := time.Now()
	rows, err := v.src.LiveAPIKeys(ctx)
	if err != nil {
		v.LoadErrors.Add(1)
		return err
	}
	signingRows, err := v.src.SigningKeys(ctx)
	if err != nil {
		v.LoadErrors.Add(1)
		return err
	}
	disabledIDs, err := v.src.DisabledUserIDs(ctx)
	if err != nil {
		v.LoadErrors.Add(1)
		return err
	}
	signing, bad := newSigningKeys(signingRows)
	for _, err := range bad {
		v.log.Warn("a signing key is invalid; it neither signs nor verifies", "err", err)
	}
	disabled := make(map[string]struct{}, len(disabledIDs))
	for _, id := range disabledIDs {
		disabled[id] = struct{}{}
	}
	keys := make(map[string]key, len(rows))
	for _, r := range rows {
		if len(r.Hash) != 32 {
			continue
		}
		k := key{revoked: r.RevokedAt != nil, principal: Principal{KeyID: r.ID, Name: r.Name}}
		copy(k.hash[:], r.Hash)
		for _, s := range r.Scopes {
			k.principal.scopes = append(k.principal.scopes, Scope(s))
		}
		keys[r.ID] = k
	}
	v.mu.Lock()
	v.keys, v.signing, v.disabled, v.loadedAt = keys, signing, disabled, started
	v.mu.Unlock()
	v.Loads.Add(1)
	return nil
}

// LoadedAt is when the keys were last loaded.
func (v *Verifier) LoadedAt() time.Time {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.loadedAt
}

// Why a token is refused. The texts are shown to clients.
var (
	ErrMalformed    = errors.New("the bearer token is neither an API key (bsk_…) nor a user's token (JWT)")
	ErrUnknown      = errors.New("no such API key, or the token's signing key is unknown")
	ErrRevoked      = errors.New("the API key is revoked")
	ErrExpired      = errors.New("the token has expired")
	ErrBadToken     = errors.New("the token is invalid")
	ErrUserDisabled = errors.New("the user is disabled")
)

// Check returns the principal of token, an API key or a user's JWT, or
// why it is refused.
func (v *Verifier) Check(ctx context.Context, token []byte) (*Principal, error) {
	return v.check(ctx, token, true)
}

// CheckLoaded is Check against the keys loaded, without a reload for an
// unknown ID: for a caller that is being throttled.
func (v *Verifier) CheckLoaded(token []byte) (*Principal, error) {
	return v.check(context.Background(), token, false)
}

func (v *Verifier) check(ctx context.Context, token []byte, reload bool) (*Principal, error) {
	if len(token) > TokenLenMax {
		return nil, ErrMalformed
	}
	if id, ok := KeyID(token); ok {
		return v.checkKey(ctx, token, id, reload)
	}
	if isJWT(token) {
		return v.checkJWT(ctx, string(token), reload)
	}
	return nil, ErrMalformed
}

// checkKey checks an API key's token, whose key ID is id.
func (v *Verifier) checkKey(ctx context.Context, token []byte, id string, reload bool) (*Principal, error) {
	k, found := v.lookup(id)
	if !found && reload && v.missReload(ctx, time.Now()) {
		k, found = v.lookup(id)
	}
	// The hash is compared even for an unknown ID (against zeros), so the
	// time taken tells nothing of which IDs exist.
	h := Hash(string(token))
	match := subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1
	switch {
	case !found || !match:
		return nil, ErrUnknown
	case k.revoked:
		return nil, ErrRevoked
	}
	p := k.principal
	return &p, nil
}

func (v *Verifier) lookup(id string) (key, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.keys[id]
	return k, ok
}

// missReload makes sure the keys were loaded after missedAt, the moment a
// token's key ID or kid was not found: a key created a moment ago is then
// found.
// Reloads for misses are at least missReloadEvery apart and bounded by
// missReloadTimeout, and misses share them: a miss waits (without holding
// the lock) for the next one rather than cause its own, so a flood of
// unknown tokens costs one query a second. After a failed reload (the
// database down or hanging), misses within missReloadEvery give up at
// once instead of queueing behind one another. It reports whether the
// keys are now newer than the miss.
func (v *Verifier) missReload(ctx context.Context, missedAt time.Time) bool {
	for {
		if v.LoadedAt().After(missedAt) {
			return true
		}
		if !v.lockReload(ctx, missReloadTimeout) {
			return false // a load has held it that long: the database hangs
		}
		switch {
		case v.LoadedAt().After(missedAt):
			v.unlockReload()
			return true // loaded meanwhile, by another miss or the refresh
		case time.Since(v.missFailedAt) < missReloadEvery:
			v.unlockReload()
			return false
		}
		wait := missReloadEvery - time.Since(v.missedAt)
		if wait <= 0 {
			break // our turn; still holding the lock
		}
		v.unlockReload()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	defer v.unlockReload()
	v.missedAt = time.Now()
	if err := v.loadLocked(ctx, missReloadTimeout); err != nil {
		v.missFailedAt = time.Now()
		v.log.Warn("reloading keys for an unknown key ID or kid failed", "err", err)
		return false
	}
	return true
}

// lockReload takes the reload token, waiting at most d; it reports
// whether it has it.
func (v *Verifier) lockReload(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case v.reload <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (v *Verifier) unlockReload() { <-v.reload }

// missReloadTimeout bounds a reload a miss makes, and its wait for one in
// progress.
const missReloadTimeout = time.Second
