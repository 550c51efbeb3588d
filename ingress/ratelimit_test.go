package ingress

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/bursar/bursar/ingress/redistest"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

// testRedis is the test's own redis-server.
type testRedis struct {
	*redistest.Server
	t *testing.T
}

func startRedis(t *testing.T) *testRedis { return &testRedis{redistest.Start(t, ""), t} }

func (r *testRedis) client() redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	r.t.Cleanup(func() { c.Close() })
	return c
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// allowed counts the calls of n alternating between limiters that a
// credential's write budget lets through.
func allowed(ls []*RateLimiter, key string, n int) int {
	got := 0
	for i := range n {
		if ls[i%len(ls)].allow("credential:write:"+key, ls[0].limits.CredentialWrites).allowed {
			got++
		}
	}
	return got
}

func TestRateLimitsSharedThroughRedis(t *testing.T) {
	r := startRedis(t)
	limits := RateLimits{CredentialWrites: 10}
	shared := []*RateLimiter{NewRateLimiter(limits, NewRedisLink(r.client(), "t:", quietLog(), nil), nil), NewRateLimiter(limits, NewRedisLink(r.client(), "t:", quietLog(), nil), nil)}
	alone := []*RateLimiter{NewRateLimiter(limits, NewRedisLink(nil, "t:", quietLog(), nil), nil), NewRateLimiter(limits, NewRedisLink(nil, "t:", quietLog(), nil), nil)}
	// A burst of one second's worth, then about 10 a second: 40 calls in
	// well under a second get about 10 through one shared budget, about 20
	// through two separate ones.
	if got := allowed(shared, "k1", 40); got < 10 || got > 15 {
		t.Fatalf("two nodes sharing Redis let %d of 40 through a budget of 10/s", got)
	}
	if got := allowed(alone, "k1", 40); got < 20 || got > 25 {
		t.Fatalf("two nodes without Redis let %d of 40 through, want each its own 10/s", got)
	}
	for _, l := range shared {
		if !l.RedisUp() {
			t.Fatal("a limiter left Redis while it answered")
		}
	}
}

