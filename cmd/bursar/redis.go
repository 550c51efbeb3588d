package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/bursar/bursar/ingress"
	"github.com/redis/go-redis/v9"
)

// redisOptions parses --redis-url: redis://[user:password@]host:port[/db]
// or rediss:// (TLS, checked against the system's roots), as go-redis
// reads them, with bounded timeouts: Redis only ever makes the node
// faster or shares its limits, so a slow one must not hold a request.
func redisOptions(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis:// or rediss:// (TLS)", u.Scheme)
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	opts.DialTimeout = time.Second
	opts.ReadTimeout = 200 * time.Millisecond
	opts.WriteTimeout = 200 * time.Millisecond
	opts.PoolTimeout = 200 * time.Millisecond
	opts.MaxRetries = -1 // none: a retried rate-limit script could charge twice, and a retry is the node's own limit, not a second wait
	// The call's context (50 ms) bounds reads and writes too, not only
	// the dial and the pool.
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

// startRedis connects --redis-url (when set) and builds the rate limiter
// of --rate-limit-* (nil when none is set; shared through Redis when it
// is up) and the idempotency fast path (nil without Redis or with
// --redis-idempotency=false).
func (n *runningNode) startRedis() (*ingress.RedisLink, *ingress.RateLimiter, *ingress.IdemCache, error) {
	f := n.f
	limits := ingress.RateLimits{CredentialWrites: f.rateCredWrites, CredentialReads: f.rateCredReads,
		AddressWrites: f.rateAddrWrites, AddressReads: f.rateAddrReads}
	var client redis.UniversalClient
	if f.redisURL != "" {
		opts, err := redisOptions(f.redisURL)
		if err != nil {
			return nil, nil, nil, &exitError{code: 2, err: fmt.Errorf("--redis-url: %w", err)}
		}
		c := redis.NewClient(opts)
		n.deferClose(func() { c.Close() })
		client = c
	}
	// Keys name the ledger: two clusters sharing a Redis, or a ledger
	// restored or rebuilt while Redis kept its keys (a new topic ID),
	// never read each other's.
	link := ingress.NewRedisLink(client, "bursar:"+n.logID+":", n.log.With("component", "redis"), n.reg)
	ctx, cancel := context.WithCancel(context.Background())
	n.deferClose(cancel)
	go link.Run(ctx)
	var rl *ingress.RateLimiter
	if limits.On() {
		rl = ingress.NewRateLimiter(limits, link, n.reg)
	}
	var idem *ingress.IdemCache
	if link.Configured() && f.redisIdempotency {
		idem = ingress.NewIdemCache(link, n.reg)
		go idem.Run(ctx)
	}
	return link, rl, idem, nil
}
