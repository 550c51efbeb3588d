package ingress

import (
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// RateLimits are the request budgets per second (0: no limit), each with
// a burst of one second's worth.
type RateLimits struct {
	// CredentialWrites and CredentialReads are per API key or user.
	CredentialWrites, CredentialReads int
	// AddressWrites and AddressReads are per source address (an IPv6
	// client per /64).
	AddressWrites, AddressReads int
}

// On reports whether any limit is set.
func (l RateLimits) On() bool {
	return l.CredentialWrites > 0 || l.CredentialReads > 0 || l.AddressWrites > 0 || l.AddressReads > 0
}

// RateLimiter enforces RateLimits: shared by every ingress node through
// Redis (GCRA, redis_rate) while the RedisLink is up, and by this node
// alone (the same budget, golang.org/x/time/rate) while it is not or when
// there is no Redis.
type RateLimiter struct {
	limits RateLimits
	redis  *redis_rate.Limiter // nil without Redis
	link   *RedisLink

	mu    sync.Mutex
	local map[string]*rate.Limiter

	rejected *prometheus.CounterVec // by limit, class
	fallback prometheus.Counter
	evicted  prometheus.Counter
}

// localKeysMax bounds the node's own limiter state; beyond it a random
// key's state goes (counted): that key starts again with a full burst.
const localKeysMax = 100_000

// NewRateLimiter returns a limiter for limits, shared through link while
// it is up (nil: never). reg registers its metrics (nil: none).
func NewRateLimiter(limits RateLimits, link *RedisLink, reg prometheus.Registerer) *RateLimiter {
	l := &RateLimiter{
		limits: limits, link: link,
		local: make(map[string]*rate.Limiter),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_ratelimit_rejected_total", Help: "Requests refused with 429 RATE_LIMITED, by limit (credential, address), class (write, read) and route.",
		}, []string{"limit", "class", "route"}),
		fallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_ratelimit_local_total", Help: "Rate limit decisions this node took alone because Redis was down, slow or not configured.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_ratelimit_local_evicted_total", Help: "Keys dropped from the node's own limiter state at its bound (100000 keys).",
		}),
	}
	if link.Configured() {
		l.redis = redis_rate.NewLimiter(link.Client)
	}
	if reg != nil {
		reg.MustRegister(l.rejected, l.fallback, l.evicted)
	}
	return l
}

// RedisUp reports whether the limiter shares its limits through Redis now.
func (l *RateLimiter) RedisUp() bool { return l.redis != nil && l.link.Up() }

// decision is one limit's answer.
type decision struct {
	allowed    bool
	limit      int
	remaining  int
	retryAfter time.Duration
	resetAfter time.Duration
}

// allow takes one request from key's budget of perSec.
func (l *RateLimiter) allow(key string, perSec int) decision {
	if l.RedisUp() {
		ctx, cancel := l.link.ctx()
		res, err := l.redis.Allow(ctx, key, redis_rate.PerSecond(perSec))
		cancel()
		if err == nil {
			return decision{allowed: res.Allowed > 0, limit: perSec, remaining: res.Remaining, retryAfter: res.RetryAfter, resetAfter: res.ResetAfter}
		}
		l.link.failed("rate_limit", err)
	}
	l.fallback.Inc()
	return l.allowLocal(key, perSec)
}

func (l *RateLimiter) allowLocal(key string, perSec int) decision {
	now := time.Now()
	l.mu.Lock()
	lim, ok := l.local[key]
	if !ok {
		if len(l.local) >= localKeysMax {
			for k := range l.local { // a random one
				delete(l.local, k)
				l.evicted.Inc()
				break
			}
		}
		lim = rate.NewLimiter(rate.Limit(perSec), perSec)
		l.local[key] = lim
	}
	r := lim.ReserveN(now, 1)
	d := decision{limit: perSec}
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		d.retryAfter = delay
	} else {
		d.allowed = true
	}
	tokens := lim.TokensAt(now)
	l.mu.Unlock()
	d.remaining = max(0, int(math.Floor(tokens)))
	d.resetAfter = time.Duration((float64(perSec) - tokens) / float64(perSec) * float64(time.Second))
	return d
}

// check applies the limits of class (write or read) to a request from
// addr by principal (nil: before or without authentication, address only),
// writes the RateLimit-* headers of the tightest limit, and returns the
// refusal when a budget is spent.
func (l *RateLimiter) check(ctx *fasthttp.RequestCtx, write bool, addr netip.Addr, principal string) *apiError {
	class, addrLimit, credLimit := "read", l.limits.AddressReads, l.limits.CredentialReads
	if write {
		class, addrLimit, credLimit = "write", l.limits.AddressWrites, l.limits.CredentialWrites
	}
	var tight *decision
	try := func(kind, key string, perSec int) *apiError {
		if perSec <= 0 {
			return nil
		}
		d := l.allow(l.link.prefix()+"rate:"+kind+":"+class+":"+key, perSec)
		if tight == nil || d.remaining < tight.remaining || !d.allowed {
			tight = &d
		}
		if d.allowed {
			return nil
		}
		ctx.SetUserValue(rateLimitedKey, rateRefusal{limit: kind, class: class})
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(max(d.retryAfter, time.Millisecond).Seconds()))))
		return bad(ledger.CodeRateLimited, "too many "+class+"s for this "+kind+": at most "+strconv.Itoa(perSec)+" a second; retry after Retry-After seconds")
	}
	var err *apiError
	if principal == "" {
		if addr.IsValid() {
			err = try("address", addrKey(addr), addrLimit)
		}
	} else {
		err = try("credential", principal, credLimit)
	}
	h := &ctx.Response.Header
	if prev, err := strconv.Atoi(string(h.Peek("RateLimit-Remaining"))); err == nil && tight != nil && tight.allowed && prev <= tight.remaining {
		tight = nil // the address's budget, checked first, is the tighter one
	}
	if tight != nil {
		h.Set("RateLimit-Limit", strconv.Itoa(tight.limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(tight.remaining))
		h.Set("RateLimit-Reset", strconv.Itoa(int(math.Ceil(tight.resetAfter.Seconds()))))
	}
	return err
}

// rateLimitedKey holds the rateRefusal of a request a limit refused,
// counted by route once the route is known (countRefusal).
const rateLimitedKey = "bursar.ratelimited"

type rateRefusal struct{ limit, class string }

// countRefusal counts the request's refusal, if a limit refused it, under
// its route.
func (l *RateLimiter) countRefusal(ctx *fasthttp.RequestCtx, route string) {
	if r, ok := ctx.UserValue(rateLimitedKey).(rateRefusal); ok && l != nil {
		l.rejected.WithLabelValues(r.limit, r.class, route).Inc()
	}
}

// addrKey is an address as its limit counts it: IPv4 whole, IPv6 by /64
// (one host gets a /64 and picks addresses in it freely).
func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