func TestRateLimitsWithoutRedisAndBack(t *testing.T) {
	r := startRedis(t)
	link := NewRedisLink(r.client(), "t:", quietLog(), nil)
	l := NewRateLimiter(RateLimits{CredentialWrites: 5}, link, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go link.Run(ctx)
	if got := allowed([]*RateLimiter{l}, "k", 20); got < 5 || got > 8 {
		t.Fatalf("%d of 20 through a budget of 5/s", got)
	}
	r.Kill()
	// Redis gone: the node decides alone, with the same budget, and every
	// call gets an answer.
	if got := allowed([]*RateLimiter{l}, "k2", 20); got < 5 || got > 8 {
		t.Fatalf("without Redis: %d of 20 through a budget of 5/s", got)
	}
	if l.RedisUp() {
		t.Fatal("still on Redis after it died")
	}
	r.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for !l.RedisUp() {
		if time.Now().After(deadline) {
			t.Fatal("not back on Redis 10s after it returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	other := NewRateLimiter(RateLimits{CredentialWrites: 5}, NewRedisLink(r.client(), "t:", quietLog(), nil), nil)
	if got := allowed([]*RateLimiter{l, other}, "k3", 20); got < 5 || got > 8 {
		t.Fatalf("back on Redis: %d of 20 through one shared budget of 5/s", got)
	}
}

func TestRateLimitedRequestIs429(t *testing.T) {
	r := startRedis(t)
	rl := NewRateLimiter(RateLimits{AddressWrites: 2}, NewRedisLink(r.client(), "t:", quietLog(), nil), nil)
	srv, err := New(Config{Partitions: 8, MaxBodyBytes: testMaxBody, RateLimiter: rl}, quietLog(), nil, NewReplies("n/1", 10), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := serveTestAPI(t, srv)
	// Bodies refused after the limit's check: nothing reaches the log
	// (this server has none), and each spends one of the budget.
	bad := testReq{method: "POST", path: "/api/v1/transactions/credit", body: `{"account_id":"nope","amount":"1.00","currency":"USD"}`}
	for i := range 2 {
		if got := api.do(t, bad); got.status != 400 {
			t.Fatalf("request %d: %d %s", i, got.status, got.body)
		}
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://bursar.test" + bad.path)
	req.Header.SetContentType("application/json")
	req.SetBodyString(bad.body)
	if err := api.client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	got := testResp{status: resp.StatusCode(), header: map[string]string{}, body: append([]byte(nil), resp.Body()...)}
	for _, k := range []string{"X-Request-ID", "Content-Type", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		got.header[k] = string(resp.Header.Peek(k))
	}
	assertError(t, got, ledger.CodeRateLimited)
	if ra, err := strconv.Atoi(got.header["Retry-After"]); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", got.header["Retry-After"])
	}
	if got.header["RateLimit-Limit"] != "2" || got.header["RateLimit-Remaining"] != "0" || got.header["RateLimit-Reset"] == "" {
		t.Fatalf("RateLimit headers %v", got.header)
	}
	// Reads have their own budget (none here).
	if got := api.do(t, testReq{method: "GET", path: "/api/v1/accounts/nope"}); got.status == 429 {
		t.Fatalf("a read was refused by the write budget: %s", got.body)
	}
	// The refusal is counted under its limit, class and route, once.
	if got := count(rl.rejected.WithLabelValues("address", "write", "credit")); got != 1 {
		t.Fatalf("bursar_ratelimit_rejected_total{address,write,credit} = %v", got)
	}
	if got := count(rl.rejected.WithLabelValues("address", "read", "account")); got != 0 {
		t.Fatalf("an allowed read counted as refused: %v", got)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	} {
		if got := addrKey(netip.MustParseAddr(tc.in)); got != tc.want {
			t.Errorf("addrKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// A cached answer lives only as long as the actor remembers its key: a
// retry after the window must reach the ledger (which applies it anew).
func TestIdemCacheExpiresWithTheWindow(t *testing.T) {
	r := startRedis(t)
	link := NewRedisLink(r.client(), "t:", quietLog(), nil)
	c := NewIdemCache(link, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	cmd := &ledger.Command{Kind: ledger.KindCredit, AccountID: uuid.New(), Amount: 100, Currency: "USD", IdemKey: "k"}
	windowAgo := time.Now().UnixMicro() - ledger.IdempotencyWindowUs
	// Recorded just inside the window: stored, with what is left of it.
	fresh := &ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, Status: ledger.StatusCompleted, AccountID: cmd.AccountID, Amount: 100, Currency: "USD", TimestampUs: windowAgo + 3_000_000}
	c.store(cmd, fresh)
	var got *ledger.Result
	for i := 0; ; i++ {
		if res, ok := c.lookup(cmd); ok {
			got = res
			break
		}
		if i > 200 {
			t.Fatal("the answer was never stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.TxID != fresh.TxID || !got.Replayed {
		t.Fatalf("cached %+v, stored %+v", got, fresh)
	}
	ttl, err := link.Client.TTL(ctx, c.cacheKey(cmd)).Result()
	if err != nil || ttl <= 0 || ttl > 3*time.Second {
		t.Fatalf("TTL %v %v: want what is left of the window (under 3s)", ttl, err)
	}
	// Recorded past the window: not stored; and an old entry is not served.
	old := *fresh
	old.TimestampUs = windowAgo - 1_000_000
	cmd2 := *cmd
	cmd2.IdemKey = "k2"
	c.store(&cmd2, &old)
	time.Sleep(50 * time.Millisecond)
	if n, _ := link.Client.Exists(ctx, c.cacheKey(&cmd2)).Result(); n != 0 {
		t.Fatal("an answer past the window was stored")
	}
	val := binary.BigEndian.AppendUint64(nil, ledger.HashRequest(&cmd2))
	if err := link.Client.Set(ctx, c.cacheKey(&cmd2), ledger.AppendResult(val, &old), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.lookup(&cmd2); ok {
		t.Fatal("an answer past the window was served")
	}
	// Another ledger's keys (another prefix) are not this one's.
	other := NewIdemCache(NewRedisLink(r.client(), "u:", quietLog(), nil), nil)
	if _, ok := other.lookup(cmd); ok {
		t.Fatal("another ledger's answer was served")
	}
}
