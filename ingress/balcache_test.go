package ingress

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestCachedBalanceEncoding(t *testing.T) {
	for _, b := range []cachedBalance{
		{Version: 1, AsOfUs: 1, Currency: "USD", Status: ledger.AccountActive},
		{Version: 1 << 40, AsOfUs: time.Now().UnixMicro(), Balance: -ledger.AmountMax, OverdraftLimit: ledger.AmountMax, Status: ledger.AccountFrozen, Currency: "JPY", Owner: "u-0123456789"},
		{Version: 7, AsOfUs: 9, Balance: 42, Currency: "BHD", Owner: string(bytes.Repeat([]byte{'o'}, ledger.OwnerLenMax)), Status: ledger.AccountClosed},
	} {
		got, err := decodeCachedBalance(appendCachedBalance(nil, &b))
		if err != nil || got != b {
			t.Errorf("%+v: decoded %+v, %v", b, got, err)
		}
	}
	good := appendCachedBalance(nil, &cachedBalance{Version: 3, AsOfUs: 5, Currency: "USD", Owner: "u1"})
	for _, bad := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"another encoding", append([]byte{2}, good[1:]...)},
		{"cut", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"unknown currency", appendCachedBalance(nil, &cachedBalance{Version: 3, Currency: "ZZZ"})},
		{"short currency", appendCachedBalance(nil, &cachedBalance{Version: 3, Currency: "US"})},
		{"version 0", appendCachedBalance(nil, &cachedBalance{Currency: "USD"})},
		{"owner too long", appendCachedBalance(nil, &cachedBalance{Version: 3, Currency: "USD", Owner: string(bytes.Repeat([]byte{'o'}, ledger.OwnerLenMax+1))})},
	} {
		if _, err := decodeCachedBalance(bad.p); err == nil {
			t.Errorf("%s: decoded", bad.name)
		}
	}
}

// FuzzDecodeCachedBalance: whatever Redis holds, the decoder does not
// panic, and what it accepts is exactly what the encoder writes.
func FuzzDecodeCachedBalance(f *testing.F) {
	f.Add(appendCachedBalance(nil, &cachedBalance{Version: 3, AsOfUs: 5, Balance: -7, Currency: "USD", Owner: "u1"}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeCachedBalance(p)
		if err != nil {
			return
		}
		if again := appendCachedBalance(nil, &b); !bytes.Equal(again, p) {
			t.Fatalf("decoded %+v from %x, which encodes as %x", b, p, again)
		}
	})
}

func TestReadConsistency(t *testing.T) {
	for _, c := range []struct {
		query, header, want string
		ok                  bool
	}{
		{"", "", consistencyStrong, true},
		{"strong", "", consistencyStrong, true},
		{"", "strong", consistencyStrong, true},
		{"eventual", "", consistencyEventual, true},
		{"", "eventual", consistencyEventual, true},
		{"eventual", "eventual", consistencyEventual, true},
		{"eventual", "strong", "", false},
		{"Eventual", "", "", false},
		{"", "EVENTUAL", "", false},
		{"bounded", "", "", false},
		{"eventual ", "", "", false},
	} {
		got, aerr := readConsistency(c.query, c.header)
		if (aerr == nil) != c.ok || got != c.want || (aerr != nil && aerr.code != ledger.CodeInvalidField) {
			t.Errorf("query %q header %q: %q %v, want %q ok=%v", c.query, c.header, got, aerr, c.want, c.ok)
		}
	}
}

