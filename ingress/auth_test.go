package ingress

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// authRig is an ingress with API keys on, over a real Kafka-protocol
// broker (kfake over TCP), an echoEngine and a real PostgreSQL that holds
// the keys.
type authRig struct {
	srv      *Server
	api      *testAPI
	admin    *testAPI // the admin listener
	store    *storage.Store
	producer *kgo.Client
	verifier *auth.Verifier
}

func newAuthRig(t *testing.T) *authRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store, err := storage.Open(ctx, storage.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	addrs, producer := newTestBroker(t)
	replies := NewReplies("n/1", 10)
	eng := echoEngine{replies: replies}
	go eng.run(ctx, t, addrs)
	v, err := auth.NewVerifier(ctx, store, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	metrics := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("# metrics\n") }
	srv, err := New(Config{Partitions: 8, WaitTimeout: 5 * time.Second, Auth: v, Directory: &auth.Directory{V: v, Store: store, TTL: time.Minute}},
		slog.New(slog.NewTextHandler(io.Discard, nil)),
		producer, replies, eng, store, nil, metrics)
	if err != nil {
		t.Fatal(err)
	}
	reached := func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, map[string]string{"admin": "reached"}) }
	srv.SetAdmin(reached, reached, nil)
	return &authRig{srv: srv, api: serveTestAPI(t, srv), admin: serveTestHTTP(t, srv, srv.NewAdminHTTPServer()), store: store, producer: producer, verifier: v}
}

// key creates a key with scopes and returns its token and ID.
func (r *authRig) key(t *testing.T, scopes ...auth.Scope) (string, string) {
	t.Helper()
	token, id, hash := auth.NewToken()
	if err := r.store.CreateAPIKey(context.Background(), storage.APIKey{ID: id, Name: "test", Hash: hash[:], Scopes: auth.Names(scopes)}); err != nil {
		t.Fatal(err)
	}
	return token, id
}

