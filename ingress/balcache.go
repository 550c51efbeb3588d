package ingress

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// BalanceCache holds the committed balances in Redis for the eventual
// reads (GET …/balance with Consistency: eventual): the owner of an
// account's partition publishes its state once the flush that wrote it
// to PostgreSQL has committed (Publish, called by the engine), and any
// ingress node answers an eventual read from there without the hop to
// the owner. A cached state is one PostgreSQL holds, so it is never newer
// than what the owner's memory answers a strong read; a publish never
// replaces a newer version (a script compares them in Redis), so a late
// publish of a fenced owner cannot move it back. Each entry expires after
// TTL, which bounds both Redis' memory and how stale an entry of an
// account whose owner could not publish (Redis down meanwhile) can be;
// the answer carries the version and as_of, the commit's time.
type BalanceCache struct {
	link *RedisLink
	TTL  time.Duration

	mu      sync.Mutex
	pending map[uuid.UUID]cachedBalance // newest state per account, not yet sent
	wake    chan struct{}

	hits, misses, published, stale, dropped prometheus.Counter
}

// cachedBalance is what an eventual read answers: an account's
// committed balance, as of its flush's commit.
type cachedBalance struct {
	Version        int64
	AsOfUs         int64 // the flush's commit, Unix microseconds
	Balance        int64
	OverdraftLimit int64
	Status         ledger.AccountStatus
	Currency       string
	Owner          string
}

// account is the state as a ledger account, for the answer.
func (b *cachedBalance) account() ledger.Account {
	return ledger.Account{Exists: true, Version: b.Version, Balance: b.Balance, OverdraftLimit: b.OverdraftLimit,
		Status: b.Status, Currency: b.Currency, Owner: b.Owner}
}

// balanceEncoding is the first byte of a cached value; a value of
// another release's encoding is a miss.
const balanceEncoding = 1

// appendCachedBalance encodes b: the encoding byte, version, as_of,
// balance and overdraft limit (8 bytes each, big-endian), the status,
// then currency and owner, each after its length in one byte.
func appendCachedBalance(dst []byte, b *cachedBalance) []byte {
	dst = append(dst, balanceEncoding)
	for _, v := range [...]int64{b.Version, b.AsOfUs, b.Balance, b.OverdraftLimit} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	dst = append(dst, byte(b.Status), byte(len(b.Currency)))
	dst = append(dst, b.Currency...)
	dst = append(dst, byte(len(b.Owner)))
	return append(dst, b.Owner...)
}

var errBadBalance = errors.New("ingress: not a cached balance of this release")

// decodeCachedBalance decodes what appendCachedBalance wrote, refusing
// anything else: Redis is not trusted with more than it was given.
func decodeCachedBalance(p []byte) (cachedBalance, error) {
	var b cachedBalance
	if len(p) < 1+32+2 || p[0] != balanceEncoding {
		return b, errBadBalance
	}
	v := p[1:]
	b.Version, b.AsOfUs = int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
	b.Balance, b.OverdraftLimit = int64(binary.BigEndian.Uint64(v[16:])), int64(binary.BigEndian.Uint64(v[24:]))
	b.Status = ledger.AccountStatus(v[32])
	v = v[33:]
	n := int(v[0])
	if n != 3 || len(v) < 1+n+1 {
		return b, errBadBalance
	}
	b.Currency, v = string(v[1:1+n]), v[1+n:]
	n = int(v[0])
	if n > ledger.OwnerLenMax || len(v) != 1+n {
		return b, errBadBalance
	}
	b.Owner = string(v[1:])
	if _, ok := ledger.CurrencyExponent(b.Currency); !ok || b.Version < 1 {
		return b, errBadBalance
	}
	return b, nil
}

// balanceQueueMax bounds the accounts waiting to be published; beyond,
// an account's state is not published (counted): its cached entry stays
// older, or is missing, and eventual reads of it see that.
const balanceQueueMax = 65536

// balancePipelineMax is the most publishes sent in one round trip.
const balancePipelineMax = 512

