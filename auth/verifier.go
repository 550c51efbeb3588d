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
	APIKeys(ctx context.Context) ([]storage.APIKey, error)
}

// Verifier checks tokens against the keys it loaded. It reloads them
// every Refresh, which bounds how long a revoked key keeps working on this
// node; a token with an ID it does not know makes it reload at once, at
// most once per missReloadEvery, so that a key created a moment ago works
// at once while random tokens cannot make every request a query (they
// share one reload a second, and wait for it). While PostgreSQL is down it
// keeps the keys it has.
type Verifier struct {
	src     Source
	refresh time.Duration
	log     *slog.Logger

	mu       sync.RWMutex
	keys     map[string]key
	loadedAt time.Time

	reload   sync.Mutex // one load at a time
	missedAt time.Time  // when the last reload for a miss started (under reload)

	// Counters, read by the node's metrics.
	Loads, LoadErrors atomic.Uint64
}

type key struct {
	hash      [32]byte
	principal Principal
	revoked   bool
}

// missReloadEvery bounds the reloads unknown key IDs cause.
const missReloadEvery = time.Second

// NewVerifier loads the keys once; refresh is the reload interval (the
// revocation bound).
func NewVerifier(ctx context.Context, src Source, refresh time.Duration, log *slog.Logger) (*Verifier, error) {
	v := &Verifier{src: src, refresh: refresh, log: log, keys: map[string]key{}}
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
			v.log.Warn("reloading API keys failed; keeping the keys loaded before", "err", err, "loaded_at", v.LoadedAt())
		}
	}
}

// Reload loads the keys now.
func (v *Verifier) Reload(ctx context.Context) error { return v.load(ctx) }

func (v *Verifier) load(ctx context.Context) error {
	v.reload.Lock()
	defer v.reload.Unlock()
	return v.loadLocked(ctx)
}

// loadLocked loads the keys; the caller holds v.reload.
func (v *Verifier) loadLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := v.src.APIKeys(ctx)
	if err != nil {
		v.LoadErrors.Add(1)
		return err
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
	v.keys, v.loadedAt = keys, time.Now()
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

// Why a token is refused.
var (
	ErrMalformed = errors.New("the bearer token is not an API key (bsk_…)")
	ErrUnknown   = errors.New("no such API key")
	ErrRevoked   = errors.New("the API key is revoked")
)

// Check returns the principal of token, or why it is refused.
func (v *Verifier) Check(ctx context.Context, token []byte) (*Principal, error) {
	id, ok := KeyID(token)
	if !ok {
		return nil, ErrMalformed
	}
	k, found := v.lookup(id)
	if !found && v.missReload(ctx, time.Now()) {
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
// token's ID was not found: a key created a moment ago is then found.
// Reloads for misses are at least missReloadEvery apart, and misses share
// them: a miss waits (at most about missReloadEvery) for the next one
// rather than cause its own, so a flood of unknown tokens costs one query
// a second and is slowed down, not the database. It reports whether the
// keys are now newer than the miss.
func (v *Verifier) missReload(ctx context.Context, missedAt time.Time) bool {
	v.reload.Lock()
	defer v.reload.Unlock()
	if v.LoadedAt().After(missedAt) {
		return true // loaded meanwhile, by another miss or the refresh
	}
	if wait := missReloadEvery - time.Since(v.missedAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	v.missedAt = time.Now()
	if err := v.loadLocked(ctx); err != nil {
		v.log.Warn("reloading API keys for an unknown key ID failed", "err", err)
		return false
	}
	return true
}
