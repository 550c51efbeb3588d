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
}

// TestRepeatedAuthFailuresAreThrottled: past the limit, an address's
// requests are refused with 429 RATE_LIMITED and Retry-After before any
// credential is looked at, a good one included, until it earns a failure
// back.
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
	resp := get(good)
	assertError(t, resp, ledger.CodeRateLimited)
	if resp.status != 429 {
		t.Fatalf("throttled: %d", resp.status)
	}
	now = now.Add(21 * time.Second) // one failure earned back (3 a minute)
	if resp := get(good); resp.status != 200 {
		t.Fatalf("after the wait, a good key: %d %s", resp.status, resp.body)
	}
}