// publishScript stores ARGV[2] under KEYS[1] unless the entry holds a
// newer version than ARGV[1], and (re)sets its time to live, ARGV[3]
// milliseconds. An equal version is stored again: the same state,
// confirmed at a later commit.
var publishScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

// NewBalanceCache returns the cache over link (nil or unconfigured:
// never used) with entries living ttl. reg registers its metrics (nil:
// none).
func NewBalanceCache(link *RedisLink, ttl time.Duration, reg prometheus.Registerer) *BalanceCache {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "bursar_balance_cache_" + name + "_total", Help: help})
	}
	c := &BalanceCache{link: link, TTL: ttl, pending: make(map[uuid.UUID]cachedBalance), wake: make(chan struct{}, 1),
		hits:      counter("hits", "Eventual balance reads answered from Redis."),
		misses:    counter("misses", "Eventual balance reads Redis had no entry for, or could not be asked (down, slow): answered by the owner, as a strong read."),
		published: counter("published", "Committed account states stored in Redis."),
		stale:     counter("stale", "Publishes Redis refused because it held a newer version (a late publish of an earlier owner)."),
		dropped:   counter("dropped", "Committed account states not published: the queue was full (65536 accounts; it keeps them while Redis is down), or a pipeline failed."),
	}
	if reg != nil {
		reg.MustRegister(c.hits, c.misses, c.published, c.stale, c.dropped)
	}
	return c
}

func (c *BalanceCache) on() bool { return c != nil && c.link.Up() }

func (c *BalanceCache) key(id uuid.UUID) string {
	return c.link.Prefix + "bal:" + id.String()
}

// Publish queues the states of accounts whose flush committed at at
// (engine.Config.AccountsCommitted). It never blocks: the flusher calls
// it. A newer state of an account still queued replaces the older.
func (c *BalanceCache) Publish(accounts map[uuid.UUID]*ledger.Account, at time.Time) {
	if c == nil || len(accounts) == 0 || !c.link.Configured() {
		return
	}
	// Queued while Redis is down too (within the bound): published once
	// it is back, so a second's outage does not leave an hour's stale
	// entries.
	us := at.UnixMicro()
	dropped := 0
	c.mu.Lock()
	for id, a := range accounts {
		if a.Exists && !c.queueLocked(id, cachedBalance{Version: a.Version, AsOfUs: us, Balance: a.Balance,
			OverdraftLimit: a.OverdraftLimit, Status: a.Status, Currency: a.Currency, Owner: a.Owner}) {
			dropped++
		}
	}
	c.mu.Unlock()
	if dropped > 0 {
		c.dropped.Add(float64(dropped))
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run publishes the queued states until ctx ends. While Redis is down
// they stay queued; it looks again each second.
func (c *BalanceCache) Run(ctx context.Context) {
	if c == nil || !c.link.Configured() {
		return
	}
	var (
		ids  []uuid.UUID
		vals []cachedBalance
		buf  []byte
	)
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-retry.C:
		}
		if !c.on() {
			continue
		}
		c.mu.Lock()
		batch := c.pending
		if len(batch) > 0 {
			c.pending = make(map[uuid.UUID]cachedBalance, len(batch))
		}
		c.mu.Unlock()
		ids, vals = ids[:0], vals[:0]
		for id, b := range batch {
			ids, vals = append(ids, id), append(vals, b)
		}
		for start := 0; start < len(ids); start += balancePipelineMax {
			end := min(start+balancePipelineMax, len(ids))
			if !c.on() {
				c.requeue(ids[start:], vals[start:])
				break
			}
			buf = c.send(ctx, ids[start:end], vals[start:end], buf)
		}
	}
}