// appended is how many records bursar.commands holds.
func (r *authRig) appended(t *testing.T) int64 {
	t.Helper()
	ends, err := kafkalog.EndOffsets(context.Background(), r.producer)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// TestEveryRouteNeedsItsScope: every route but /healthz and /readyz
// refuses a request with no credential, a malformed one, an unknown, a
// forged or a revoked key (401 UNAUTHENTICATED with a challenge), and a
// key without the route's scope (403 FORBIDDEN); none of them appends a
// command. A key with the scope, or an admin key, gets through.
func TestEveryRouteNeedsItsScope(t *testing.T) {
	r := newAuthRig(t)
	const (
		money    = `{"account_id":"` + testAccount + `","amount":"1.00","currency":"USD"}`
		transfer = `{"source_account_id":"` + testAccount + `","destination_account_id":"` + otherAccount + `","amount":"1.00","currency":"USD"}`
	)
	routes := []struct {
		req   testReq
		scope auth.Scope
		admin bool // on the admin listener
	}{
		{testReq{method: "POST", path: "/api/v1/accounts", body: `{"customer_id":"c","account_type":"checking","currency":"USD"}`}, auth.AccountsWrite, false},
		{testReq{method: "GET", path: "/api/v1/accounts/" + testAccount}, auth.AccountsRead, false},
		{testReq{method: "GET", path: "/api/v1/accounts/" + testAccount + "/balance"}, auth.AccountsRead, false},
		{testReq{method: "GET", path: "/api/v1/accounts/" + testAccount + "/transactions"}, auth.TransactionsRead, false},
		{testReq{method: "POST", path: "/api/v1/transactions/credit", body: money}, auth.TransactionsWrite, false},
		{testReq{method: "POST", path: "/api/v1/transactions/debit", body: money}, auth.TransactionsWrite, false},
		{testReq{method: "POST", path: "/api/v1/transactions/transfer", body: transfer}, auth.TransactionsWrite, false},
		{testReq{method: "POST", path: "/api/v1/transactions/batch", body: `{"items":[{"type":"credit","account_id":"` + testAccount + `","amount":"1.00","currency":"USD"}]}`}, auth.TransactionsWrite, false},
		{testReq{method: "GET", path: "/api/v1/transactions/" + testAccount}, auth.TransactionsRead, false},
		{testReq{method: "GET", path: "/metrics"}, auth.MetricsRead, false},
		{testReq{method: "GET", path: "/internal/members"}, auth.Cluster, true},
		{testReq{method: "POST", path: "/internal/drain"}, auth.Cluster, true},
		{testReq{method: "GET", path: "/debug/pprof/heap"}, auth.Admin, true},
		{testReq{method: "POST", path: "/api/v1/users", body: `{"username":"u1","password":"p","role":"teller"}`}, auth.Admin, true},
		{testReq{method: "GET", path: "/api/v1/users"}, auth.Admin, true},
		{testReq{method: "POST", path: "/api/v1/users/u1/disable"}, auth.Admin, true},
		{testReq{method: "POST", path: "/api/v1/api-keys", body: `{"name":"k","scopes":["admin"]}`}, auth.Admin, true},
		{testReq{method: "GET", path: "/api/v1/api-keys"}, auth.Admin, true},
		{testReq{method: "DELETE", path: "/api/v1/api-keys/aaaaaaaaaaaaaaaa"}, auth.Admin, true},
	}
	listener := func(admin bool) *testAPI {
		if admin {
			return r.admin
		}
		return r.api
	}
	revoked, revokedID := r.key(t, auth.Scopes...)
	if err := r.store.RevokeAPIKey(context.Background(), revokedID); err != nil {
		t.Fatal(err)
	}
	valid, _ := r.key(t, auth.AccountsRead)
	unknown, _, _ := auth.NewToken()
	forged := valid[:len(valid)-4] + "aaaa"
	if forged == valid {
		forged = valid[:len(valid)-4] + "bbbb"
	}
	// User tokens: one expired, one signed by a key no node has, one
	// of a disabled user, one with an alg the verifier does not take.
	ctx := context.Background()
	if _, err := auth.RotateSigningKey(ctx, r.store); err != nil {
		t.Fatal(err)
	}
	keys, err := r.store.SigningKeys(ctx)
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys: %v %v", keys, err)
	}
	nodeKey := ed25519.NewKeyFromSeed(keys[0].PrivateKey)
	_, strangerKey, _ := ed25519.GenerateKey(nil)
	gone, err := auth.NewUser("gone", "a long enough password", auth.RoleAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.CreateUser(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.DisableUser(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired := signTestToken(t, keys[0].ID, nodeKey, gone.ID, now.Add(-time.Hour))
	stranger := signTestToken(t, keys[0].ID, strangerKey, gone.ID, now)
	disabled := signTestToken(t, keys[0].ID, nodeKey, gone.ID, now)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "bursar", "aud": "bursar", "sub": gone.ID, "role": "admin", "exp": now.Add(time.Minute).Unix()})
	hs.Header["kid"] = keys[0].ID
	hsToken, err := hs.SignedString(keys[0].PublicKey) // the public key as an HMAC secret: the classic confusion
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name, header string
	}{
		{"expired user token", "Bearer " + expired},
		{"user token with a bad signature", "Bearer " + stranger},
		{"disabled user's token", "Bearer " + disabled},
		{"HS256 user token", "Bearer " + hsToken},
		{"no credential", ""},
		{"basic auth", "Basic dXNlcjpwYXNz"},
		{"bearer without a token", "Bearer "},
		{"not an API key", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"},
		{"two tokens", "Bearer " + valid + " " + valid},
		{"unknown key", "Bearer " + unknown},
		{"forged secret", "Bearer " + forged},
		{"revoked key", "Bearer " + revoked},
	}
	// Every key the test uses exists before the verifier's load: a key
	// unknown to it would wait for a miss's reload (about a second).
	lacking := map[auth.Scope]string{}
	own := map[auth.Scope]string{}
	for _, rt := range routes {
		var others []auth.Scope // every scope but this route's (and admin)
		for _, s := range auth.Scopes {
			if s != rt.scope && s != auth.Admin {
				others = append(others, s)
			}
		}
		lacking[rt.scope], _ = r.key(t, others...)
		own[rt.scope], _ = r.key(t, rt.scope)
	}
	admin, _ := r.key(t, auth.Admin)
	if err := r.verifier.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.appended(t)
	for _, rt := range routes {
		for _, ref := range refusals {
			req := rt.req
			if ref.header != "" {
				req.header = map[string]string{"Authorization": ref.header}
			}
			resp := listener(rt.admin).do(t, req)
			if resp.status != 401 || !strings.Contains(string(resp.body), `"UNAUTHENTICATED"`) {
				t.Errorf("%s %s, %s: %d %s, want 401 UNAUTHENTICATED", req.method, req.path, ref.name, resp.status, resp.body)
			}
		}
		req := rt.req
		req.header = map[string]string{"Authorization": "Bearer " + lacking[rt.scope]}
		if resp := listener(rt.admin).do(t, req); resp.status != 403 {
			t.Errorf("%s %s without %s: %d %s, want 403 FORBIDDEN", req.method, req.path, rt.scope, resp.status, resp.body)
		} else {
			assertError(t, resp, ledger.CodeForbidden)
		}
	}
	if after := r.appended(t); after != before {
		t.Fatalf("refused requests appended %d commands", after-before)
	}
	// The challenge a client needs to know what to send.
	resp := r.api.do(t, routes[0].req)
	assertError(t, resp, ledger.CodeUnauthenticated)

	// Let in: the route's own scope, or admin.
	for _, rt := range routes {
		for _, token := range []string{own[rt.scope], admin} {
			req := rt.req
			req.header = map[string]string{"Authorization": "bearer " + token} // the scheme in any case
			if resp := listener(rt.admin).do(t, req); resp.status == 401 || resp.status == 403 {
				t.Errorf("%s %s with scope %s: %d %s", req.method, req.path, rt.scope, resp.status, resp.body)
			}
		}
	}
	if after := r.appended(t); after <= before {
		t.Fatal("admitted writes appended nothing")
	}
	// Health and readiness need no credential.
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp := r.api.do(t, testReq{method: "GET", path: p}); resp.status == 401 || resp.status == 403 {
			t.Errorf("%s asked for a credential: %d", p, resp.status)
		}
	}
	if !slices.Contains(auth.Scopes, auth.MetricsRead) {
		t.Fatal("scopes changed: update the route table above")
	}
	// The operator endpoints are not on the API's listener at all, and the
	// API's routes not on the admin listener, whatever the key.
	for _, tc := range []struct {
		on   *testAPI
		path string
	}{{r.api, "/internal/members"}, {r.api, "/debug/pprof/heap"}, {r.api, "/api/v1/users"}, {r.api, "/api/v1/api-keys"},
		{r.admin, "/api/v1/accounts/" + testAccount}, {r.admin, "/api/v1/auth/token"}} {
		resp := tc.on.do(t, testReq{method: "GET", path: tc.path, header: map[string]string{"Authorization": "Bearer " + admin}})
		assertError(t, resp, ledger.CodeRouteNotFound)
	}
}

