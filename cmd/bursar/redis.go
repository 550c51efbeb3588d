package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bursar/bursar/ingress"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// newRedisClient builds the client of --redis-url, without connecting:
//   - redis://[user:password@]host:port[/db], or rediss:// (TLS, checked
//     against the system's roots): one server;
//   - the same with ?master_name=NAME (and more sentinels as &addr=H:P):
//     Redis Sentinel, whose host:port are sentinels (the credentials are
//     the master's; sentinel_username/sentinel_password for theirs are
//     not read from the URL).
//   - the same with ?cluster=true (and more seed nodes as &addr=H:P):
//     Redis Cluster, whose host:port are seed nodes; the client follows
//     the cluster's slots (every key Bursar uses is a single key, so
//     nothing needs hash tags).
//
// Timeouts are bounded: Redis only ever makes the node faster or shares
// its limits, so a slow one must not hold a request; the call's context
// (50 ms) bounds reads and writes too, and nothing is retried (a retried
// rate-limit script could charge twice).
func newRedisClient(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis:// or rediss:// (TLS)", u.Scheme)
	}
	q := u.Query()
	if q.Has("cluster") {
		if q.Get("cluster") != "true" || len(q["cluster"]) != 1 {
			return nil, errors.New("cluster: want cluster=true")
		}
		if q.Has("master_name") {
			return nil, errors.New("cluster=true and master_name: a URL names a Redis Cluster or Sentinels, not both")
		}
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, errors.New("cluster=true with a database number: a Redis Cluster has only database 0")
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
		u.Path = ""
		opts, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, err
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = time.Second, 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		// The cluster client resends a call on a connection error and
		// follows MOVED up to MaxRedirects times: no resend (a rate-limit
		// script that ran could charge twice); a MOVED fails the call (an
		// error Redis answered: counted, not an outage) and the client
		// reloads the slots for the next one.
		opts.MaxRetries, opts.MaxRedirects, opts.ContextTimeoutEnabled = -1, -1, true
		return redis.NewClusterClient(opts), nil
	}
	if q.Get("master_name") != "" {
		opts, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, err
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = time.Second, 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		opts.MaxRetries, opts.ContextTimeoutEnabled = -1, true
		return redis.NewFailoverClient(opts), nil
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = time.Second, 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	opts.MaxRetries, opts.ContextTimeoutEnabled = -1, true
	return redis.NewClient(opts), nil
}

// startRedis connects --redis-url (when set): the link every Redis user
// shares and, with --redis-balances, the cache of committed balances the
// engine publishes to and the eventual reads read.
func (n *runningNode) startRedis(context.Context) error {
	f := n.f
	var client redis.UniversalClient
	if f.redisURL != "" {
		c, err := newRedisClient(f.redisURL)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--redis-url: %w", err)}
		}
		n.deferClose(func() { c.Close() })
		client = c
	}
	// Keys name the ledger: two clusters sharing a Redis, or a ledger
	// restored or rebuilt while Redis kept its keys (a new topic ID),
	// never read each other's.
	n.redis = ingress.NewRedisLink(client, "bursar:"+n.logID+":", n.log.With("component", "redis"), n.reg)
	ctx, cancel := context.WithCancel(context.Background())
	n.deferClose(cancel)
	n.redisCtx = ctx
	go n.redis.Run(ctx)
	if n.redis.Configured() && f.redisBalances {
		n.balances = ingress.NewBalanceCache(n.redis, f.redisBalanceTTL, n.reg)
		go n.balances.Run(ctx)
	}
	return nil
}

// apiRedis builds the rate limiter of --rate-limit-* (nil when none is
// set; shared through Redis when it is up) and the idempotency fast path
// (nil without Redis or with --redis-idempotency=false).
func (n *runningNode) apiRedis() (*ingress.RateLimiter, *ingress.IdemCache) {
	f := n.f
	limits := ingress.RateLimits{CredentialWrites: f.rateCredWrites, CredentialReads: f.rateCredReads,
		AddressWrites: f.rateAddrWrites, AddressReads: f.rateAddrReads}
	var rl *ingress.RateLimiter
	if limits.On() {
		rl = ingress.NewRateLimiter(limits, n.redis, n.reg)
	}
	var idem *ingress.IdemCache
	if n.redis.Configured() && f.redisIdempotency {
		idem = ingress.NewIdemCache(n.redis, n.reg)
		go idem.Run(n.redisCtx)
	}
	return rl, idem
}

// accountsCommitted is the engine's hook for the balance cache (nil
// without one).
func (n *runningNode) accountsCommitted() func(map[uuid.UUID]*ledger.Account, time.Time) {
	if n.balances == nil {
		return nil
	}
	return n.balances.Publish
}
