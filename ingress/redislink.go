package ingress

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisLink is the node's Redis, shared by the rate limits, the
// idempotency fast path and the cached balances: a call that fails or times out marks it down,
// and every user skips it (the node works alone) until a probe succeeds,
// each second (Run). So a Redis that is down costs one timeout, not one
// per request, and the node uses it again without a restart once it is
// back. Redis never decides anything about money.
type RedisLink struct {
	Client  redis.UniversalClient
	Timeout time.Duration // of one call; default 50ms
	// Prefix starts every key: it names the ledger (its log's identity),
	// so that two clusters sharing a Redis, or a ledger rebuilt while
	// Redis kept its keys, never read each other's.
	Prefix string
	log    *slog.Logger
	up     atomic.Bool
	errors *prometheus.CounterVec
}

// NewRedisLink wraps client (nil: no Redis; every user works alone).
func NewRedisLink(client redis.UniversalClient, prefix string, log *slog.Logger, reg prometheus.Registerer) *RedisLink {
	l := &RedisLink{Client: client, Timeout: 50 * time.Millisecond, Prefix: prefix, log: log,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_redis_errors_total", Help: "Redis calls that failed or timed out, by operation (the node then works without Redis until a probe succeeds).",
		}, []string{"op"})}
	l.up.Store(client != nil)
	if reg != nil {
		reg.MustRegister(l.errors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bursar_redis_up", Help: "1 while the node uses Redis, 0 while it works without it (down, slow, or not configured).",
		}, func() float64 {
			if l.Up() {
				return 1
			}
			return 0
		}))
	}
	return l
}

// prefix is Prefix, "" without a link.
func (l *RedisLink) prefix() string {
	if l == nil {
		return ""
	}
	return l.Prefix
}

// Up reports whether Redis is to be used now.
func (l *RedisLink) Up() bool { return l != nil && l.Client != nil && l.up.Load() }

// Configured reports whether the node has a Redis at all.
func (l *RedisLink) Configured() bool { return l != nil && l.Client != nil }

// ctx returns the context of one call.
func (l *RedisLink) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), l.Timeout)
}

// failed counts a failed call of op and, unless Redis itself answered
// with an error that concerns the call (out of memory under noeviction,
// say: the others' calls may still pass), marks Redis down. Errors that
// concern every call are an outage: credentials refused (WRONGPASS,
// NOAUTH; not NOPERM, which refuses one command), a server loading its
// data set (LOADING), a replica answering after a failover (READONLY,
// MASTERDOWN), a cluster that lost slots (CLUSTERDOWN).
func (l *RedisLink) failed(op string, err error) {
	l.errors.WithLabelValues(op).Inc()
	var answered redis.Error
	if errors.As(err, &answered) && !outage(err) {
		return
	}
	if l.up.Swap(false) {
		l.log.Warn("a Redis call failed; the node works without Redis until it takes a probe write", "op", op, "err", err)
	}
}

// Run probes Redis each second while it is marked down (a write of a key
// that expires in a second), until ctx ends.
func (l *RedisLink) Run(ctx context.Context) {
	if !l.Configured() {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l.up.Load() {
			continue
		}
		// A write, not a PING: a replica or a cluster that lost slots
		// answers a PING, and the next call would fail again.
		pctx, cancel := context.WithTimeout(ctx, 4*l.Timeout)
		err := l.Client.Set(pctx, l.Prefix+"probe", "1", time.Second).Err()
		cancel()
		if err == nil {
			l.up.Store(true)
			l.log.Info("Redis answers again; the node uses it again")
		}
	}
}

// outage reports whether an error Redis answered concerns every call.
func outage(err error) bool {
	for _, p := range [...]string{"WRONGPASS", "NOAUTH", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