// TestUnauthenticatedCarriesAChallenge: a 401 names the scheme to use
// (RFC 6750), and says invalid_token for a bad key.
func TestUnauthenticatedCarriesAChallenge(t *testing.T) {
	r := newAuthRig(t)
	unknown, _, _ := auth.NewToken()
	for _, tc := range []struct{ header, want string }{
		{"", `Bearer realm="bursar"`},
		{"Bearer " + unknown, `Bearer realm="bursar", error="invalid_token"`},
		{"Token abc", `Bearer realm="bursar", error="invalid_request"`},
	} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://bursar.test/api/v1/accounts/" + testAccount)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		if err := r.api.client.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Header.Peek("WWW-Authenticate")); resp.StatusCode() != 401 || got != tc.want {
			t.Errorf("Authorization %q: %d WWW-Authenticate %q, want 401 %q", tc.header, resp.StatusCode(), got, tc.want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

func FuzzAuthorizationHeader(f *testing.F) {
	good, _, _ := auth.NewToken()
	for _, s := range []string{"", "Bearer " + good, "bearer " + good, "Bearer  " + good, "Bearer\t" + good, "Basic x", "Bearer", "BEARER " + good + "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		token, ok := bearer(h)
		if !ok {
			return
		}
		if len(token) == 0 || strings.ContainsAny(string(token), " \t") || !strings.EqualFold(string(h[:7]), "bearer ") {
			t.Fatalf("bearer(%q) = %q", h, token)
		}
	})
}

// TestCreatedByWaitsForEveryEngine: the command records the key that
// asked for it; while some engine node reads only version-1 records (a
// rolling upgrade), the ingress writes version 1 without it rather than a
// record that node would dead-letter.
func TestCreatedByWaitsForEveryEngine(t *testing.T) {
	r := newAuthRig(t)
	token, id := r.key(t, auth.TransactionsWrite)
	if err := r.verifier.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	var version atomic.Int32
	version.Store(2)
	r.srv.cfg.RecordVersion = func() int { return int(version.Load()) }
	credit := func(ref string) {
		t.Helper()
		resp := r.api.do(t, testReq{method: "POST", path: "/api/v1/transactions/credit", header: map[string]string{"Authorization": "Bearer " + token},
			body: `{"account_id":"` + testAccount + `","amount":"1.00","currency":"USD","reference_id":"` + ref + `"}`})
		if resp.status != 201 {
			t.Fatalf("credit %s: %d %s", ref, resp.status, resp.body)
		}
	}
	credit("by-v2")
	version.Store(1)
	credit("by-v1")
	cl, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: r.producer.OptValue(kgo.SeedBrokers).([]string)}.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := ledger.NewSlotMap(8).PartitionOfAccount(testAccountID)
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{kafkalog.TopicCommands: {p: kgo.NewOffset().AtStart()}})
	got := map[string]ledger.Command{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for len(got) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			c, err := ledger.DecodeCommand(rec.Value)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			got[c.ReferenceID] = c
			if c.ReferenceID == "by-v1" && rec.Value[0] != 1 {
				t.Errorf("record version %d while an engine reads only 1", rec.Value[0])
			}
		})
	}
	if got["by-v2"].CreatedBy != "apikey:"+id || got["by-v1"].CreatedBy != "" {
		t.Fatalf("created_by: v2 %q, v1 %q; want %q and none", got["by-v2"].CreatedBy, got["by-v1"].CreatedBy, "apikey:"+id)
	}
}

