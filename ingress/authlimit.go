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
type authThrottle struct {
	limit float64    // failures an address may make in a burst
	rate  float64    // failures per second it earns back
	max   int        // addresses tracked at most
	mu    sync.Mutex //
	by    map[netip.Addr]*failBucket
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
	if perMinute <= 0 {
		return nil
	}
	return &authThrottle{limit: float64(perMinute), rate: float64(perMinute) / 60, max: authThrottleAddrsMax,
		by: make(map[netip.Addr]*failBucket), now: time.Now}
}

// refill brings b up to now; the caller holds t.mu.
func (t *authThrottle) refill(b *failBucket, now time.Time) {
	b.tokens = min(t.limit, b.tokens+now.Sub(b.at).Seconds()*t.rate)
	b.at = now
}

// wait returns how long addr must wait before its credential is looked
// at again (0: not throttled).
func (t *authThrottle) wait(addr netip.Addr) time.Duration {
	addr = throttleKey(addr)
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

// fail spends one of addr's failures; it reports false when addr could not
// be tracked (every slot holds an address still throttled or refilling).
func (t *authThrottle) fail(addr netip.Addr) bool {
	addr = throttleKey(addr)
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
