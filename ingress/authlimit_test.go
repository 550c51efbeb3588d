package ingress

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/ledger"
)

func TestAuthThrottle(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := newAuthThrottle(6) // 6 a minute: one earned back every 10 s
	th.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for i := range 6 {
		if w := th.wait(a); w != 0 {
			t.Fatalf("failure %d: throttled already (%v)", i, w)
		}
		th.fail(a)
	}
	if w := th.wait(a); w <= 0 || w > 10*time.Second {
		t.Fatalf("after 6 failures: wait %v, want (0, 10s]", w)
	}
	if w := th.wait(b); w != 0 {
		t.Fatalf("another address throttled: %v", w)
	}
	now = now.Add(10 * time.Second)
	if w := th.wait(a); w != 0 {
		t.Fatalf("10 s later: wait %v, want one failure earned back", w)
	}
	th.fail(a)
	if w := th.wait(a); w == 0 {
		t.Fatal("the failure earned back was not spent")
	}
	if newAuthThrottle(0) != nil {
		t.Fatal("a limit of 0 throttles")
	}
	// Bounded: a full table drops refilled addresses first, and refuses to
	// track more when every one is still throttled.
	th = newAuthThrottle(1)
	th.now = func() time.Time { return now }
	th.max = 2
	th.fail(a)
	th.fail(b)
	c := netip.MustParseAddr("192.0.2.3")
	if th.fail(c) {
		t.Fatal("a third address tracked past the bound while both others are throttled")
	}
	now = now.Add(2 * time.Minute)
	if !th.fail(c) || len(th.by) > 2 {
		t.Fatalf("after the others refilled: tracked %d", len(th.by))
	}
	// A full table is swept at most once a second.
	th.by = map[netip.Addr]*failBucket{a: {tokens: 0, at: now}, b: {tokens: 0, at: now}}
	th.swept = now
	if th.fail(c) {
		t.Fatal("tracked a third address past the bound")
	}
	now = now.Add(2 * time.Minute) // both refilled, and a sweep is due
	if !th.fail(c) {
		t.Fatal("no sweep once one was due")
	}
}

// TestRepeatedAuthFailuresAreThrottled: past the limit, an address's
// requests without a live key are refused with 429 RATE_LIMITED and
// Retry-After, and an unknown key costs no reload; a live key still gets
// in (the address may be a proxy's); after the wait the address may fail
// again.
func TestRepeatedAuthFailuresAreThrottled(t *testing.T) {
	r := newAuthRig(t)
	good, _ := r.key(t, auth.AccountsRead)
	if err := r.verifier.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := r.srv
	srv.authThrottle = newAuthThrottle(3)
	now := time.Now()
	srv.authThrottle.now = func() time.Time { return now }
	get := func(token string) testResp {
		req := testReq{method: "GET", path: "/api/v1/accounts/" + testAccount + "/balance"}
		if token != "" {
			req.header = map[string]string{"Authorization": "Bearer " + token}
		}
		return r.api.do(t, req)
	}
	for range 3 {
		assertError(t, get(""), ledger.CodeUnauthenticated)
	}
	unknown, _, _ := auth.NewToken()
	loads := r.verifier.Loads.Load()
	for _, tok := range []string{"", unknown, "bsk_malformed"} {
		resp := get(tok)
		assertError(t, resp, ledger.CodeRateLimited)
		if resp.status != 429 {
			t.Fatalf("throttled, token %q: %d", tok, resp.status)
		}
	}
	if r.verifier.Loads.Load() != loads {
		t.Fatal("a throttled unknown key made the keys reload")
	}
	if resp := get(good); resp.status != 200 {
		t.Fatalf("a live key from a throttled address: %d %s", resp.status, resp.body)
	}
	now = now.Add(21 * time.Second) // one failure earned back (3 a minute)
	assertError(t, get(""), ledger.CodeUnauthenticated)
	assertError(t, get(""), ledger.CodeRateLimited)
}

// TestAuthThrottleKeysIPv6By64: the addresses of one IPv6 /64 share a
// bucket; IPv4 addresses do not.
func TestAuthThrottleKeysIPv6By64(t *testing.T) {
	th := newAuthThrottle(2)
	th.fail(netip.MustParseAddr("2001:db8:1:2::1"))
	th.fail(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	if th.wait(netip.MustParseAddr("2001:db8:1:2::77")) == 0 {
		t.Fatal("another address of the same /64 is not throttled")
	}
	if th.wait(netip.MustParseAddr("2001:db8:1:3::1")) != 0 {
		t.Fatal("another /64 throttled")
	}
	th.fail(netip.MustParseAddr("192.0.2.1"))
	th.fail(netip.MustParseAddr("192.0.2.1"))
	if th.wait(netip.MustParseAddr("192.0.2.2")) != 0 {
		t.Fatal("a neighbouring IPv4 address throttled")
	}
}
