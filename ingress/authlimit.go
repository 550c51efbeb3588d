package ingress

import (
	"net/netip"
	"sync"
	"time"
)

// authThrottle slows down an address that keeps failing authentication
// (no credential, a malformed or unknown one, a revoked key): each source
// address has a bucket of limit failures that refills over a minute. Once
// it is empty, every request from that address that needs a credential is
// refused with 429 RATE_LIMITED and Retry-After, before its credential is
// even looked at, so a guessing client learns nothing more until the
// bucket refills. Requests with a good key spend nothing.
//
// Behind a proxy every client shares the proxy's address: raise the limit
// or set it to 0 (off) there.
//
// The same throttle, keyed by username, slows down password guessing
// against one user from many addresses (loginThrottle).
type authThrottle = failThrottle[netip.Addr]

// failThrottle is a table of failure buckets keyed by K.
type failThrottle[K comparable] struct {
	limit float64    // failures a key may make in a burst
	rate  float64    // failures per second it earns back
	max   int        // keys tracked at most
	key   func(K) K  // the bucket a key spends from
	mu    sync.Mutex //
	by    map[K]*failBucket
	swept time.Time // the last sweep of a full table
	now   func() time.Time
}

// throttleKey is the bucket an address spends from: itself for IPv4, its
// /64 for IPv6 (one host commonly holds a whole /64).
func throttleKey(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}

type failBucket struct {
	tokens float64
	at     time.Time
}

// authThrottleAddrsMax bounds the addresses tracked; a full bucket (an
// address that failed long enough ago) is dropped first.
const authThrottleAddrsMax = 65_536

func newAuthThrottle(perMinute int) *authThrottle {
	return newFailThrottle(perMinute, authThrottleAddrsMax, throttleKey)
}

// loginThrottle is failed logins per username: a bucket of perMinute
// failures per user that refills over a minute.
type loginThrottle = failThrottle[string]

// loginThrottleUsersMax bounds the usernames tracked.
const loginThrottleUsersMax = 65_536

func newLoginThrottle(perMinute int) *loginThrottle {
	return newFailThrottle(perMinute, loginThrottleUsersMax, func(u string) string { return u })
}

func newFailThrottle[K comparable](perMinute, maxKeys int, key func(K) K) *failThrottle[K] {
	if perMinute <= 0 {
		return nil
	}
	return &failThrottle[K]{limit: float64(perMinute), rate: float64(perMinute) / 60, max: maxKeys,
		key: key, by: make(map[K]*failBucket), now: time.Now}
}

// refill brings b up to now; the caller holds t.mu.
func (t *failThrottle[K]) refill(b *failBucket, now time.Time) {
	b.tokens = min(t.limit, b.tokens+now.Sub(b.at).Seconds()*t.rate)
	b.at = now
}

// wait returns how long addr must wait before its credential is looked
// at again (0: not throttled).
func (t *failThrottle[K]) wait(addr K) time.Duration {
	addr = t.key(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.by[addr]
	if b == nil {
		return 0
	}
	t.refill(b, t.now())
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / t.rate * float64(time.Second))
}

// clean reports whether addr has no failure to earn back: never failed,
// or its bucket is full again.
func (t *failThrottle[K]) clean(addr K) bool {
	addr = t.key(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.by[addr]
	if b == nil {
		// Unknown: clean, unless the table is full, when a failure from
		// it could not have been recorded.
		return len(t.by) < t.max
	}
	t.refill(b, t.now())
	return b.tokens >= t.limit
}

// fail spends one of addr's failures; it reports false when addr could not
// be tracked (every slot holds an address still throttled or refilling).
func (t *failThrottle[K]) fail(addr K) bool {
	addr = t.key(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	b := t.by[addr]
	if b == nil {
		if len(t.by) >= t.max {
			// A sweep costs one pass over the table: at most one a
			// second, so a flood of new addresses cannot make every
			// failure (and every request waiting on t.mu) pay for one.
			if now.Sub(t.swept) < time.Second {
				return false
			}
			t.swept = now
			for a, old := range t.by {
				if t.refill(old, now); old.tokens >= t.limit {
					delete(t.by, a)
				}
			}
			if len(t.by) >= t.max {
				return false
			}
		}
		b = &failBucket{tokens: t.limit, at: now}
		t.by[addr] = b
	}
	t.refill(b, now)
	b.tokens--
	return true
}