// count is a counter's value.
func count(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// committedState is a committed account state to publish.
func committedState(version, balance int64) *ledger.Account {
	return &ledger.Account{Exists: true, Version: version, Balance: balance, OverdraftLimit: 5, Currency: "EUR", Owner: "u7", Status: ledger.AccountActive}
}

// waitPublished waits until c has published n more states than before.
func waitPublished(t *testing.T, c *BalanceCache, before float64, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count(c.published)+count(c.stale)+count(c.dropped) < before+float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("published %v, stale %v, dropped %v; want %d more than %v", count(c.published), count(c.stale), count(c.dropped), n, before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func processed(c *BalanceCache) float64 {
	return count(c.published) + count(c.stale) + count(c.dropped)
}

// TestBalanceCacheAgainstRedis: a published state is read back as
// committed, with its commit's time; an older version published later
// (a fenced owner's late publish) does not replace it; entries expire
// after the TTL; a Redis that restarted (the script gone) is used again.
func TestBalanceCacheAgainstRedis(t *testing.T) {
	r := startRedis(t)
	link := NewRedisLink(r.client(), "t:", quietLog(), nil)
	c := NewBalanceCache(link, time.Minute, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	go link.Run(ctx)
	a, b := uuid.New(), uuid.New()
	at := time.UnixMicro(time.Now().UnixMicro())
	before := processed(c)
	c.Publish(map[uuid.UUID]*ledger.Account{a: committedState(4, 100), b: committedState(1, 0)}, at)
	waitPublished(t, c, before, 2)
	got, ok := c.lookup(a)
	if want := (cachedBalance{Version: 4, AsOfUs: at.UnixMicro(), Balance: 100, OverdraftLimit: 5, Currency: "EUR", Owner: "u7", Status: ledger.AccountActive}); !ok || got != want {
		t.Fatalf("lookup: %+v %v, want %+v", got, ok, want)
	}
	// Older, later: refused in Redis.
	before = processed(c)
	c.Publish(map[uuid.UUID]*ledger.Account{a: committedState(3, 90)}, at.Add(time.Second))
	waitPublished(t, c, before, 1)
	if got, _ := c.lookup(a); got.Version != 4 || got.Balance != 100 {
		t.Fatalf("an older version replaced a newer: %+v", got)
	}
	if count(c.stale) != 1 {
		t.Fatalf("stale publishes: %v", count(c.stale))
	}
	// The same version again: stored, as of the later commit.
	before = processed(c)
	c.Publish(map[uuid.UUID]*ledger.Account{a: committedState(4, 100)}, at.Add(2*time.Second))
	waitPublished(t, c, before, 1)
	if got, _ := c.lookup(a); got.Version != 4 || got.AsOfUs != at.Add(2*time.Second).UnixMicro() {
		t.Fatalf("republished: %+v", got)
	}
	if ttl, err := link.Client.PTTL(context.Background(), c.key(a)).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("entry's time to live: %v %v", ttl, err)
	}
	// Unknown: a miss.
	if _, ok := c.lookup(uuid.New()); ok {
		t.Fatal("an account never published was found")
	}
	// Garbage under the key: a miss, not an answer.
	link.Client.HSet(context.Background(), c.key(b), "d", "garbage")
	if _, ok := c.lookup(b); ok {
		t.Fatal("garbage decoded as a balance")
	}

	// Redis restarted empty: the link comes back, the script is loaded
	// again, publishing works.
	r.Kill()
	if _, ok := c.lookup(a); ok || link.Up() {
		t.Fatal("a lookup with Redis down found an entry, or the link stayed up")
	}
	// Committed while Redis is down: kept, and published once it is back.
	before = processed(c)
	c.Publish(map[uuid.UUID]*ledger.Account{a: committedState(9, 1)}, at)
	r.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for !link.Up() {
		if time.Now().After(deadline) {
			t.Fatal("the link did not come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitPublished(t, c, before, 1)
	if got, ok := c.lookup(a); !ok || got.Version != 9 || count(c.dropped) != 0 {
		t.Fatalf("after Redis restarted: %+v %v (published %v, dropped %v)", got, ok, count(c.published), count(c.dropped))
	}
}

// TestBalanceCacheQueueBound: the queue holds the newest state of at most
// balanceQueueMax accounts; more are dropped and counted, a newer state
// of a queued account replaces it, an older one does not.
func TestBalanceCacheQueueBound(t *testing.T) {
	r := startRedis(t)
	c := NewBalanceCache(NewRedisLink(r.client(), "t:", quietLog(), nil), time.Minute, nil) // not running: nothing drains
	batch := make(map[uuid.UUID]*ledger.Account, balanceQueueMax+10)
	for range balanceQueueMax + 10 {
		batch[uuid.New()] = committedState(1, 1)
	}
	c.Publish(batch, time.Now())
	if len(c.pending) != balanceQueueMax || count(c.dropped) != 10 {
		t.Fatalf("queued %d, dropped %v", len(c.pending), count(c.dropped))
	}
	var queued uuid.UUID
	for id := range c.pending {
		queued = id
		break
	}
	c.Publish(map[uuid.UUID]*ledger.Account{queued: committedState(5, 50)}, time.Now())
	c.Publish(map[uuid.UUID]*ledger.Account{queued: committedState(4, 40)}, time.Now())
	if q := c.pending[queued]; q.Version != 5 || count(c.dropped) != 10 {
		t.Fatalf("queued %+v, dropped %v", q, count(c.dropped))
	}
}

// TestRedisOutageErrors: which errors Redis answers take it out of use
// for the node (they concern every call) and which concern one call.
func TestRedisOutageErrors(t *testing.T) {
	for _, c := range []struct {
		reply  string
		outage bool
	}{
		{"WRONGPASS invalid username-password pair or user is disabled.", true},
		{"NOAUTH Authentication required.", true},
		{"LOADING Redis is loading the dataset in memory", true},
		{"READONLY You can't write against a read only replica.", true},
		{"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", true},
		{"CLUSTERDOWN The cluster is down", true},
		{"NOPERM this user has no permissions to run the 'evalsha' command", false},
		{"OOM command not allowed when used memory > 'maxmemory'.", false},
		{"MOVED 3999 127.0.0.1:6381", false},
		{"ERR unknown command", false},
	} {
		r := redisReply(c.reply)
		if got := outage(r); got != c.outage {
			t.Errorf("%q: outage %v, want %v", c.reply, got, c.outage)
		}
	}
}

// replyError is an error as Redis answers it: go-redis returns its
// replies as a string type with the redis.Error marker method.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func redisReply(msg string) error { return fmt.Errorf("a call: %w", replyError(msg)) }