// signTestToken signs an admin token for user id with key (kid in the
// header), expiring a minute after exp-1m: exp in the past makes it expired.
func signTestToken(t *testing.T, kid string, key ed25519.PrivateKey, id string, issued time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "bursar", "aud": "bursar", "sub": id, "name": "gone", "role": "admin", "jti": "t-" + strconv.FormatInt(issued.UnixNano(), 36),
		"iat": issued.Unix(), "nbf": issued.Unix(), "exp": issued.Add(time.Minute).Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLoginThrottles: failed logins spend the user's bucket and the
// address's; once the user's is empty, an address that has failed is
// refused with 429 before the password is looked at, even the right one,
// while an address with no failure to earn back still logs in, so that
// guessing cannot lock a user out.
func TestLoginThrottles(t *testing.T) {
	r := newAuthRig(t)
	ctx := context.Background()
	u, err := auth.NewUser("alice", "alice's long password", auth.RoleTeller, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	r.srv.loginThrottle, r.srv.loginCleanThrottle, r.srv.authThrottle = newLoginThrottle(2), newLoginThrottle(6), newAuthThrottle(100)
	r.srv.loginThrottle.now, r.srv.loginCleanThrottle.now, r.srv.authThrottle.now = clock, clock, clock
	login := func(password string) testResp {
		return r.api.do(t, testReq{method: "POST", path: "/api/v1/auth/token", body: `{"username":"alice","password":"` + password + `"}`})
	}
	// The first guess comes from a clean address; the next two from a
	// dirty one, which empty the dirty bucket.
	for i := range 3 {
		assertError(t, login("wrong password "+strconv.Itoa(i)), ledger.CodeUnauthenticated)
	}
	resp := login("wrong password 3")
	assertError(t, resp, ledger.CodeRateLimited)
	if resp.header["Retry-After"] == "" {
		t.Fatal("429 without Retry-After")
	}
	assertError(t, login("alice's long password"), ledger.CodeRateLimited) // this address has failed
	now = now.Add(2 * time.Second)                                         // the address's bucket is full again; the user's dirty one is not
	if resp := login("alice's long password"); resp.status != 200 || !strings.Contains(string(resp.body), `"access_token":"eyJ`) {
		t.Fatalf("the right password from a clean address while the user's bucket is empty: %d %s", resp.status, resp.body)
	}
	// Guessing from addresses that are always clean (one guess per
	// refill) is bounded too: by the clean bucket.
	allowed := 0
	for range 20 {
		now = now.Add(2 * time.Second)
		resp := login("wrong password again")
		if resp.status == 429 {
			break
		}
		assertError(t, resp, ledger.CodeUnauthenticated)
		allowed++
	}
	if allowed == 20 || allowed > 8 {
		t.Fatalf("%d guesses from clean addresses before 429; the clean bucket holds 6", allowed)
	}
	// Another user's logins are not held by alice's bucket.
	assertError(t, r.api.do(t, testReq{method: "POST", path: "/api/v1/auth/token", body: `{"username":"bob","password":"anything at all"}`}), ledger.CodeUnauthenticated)
}

// TestBadKeysAreThrottledPerKeyID: wrong secrets for one key ID, from
// addresses that each stay under their own limit, spend that ID's bucket;
// past it, tokens with that ID get 429 without a check, while the live
// key itself still gets in.
func TestBadKeysAreThrottledPerKeyID(t *testing.T) {
	r := newAuthRig(t)
	live, id := r.key(t, auth.AccountsRead)
	if err := r.verifier.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	r.srv.keyThrottle, r.srv.authThrottle = newLoginThrottle(3), nil // the address limit off: only the key ID's counts
	r.srv.keyThrottle.now = func() time.Time { return now }
	read := func(token string) testResp {
		return r.api.do(t, testReq{method: "GET", path: "/api/v1/accounts/" + testAccount + "/balance", header: map[string]string{"Authorization": "Bearer " + token}})
	}
	wrong := func(i int) string {
		b := []byte(live)
		b[len(b)-1] = "abcdefgh"[i%8]
		if string(b) == live {
			b[len(b)-1] = 'z'
		}
		return string(b)
	}
	for i := range 3 {
		assertError(t, read(wrong(i)), ledger.CodeUnauthenticated)
	}
	assertError(t, read(wrong(3)), ledger.CodeRateLimited)
	if resp := read(live); resp.status == 401 || resp.status == 429 {
		t.Fatalf("the live key %s while its ID is throttled: %d %s", id, resp.status, resp.body)
	}
	other, _ := r.key(t, auth.AccountsRead)
	if err := r.verifier.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := read(other); resp.status == 401 || resp.status == 429 {
		t.Fatalf("another key while one ID is throttled: %d %s", resp.status, resp.body)
	}
	now = now.Add(time.Minute)
	assertError(t, read(wrong(5)), ledger.CodeUnauthenticated) // earned back
}