// send publishes one pipeline of states; buf is reused for the values.
func (c *BalanceCache) send(ctx context.Context, ids []uuid.UUID, vals []cachedBalance, buf []byte) []byte {
	ttl := strconv.FormatInt(c.TTL.Milliseconds(), 10)
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 4*c.link.Timeout)
		pipe := c.link.Client.Pipeline()
		cmds := make([]*redis.Cmd, len(ids))
		for i, id := range ids {
			buf = appendCachedBalance(buf[:0], &vals[i])
			cmds[i] = publishScript.EvalSha(pctx, pipe, []string{c.key(id)}, vals[i].Version, string(buf), ttl)
		}
		_, err := pipe.Exec(pctx)
		cancel()
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A Redis that restarted (or a new shard) lost the script.
			lctx, cancel := c.link.ctx()
			lerr := publishScript.Load(lctx, c.link.Client).Err()
			cancel()
			if lerr == nil {
				continue
			}
			err = lerr
		}
		stored, stale := 0, 0
		var failedIDs []uuid.UUID
		var failedVals []cachedBalance
		for i, cmd := range cmds {
			switch n, cerr := cmd.Int(); {
			case cerr != nil:
				failedIDs, failedVals = append(failedIDs, ids[i]), append(failedVals, vals[i])
			case n == 1:
				stored++
			default:
				stale++
			}
		}
		c.published.Add(float64(stored))
		c.stale.Add(float64(stale))
		if err != nil {
			c.link.failed("balance_publish", err)
			if !c.link.Up() {
				c.requeue(failedIDs, failedVals) // sent again once Redis is back
			} else {
				c.dropped.Add(float64(len(failedIDs))) // Redis answered an error
			}
		}
		return buf
	}
}

// queueLocked queues v for account id unless the queue holds a state at
// least as new (a later version, or the same one confirmed at a later
// commit); it reports false when the queue is full and v is dropped.
// c.mu is held.
func (c *BalanceCache) queueLocked(id uuid.UUID, v cachedBalance) bool {
	q, queued := c.pending[id]
	switch {
	case queued && (q.Version > v.Version || q.Version == v.Version && q.AsOfUs >= v.AsOfUs):
	case !queued && len(c.pending) >= balanceQueueMax:
		return false
	default:
		c.pending[id] = v
	}
	return true
}

// requeue puts back states a pipeline could not send (Redis went down
// meanwhile).
func (c *BalanceCache) requeue(ids []uuid.UUID, vals []cachedBalance) {
	dropped := 0
	c.mu.Lock()
	for i, id := range ids {
		if !c.queueLocked(id, vals[i]) {
			dropped++
		}
	}
	c.mu.Unlock()
	c.dropped.Add(float64(dropped))
}

// lookup returns the cached state of account id, if Redis has it now
// (a hit is counted by the caller, once it may answer from it: served).
func (c *BalanceCache) lookup(id uuid.UUID) (cachedBalance, bool) {
	if !c.on() {
		c.misses.Inc()
		return cachedBalance{}, false
	}
	ctx, cancel := c.link.ctx()
	b, err := c.link.Client.HGet(ctx, c.key(id), "d").Bytes()
	cancel()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			c.link.failed("balance_get", err)
		}
		c.misses.Inc()
		return cachedBalance{}, false
	}
	v, err := decodeCachedBalance(b)
	if err != nil {
		c.misses.Inc()
		return cachedBalance{}, false
	}
	return v, true
}

// served counts an eventual read answered from Redis (hit) or, for an
// entry the caller may not see, by the owner (miss).
func (c *BalanceCache) served(fromRedis bool) {
	if fromRedis {
		c.hits.Inc()
	} else {
		c.misses.Inc()
	}
}

// Consistency of a balance read.
const (
	consistencyStrong   = "strong"
	consistencyEventual = "eventual"
)

// readConsistency is the consistency a balance read asks for, from the
// query's consistency or the Consistency header ("" both: strong).
func readConsistency(query, header string) (string, *apiError) {
	if query != "" && header != "" && query != header {
		return "", bad(ledger.CodeInvalidField, "consistency is given twice, as the query parameter and the Consistency header, with different values")
	}
	v := query
	if v == "" {
		v = header
	}
	switch v {
	case "", consistencyStrong:
		return consistencyStrong, nil
	case consistencyEventual:
		return consistencyEventual, nil
	}
	return "", bad(ledger.CodeInvalidField, "consistency must be strong (the owner's memory, the default) or eventual (the last committed balance, from Redis)")
}
