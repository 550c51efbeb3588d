package ingress

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// IdemCache is the idempotency fast path: the final answer of a keyed
// write is stored in Redis under its account, owner constraint and key,
// with its request's fingerprint, until the actor would forget the key
// (the answer's time plus the idempotency window); a retry
// with the same fingerprint is answered from there without a round trip
// through the log. The account's actor stays the authority: a cached
// answer is one it gave, for a key it remembers for at least as long, so
// it would replay the same; a miss, another fingerprint (the actor's 409),
// an answer it does not remember (unrecorded refusals) or a Redis that is
// down or slow goes through the log as without Redis.
type IdemCache struct {
	link  *RedisLink
	queue chan idemEntry

	hits, misses, conflicts, stored, dropped prometheus.Counter
}

type idemEntry struct {
	key     string
	val     []byte
	expires time.Time // when the actor forgets the key: the answer's time plus the window
}

// forgotten is when the actor stops remembering the key of an answer
// recorded at us (ledger.KeyIndex: older than the window): a cached
// answer must be gone by then, or a retry the ledger would apply anew
// would be told it was done.
func forgotten(us int64) time.Time {
	return time.UnixMicro(us + ledger.IdempotencyWindowUs)
}

// idemQueueMax bounds the answers waiting to be stored; beyond, an
// answer is not stored (counted): its retry takes the log.
const idemQueueMax = 4096

// NewIdemCache returns the fast path over link (nil or unconfigured:
// never used). reg registers its metrics (nil: none).
func NewIdemCache(link *RedisLink, reg prometheus.Registerer) *IdemCache {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "bursar_idempotency_cache_" + name + "_total", Help: help})
	}
	c := &IdemCache{link: link, queue: make(chan idemEntry, idemQueueMax),
		hits:      counter("hits", "Retries answered from Redis without a round trip through the log."),
		misses:    counter("misses", "Keyed writes Redis had no answer for (or could not be asked: down, slow)."),
		conflicts: counter("conflicts", "Keyed writes whose key Redis holds for another request fingerprint (they go through the log, which refuses them)."),
		stored:    counter("stored", "Final answers stored in Redis."),
		dropped:   counter("dropped", "Final answers not stored: the store queue was full (4096) or Redis down."),
	}
	if reg != nil {
		reg.MustRegister(c.hits, c.misses, c.conflicts, c.stored, c.dropped)
	}
	return c
}

// on reports whether the fast path is to be used now.
func (c *IdemCache) on() bool { return c != nil && c.link.Up() }

// cacheKey scopes a key as the actor does (per account) and by the owner
// constraint the credential put on the command: another customer's retry
// of the same key must get the actor's ACCOUNT_NOT_FOUND, not this answer.
func (c *IdemCache) cacheKey(cmd *ledger.Command) string {
	return c.link.Prefix + "idem:1:" + cmd.AccountID.String() + ":" + cmd.Owner + ":" + cmd.IdemKey
}

// lookup returns the stored answer to cmd's key when its fingerprint is
// cmd's, marked replayed.
func (c *IdemCache) lookup(cmd *ledger.Command) (*ledger.Result, bool) {
	if cmd.IdemKey == "" || !c.on() {
		return nil, false
	}
	ctx, cancel := c.link.ctx()
	b, err := c.link.Client.Get(ctx, c.cacheKey(cmd)).Bytes()
	cancel()
	switch {
	case errors.Is(err, redis.Nil):
		c.misses.Inc()
		return nil, false
	case err != nil:
		c.link.failed("idempotency_get", err)
		c.misses.Inc()
		return nil, false
	}
	if len(b) < 8 || binary.BigEndian.Uint64(b) != ledger.HashRequest(cmd) {
		c.conflicts.Inc()
		return nil, false
	}
	res, err := ledger.DecodeResult(b[8:])
	if err != nil || !time.Now().Before(forgotten(res.TimestampUs)) {
		c.misses.Inc() // another release's encoding, or past the window
		return nil, false
	}
	c.hits.Inc()
	res.Replayed = true
	return &res, true
}

// store queues cmd's final answer res for Redis; answers the actor does
// not remember (unrecorded refusals) or that are not final are not kept.
func (c *IdemCache) store(cmd *ledger.Command, res *ledger.Result) {
	if cmd.IdemKey == "" || res.Unrecorded || res.Status == ledger.StatusPending || c == nil {
		return
	}
	if !c.on() {
		c.dropped.Inc()
		return
	}
	expires := forgotten(res.TimestampUs) // a replay keeps the first answer's
	if !time.Now().Before(expires) {
		return
	}
	val := binary.BigEndian.AppendUint64(make([]byte, 0, 128), ledger.HashRequest(cmd))
	select {
	case c.queue <- idemEntry{key: c.cacheKey(cmd), val: ledger.AppendResult(val, res), expires: expires}:
	default:
		c.dropped.Inc()
	}
}

// idemPipelineMax is the most answers stored in one round trip.
const idemPipelineMax = 256

// Run stores the queued answers until ctx ends, in pipelines of what
// waits (up to idemPipelineMax): under load one round trip per answer
// would fall behind the answers, and a retry finds its answer only once
// it is stored.
func (c *IdemCache) Run(ctx context.Context) {
	batch := make([]idemEntry, 0, idemPipelineMax)
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-c.queue:
			batch = append(batch[:0], e)
		}
	drain:
		for len(batch) < idemPipelineMax {
			select {
			case e := <-c.queue:
				batch = append(batch, e)
			default:
				break drain
			}
		}
		if !c.on() {
			c.dropped.Add(float64(len(batch)))
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 4*c.link.Timeout)
		pipe := c.link.Client.Pipeline()
		n := 0
		for _, e := range batch {
			if ttl := time.Until(e.expires); ttl > 0 {
				pipe.Set(sctx, e.key, e.val, ttl)
				n++
			}
		}
		cmds, err := pipe.Exec(sctx)
		cancel()
		stored := 0
		for _, cmd := range cmds {
			if cmd.Err() == nil {
				stored++
			}
		}
		c.stored.Add(float64(stored))
		if err != nil {
			c.link.failed("idempotency_set", err)
			c.dropped.Add(float64(n - stored))
		}
	}
}
