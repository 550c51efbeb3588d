package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/bursar/bursar/ingress"
	"github.com/prometheus/client_golang/prometheus"
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
	opts.MaxRetries = 0 // a retry is the node's own limit, not a second wait
	return opts, nil
}

// startRateLimits builds the rate limiter of --rate-limit-* (nil when
// none is set), sharing them through --redis-url when it is given.
func (n *runningNode) startRateLimits() (*ingress.RateLimiter, error) {
	f := n.f
	limits := ingress.RateLimits{CredentialWrites: f.rateCredWrites, CredentialReads: f.rateCredReads,
		AddressWrites: f.rateAddrWrites, AddressReads: f.rateAddrReads}
	var client redis.UniversalClient
	if f.redisURL != "" {
		opts, err := redisOptions(f.redisURL)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("--redis-url: %w", err)}
		}
		c := redis.NewClient(opts)
		n.deferClose(func() { c.Close() })
		client = c
		up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bursar_redis_up", Help: "1 while Redis answers a ping (each second), 0 while it does not."},
			redisPinger(c))
		n.reg.MustRegister(up)
	}
	if !limits.On() {
		if client != nil {
			n.log.Info("--redis-url is set but no --rate-limit-* is: Redis has nothing to do in this release beyond that")
		}
		return nil, nil
	}
	rl := ingress.NewRateLimiter(limits, client, n.log.With("component", "ratelimit"), n.reg)
	ctx, cancel := context.WithCancel(context.Background())
	n.deferClose(cancel)
	go rl.Run(ctx)
	return rl, nil
}

// redisPinger returns the value of bursar_redis_up: the last ping's
// outcome, refreshed at most once a second.
func redisPinger(c *redis.Client) func() float64 {
	var (
		mu   sync.Mutex
		last time.Time
		up   float64
	)
	return func() float64 {
		mu.Lock() // scrapes may run at once
		defer mu.Unlock()
		if time.Since(last) >= time.Second {
			last = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			up = 0
			if c.Ping(ctx).Err() == nil {
				up = 1
			}
			cancel()
		}
		return up
	}
}
