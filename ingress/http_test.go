package ingress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/bursar/bursar/ledger"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

const testMaxBody = 1024

// testAPI is a Server with no producer, engine or store, served by the real
// fasthttp server on an in-memory listener. Only requests refused before
// the command log or a read is touched can be sent to it.
type testAPI struct {
	ln     *fasthttputil.InmemoryListener
	client *fasthttp.HostClient
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	srv, err := New(Config{Partitions: 8, MaxBodyBytes: testMaxBody}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		nil, NewReplies("n/1", 10), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return serveTestAPI(t, srv)
}

// serveTestAPI serves srv on an in-memory listener until the test ends.
func serveTestAPI(t *testing.T, srv *Server) *testAPI {
	t.Helper()
	return serveTestHTTP(t, srv, srv.NewHTTPServer())
}

// serveTestHTTP serves hs (one of srv's listeners) on an in-memory
// listener until the test ends.
func serveTestHTTP(t *testing.T, srv *Server, hs *fasthttp.Server) *testAPI {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(hs, ln) }()
	api := &testAPI{ln: ln, client: &fasthttp.HostClient{
		Addr: "bursar.test",
		Dial: func(string) (net.Conn, error) { return ln.Dial() },
		// Keep one connection so that keep-alive reuse is exercised.
		MaxConns: 1,
	}}
	t.Cleanup(func() {
		api.client.CloseIdleConnections()
		if err := hs.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return api
}

type testReq struct {
	method, path string
	header       map[string]string // Content-Type defaults to application/json for bodies
	body         string
}

type testResp struct {
	status int
	header map[string]string
	body   []byte
}

func (a *testAPI) do(t *testing.T, r testReq) testResp {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(r.method)
	req.SetRequestURI("http://bursar.test" + r.path)
	if r.body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(r.body)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if err := a.client.Do(req, resp); err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	out := testResp{status: resp.StatusCode(), header: map[string]string{}, body: append([]byte(nil), resp.Body()...)}
	for _, k := range []string{"X-Request-ID", "Allow", "Content-Type", "Retry-After"} {
		out.header[k] = string(resp.Header.Peek(k))
	}
	return out
}

// errorBody is the one error shape; decoding it strictly also checks that
// nothing else is in the body.
type errorBody struct {
	Error *struct {
		Code      *string `json:"code"`
		Message   *string `json:"message"`
		RequestID *string `json:"request_id"`
	} `json:"error"`
}

// assertError checks the status, the code, the exact body shape and that
// request_id is the X-Request-ID header.
func assertError(t *testing.T, r testResp, want ledger.Code) {
	t.Helper()
	info := want.Info()
	if r.status != info.HTTPStatus {
		t.Fatalf("status %d, want %d; body %s", r.status, info.HTTPStatus, r.body)
	}
	if ct := r.header["Content-Type"]; ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var eb errorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if dec.More() {
		t.Fatalf("error body %s has data after the object", r.body)
	}
	if eb.Error == nil || eb.Error.Code == nil || eb.Error.Message == nil || eb.Error.RequestID == nil {
		t.Fatalf("error body %s lacks error.code, error.message or error.request_id", r.body)
	}
	if *eb.Error.Code != info.Name {
		t.Fatalf("code %s (%s), want %s", *eb.Error.Code, *eb.Error.Message, info.Name)
	}
	if *eb.Error.Message == "" {
		t.Fatalf("empty message in %s", r.body)
	}
	if rid := r.header["X-Request-ID"]; rid == "" || *eb.Error.RequestID != rid {
		t.Fatalf("request_id %q, X-Request-ID header %q", *eb.Error.RequestID, rid)
	}
}

func TestHTTPErrors(t *testing.T) {
	const (
		id      = testAccount
		nilID   = "00000000-0000-0000-0000-000000000000"
		validMB = `{"account_id":"` + testAccount + `","amount":"1.00","currency":"USD"}`
		validOp = `{"customer_id":"c","account_type":"checking","currency":"USD"}`
		validTr = `{"source_account_id":"` + testAccount + `","destination_account_id":"` + otherAccount + `","amount":"1","currency":"USD"}`
	)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	ct := func(v string) map[string]string { return map[string]string{"Content-Type": v} }
	tooBig := `{"account_id":"` + testAccount + `","amount":"1","currency":"USD","description":"` + strings.Repeat("x", testMaxBody) + `"}`

	cases := []struct {
		name  string
		req   testReq
		want  ledger.Code
		allow string // expected Allow header for 405
	}{
		// Unknown routes.
		{name: "root", req: testReq{method: "GET", path: "/"}, want: ledger.CodeRouteNotFound},
		{name: "unknown path", req: testReq{method: "GET", path: "/nope"}, want: ledger.CodeRouteNotFound},
		{name: "api prefix only", req: testReq{method: "GET", path: "/api/v1"}, want: ledger.CodeRouteNotFound},
		{name: "api v2", req: testReq{method: "GET", path: "/api/v2/accounts/" + id}, want: ledger.CodeRouteNotFound},
		{name: "unknown collection", req: testReq{method: "POST", path: "/api/v1/widgets", body: "{}"}, want: ledger.CodeRouteNotFound},
		{name: "unknown sub-resource", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/owners"}, want: ledger.CodeRouteNotFound},
		{name: "too deep", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/balance/x"}, want: ledger.CodeRouteNotFound},
		{name: "transactions collection", req: testReq{method: "GET", path: "/api/v1/transactions"}, want: ledger.CodeRouteNotFound},
		{name: "under a transaction action", req: testReq{method: "POST", path: "/api/v1/transactions/credit/refund", body: "{}"}, want: ledger.CodeRouteNotFound},
		{name: "under a transaction", req: testReq{method: "GET", path: "/api/v1/transactions/" + id + "/legs"}, want: ledger.CodeRouteNotFound},
		{name: "metrics disabled", req: testReq{method: "GET", path: "/metrics"}, want: ledger.CodeRouteNotFound},

		// Wrong methods.
		{name: "POST healthz", req: testReq{method: "POST", path: "/healthz"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "DELETE healthz", req: testReq{method: "DELETE", path: "/healthz"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "POST readyz", req: testReq{method: "POST", path: "/readyz"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "GET open", req: testReq{method: "GET", path: "/api/v1/accounts"}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "PUT open", req: testReq{method: "PUT", path: "/api/v1/accounts", body: validOp}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "GET credit", req: testReq{method: "GET", path: "/api/v1/transactions/credit"}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "HEAD credit", req: testReq{method: "HEAD", path: "/api/v1/transactions/credit"}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "GET transfer", req: testReq{method: "GET", path: "/api/v1/transactions/transfer"}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "PATCH debit", req: testReq{method: "PATCH", path: "/api/v1/transactions/debit", body: validMB}, want: ledger.CodeMethodNotAllowed, allow: "POST"},
		{name: "POST account", req: testReq{method: "POST", path: "/api/v1/accounts/" + id, body: "{}"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "DELETE account", req: testReq{method: "DELETE", path: "/api/v1/accounts/" + id}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "PUT balance", req: testReq{method: "PUT", path: "/api/v1/accounts/" + id + "/balance", body: "{}"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "POST history", req: testReq{method: "POST", path: "/api/v1/accounts/" + id + "/transactions", body: "{}"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "POST transaction", req: testReq{method: "POST", path: "/api/v1/transactions/" + id, body: "{}"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},
		{name: "wrong method before bad id", req: testReq{method: "DELETE", path: "/api/v1/accounts/not-a-uuid/balance"}, want: ledger.CodeMethodNotAllowed, allow: "GET"},

		// Content types.
		{name: "open text/plain", req: testReq{method: "POST", path: "/api/v1/accounts", header: ct("text/plain"), body: validOp}, want: ledger.CodeUnsupportedMediaType},
		{name: "credit form", req: testReq{method: "POST", path: "/api/v1/transactions/credit", header: ct("application/x-www-form-urlencoded"), body: validMB}, want: ledger.CodeUnsupportedMediaType},
		{name: "debit xml", req: testReq{method: "POST", path: "/api/v1/transactions/debit", header: ct("application/xml"), body: validMB}, want: ledger.CodeUnsupportedMediaType},
		{name: "json prefix of another type", req: testReq{method: "POST", path: "/api/v1/transactions/debit", header: ct("application/jsonp"), body: validMB}, want: ledger.CodeUnsupportedMediaType},
		{name: "transfer text/plain", req: testReq{method: "POST", path: "/api/v1/transactions/transfer", header: ct("text/plain"), body: validTr}, want: ledger.CodeUnsupportedMediaType},
		{name: "media type before the bad body", req: testReq{method: "POST", path: "/api/v1/accounts", header: ct("text/html"), body: "{"}, want: ledger.CodeUnsupportedMediaType},

		// Body size: our JSON error, not fasthttp's text.
		{name: "credit too large", req: testReq{method: "POST", path: "/api/v1/transactions/credit", body: tooBig}, want: ledger.CodePayloadTooLarge},
		{name: "open too large", req: testReq{method: "POST", path: "/api/v1/accounts", body: strings.Repeat(" ", testMaxBody+1)}, want: ledger.CodePayloadTooLarge},

		// Bodies.
		{name: "open malformed", req: testReq{method: "POST", path: "/api/v1/accounts", body: "{"}, want: ledger.CodeMalformedRequest},
		{name: "open empty body", req: testReq{method: "POST", path: "/api/v1/accounts", header: jsonCT}, want: ledger.CodeMalformedRequest},
		{name: "credit array", req: testReq{method: "POST", path: "/api/v1/transactions/credit", body: "[]"}, want: ledger.CodeMalformedRequest},
		{name: "debit two objects", req: testReq{method: "POST", path: "/api/v1/transactions/debit", body: validMB + validMB}, want: ledger.CodeMalformedRequest},
		{name: "credit unknown field", req: testReq{method: "POST", path: "/api/v1/transactions/credit", body: `{"account_id":"` + id + `","amount":"1","currency":"USD","to":"x"}`}, want: ledger.CodeMalformedRequest},
		{name: "json with charset", req: testReq{method: "POST", path: "/api/v1/transactions/credit", header: ct("application/json; charset=utf-8"), body: "nope"}, want: ledger.CodeMalformedRequest},
		{name: "json media type in upper case", req: testReq{method: "POST", path: "/api/v1/transactions/credit", header: ct("Application/JSON"), body: "nope"}, want: ledger.CodeMalformedRequest},
		{name: "transfer malformed", req: testReq{method: "POST", path: "/api/v1/transactions/transfer", body: `{"source_account_id":`}, want: ledger.CodeMalformedRequest},
		{name: "transfer missing destination", req: testReq{method: "POST", path: "/api/v1/transactions/transfer", body: `{"source_account_id":"` + id + `","amount":"1","currency":"USD"}`}, want: ledger.CodeMissingField},
		{name: "transfer to itself", req: testReq{method: "POST", path: "/api/v1/transactions/transfer", body: `{"source_account_id":"` + id + `","destination_account_id":"` + id + `","amount":"1","currency":"USD"}`}, want: ledger.CodeSameAccount},
		{name: "open missing customer", req: testReq{method: "POST", path: "/api/v1/accounts", body: `{"account_type":"checking","currency":"USD"}`}, want: ledger.CodeMissingField},
		{name: "credit zero", req: testReq{method: "POST", path: "/api/v1/transactions/credit", body: `{"account_id":"` + id + `","amount":"0","currency":"USD"}`}, want: ledger.CodeInvalidAmount},
		{name: "debit over-precise", req: testReq{method: "POST", path: "/api/v1/transactions/debit", body: `{"account_id":"` + id + `","amount":1.001,"currency":"USD"}`}, want: ledger.CodeInvalidAmount},
		{name: "credit lower-case currency", req: testReq{method: "POST", path: "/api/v1/transactions/credit", body: `{"account_id":"` + id + `","amount":"1","currency":"usd"}`}, want: ledger.CodeUnsupportedCurrency},
		{name: "credit bad idempotency key", req: testReq{method: "POST", path: "/api/v1/transactions/credit", header: map[string]string{"Idempotency-Key": "has space"}, body: validMB}, want: ledger.CodeInvalidField},
		{name: "open long idempotency key", req: testReq{method: "POST", path: "/api/v1/accounts", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 129)}, body: validOp}, want: ledger.CodeInvalidField},

		// IDs in paths and query parameters.
		{name: "balance bad id", req: testReq{method: "GET", path: "/api/v1/accounts/not-a-uuid/balance"}, want: ledger.CodeInvalidField},
		{name: "balance nil id", req: testReq{method: "GET", path: "/api/v1/accounts/" + nilID + "/balance"}, want: ledger.CodeInvalidField},
		// Percent-escapes in a path are refused before routing (TestHTTPRaw).
		{name: "balance braces id", req: testReq{method: "GET", path: "/api/v1/accounts/%7B" + id + "%7D/balance"}, want: ledger.CodeRouteNotFound},
		{name: "balance urn id", req: testReq{method: "GET", path: "/api/v1/accounts/urn:uuid:" + id + "/balance"}, want: ledger.CodeInvalidField},
		{name: "balance upper-case id", req: testReq{method: "GET", path: "/api/v1/accounts/" + strings.ToUpper(id) + "/balance"}, want: ledger.CodeInvalidField},
		{name: "transaction upper-case id", req: testReq{method: "GET", path: "/api/v1/transactions/" + strings.ToUpper(id)}, want: ledger.CodeInvalidField},
		// fasthttp collapses "//", so this is the account route with ID "balance".
		{name: "balance empty id", req: testReq{method: "GET", path: "/api/v1/accounts//balance"}, want: ledger.CodeInvalidField},
		{name: "account bad id", req: testReq{method: "GET", path: "/api/v1/accounts/" + id[:35]}, want: ledger.CodeInvalidField},
		{name: "HEAD account bad id", req: testReq{method: "HEAD", path: "/api/v1/accounts/xyz"}, want: ledger.CodeInvalidField},
		{name: "history bad id", req: testReq{method: "GET", path: "/api/v1/accounts/xyz/transactions"}, want: ledger.CodeInvalidField},
		{name: "history limit zero", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/transactions?limit=0"}, want: ledger.CodeInvalidField},
		{name: "history limit too large", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/transactions?limit=501"}, want: ledger.CodeInvalidField},
		{name: "history limit not a number", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/transactions?limit=ten"}, want: ledger.CodeInvalidField},
		{name: "history bad cursor", req: testReq{method: "GET", path: "/api/v1/accounts/" + id + "/transactions?cursor=-1"}, want: ledger.CodeInvalidField},
		{name: "transaction bad id", req: testReq{method: "GET", path: "/api/v1/transactions/12345"}, want: ledger.CodeInvalidField},
	}

	api := newTestAPI(t)
	seen := map[string]string{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := api.do(t, tc.req)
			if tc.req.method == "HEAD" {
				// No body in a HEAD answer: check what the headers can say.
				if r.status != tc.want.Info().HTTPStatus || r.header["X-Request-ID"] == "" || len(r.body) != 0 {
					t.Fatalf("HEAD: status %d, X-Request-ID %q, body %q", r.status, r.header["X-Request-ID"], r.body)
				}
			} else {
				assertError(t, r, tc.want)
			}
			if got := r.header["Allow"]; got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
			// Minted request IDs are unique and usable as client IDs.
			rid := r.header["X-Request-ID"]
			if prev, dup := seen[rid]; dup {
				t.Fatalf("request ID %q also minted for %q", rid, prev)
			}
			seen[rid] = tc.name
			if err := checkKey(rid, "X-Request-ID"); err != nil || len(rid) > 128 {
				t.Fatalf("minted request ID %q is not a valid client ID: %v", rid, err)
			}
		})
	}
}

func TestHTTPHealthz(t *testing.T) {
	api := newTestAPI(t)
	for _, method := range []string{"GET", "HEAD"} {
		r := api.do(t, testReq{method: method, path: "/healthz"})
		if r.status != 200 || r.header["X-Request-ID"] == "" || r.header["Content-Type"] != "application/json" {
			t.Fatalf("%s /healthz: status %d, headers %v", method, r.status, r.header)
		}
		want := "{\"status\":\"ok\"}\n"
		if method == "HEAD" {
			want = ""
		}
		if string(r.body) != want {
			t.Fatalf("%s /healthz body %q, want %q", method, r.body, want)
		}
	}
}

func TestHTTPRequestID(t *testing.T) {
	api := newTestAPI(t)
	cases := []struct {
		name   string
		sent   string
		echoed bool
	}{
		{"simple", "client-req-42", true},
		{"all allowed characters", "Ab9._:-", true},
		{"128 bytes", strings.Repeat("r", 128), true},
		{"129 bytes", strings.Repeat("r", 129), false},
		{"space", "has space", false},
		{"hash", "a#b", false},
		{"slash", "a/b", false},
		{"non-ASCII", "réq", false},
	}
	reqs := []struct {
		name string
		req  testReq
		want ledger.Code // OK: 200
	}{
		{"ok", testReq{method: "GET", path: "/healthz"}, ledger.OK},
		{"not found", testReq{method: "GET", path: "/nope"}, ledger.CodeRouteNotFound},
		{"bad body", testReq{method: "POST", path: "/api/v1/accounts", body: "{"}, ledger.CodeMalformedRequest},
		// Refused by fasthttp's body limit, before the router runs.
		{"too large", testReq{method: "POST", path: "/api/v1/accounts", body: strings.Repeat(" ", 2*testMaxBody)}, ledger.CodePayloadTooLarge},
	}
	for _, tc := range cases {
		for _, rq := range reqs {
			t.Run(tc.name+"/"+rq.name, func(t *testing.T) {
				req := rq.req
				req.header = map[string]string{"X-Request-ID": tc.sent}
				r := api.do(t, req)
				if rq.want == ledger.OK {
					if r.status != 200 {
						t.Fatalf("status %d", r.status)
					}
				} else {
					assertError(t, r, rq.want)
				}
				rid := r.header["X-Request-ID"]
				if tc.echoed && rid != tc.sent {
					t.Fatalf("X-Request-ID %q, want the client's %q", rid, tc.sent)
				}
				if !tc.echoed && (rid == tc.sent || rid == "" || checkKey(rid, "X-Request-ID") != nil) {
					t.Fatalf("invalid client ID %q answered with %q, want a fresh valid one", tc.sent, rid)
				}
			})
		}
	}
}

// TestHTTPKeepAliveRequestID sends, on one connection, a request that runs
// the router and then one refused by fasthttp itself: the second must not
// inherit the first one's request ID.
func TestHTTPKeepAliveRequestID(t *testing.T) {
	api := newTestAPI(t)
	first := api.do(t, testReq{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": "first-req"}})
	if first.header["X-Request-ID"] != "first-req" {
		t.Fatalf("first X-Request-ID %q", first.header["X-Request-ID"])
	}
	second := api.do(t, testReq{method: "POST", path: "/api/v1/transactions/credit", body: strings.Repeat(" ", testMaxBody+1)})
	assertError(t, second, ledger.CodePayloadTooLarge)
	if second.header["X-Request-ID"] == "first-req" {
		t.Fatal("the refused request reused the previous request's ID")
	}
	// The server closes the connection after a refused body; the client
	// redials and carries on.
	third := api.do(t, testReq{method: "GET", path: "/nope"})
	assertError(t, third, ledger.CodeRouteNotFound)
}

// TestHTTPRaw covers requests the fasthttp client cannot send: no
// Content-Type at all (allowed: JSON is assumed) and a chunked body over
// the limit.
func TestHTTPRaw(t *testing.T) {
	api := newTestAPI(t)
	chunk := strings.Repeat("x", testMaxBody)
	cases := []struct {
		name string
		raw  string
		want ledger.Code
	}{
		{"no content type, empty body", "POST /api/v1/accounts HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", ledger.CodeMalformedRequest},
		{"no content type, bad body", "POST /api/v1/transactions/credit HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n{", ledger.CodeMalformedRequest},
		{"chunked body too large", "POST /api/v1/transactions/credit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk), ledger.CodePayloadTooLarge},
		{"chunked bad body", "POST /api/v1/transactions/debit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2\r\n{}\r\n2\r\n{}\r\n0\r\n\r\n", ledger.CodeMalformedRequest},
	}
	// Paths spelled other than canonically are no route, whatever they
	// would resolve to.
	for _, p := range []string{
		"/api/v1/../../internal/members", "/api/v1/%2e%2e/%2e%2e/internal/node", "/api/v1/%2E%2E/internal/drain",
		"/api/v1/./accounts", "/api/v1//accounts", "/api/v1/accounts/", "/api%2fv1/accounts", "/%61pi/v1/accounts",
		"/healthz/.", "/x/../healthz", "/api/v1/transactions/../accounts",
	} {
		cases = append(cases, struct {
			name string
			raw  string
			want ledger.Code
		}{"non-canonical " + p, "POST " + p + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", ledger.CodeRouteNotFound})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := api.ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.raw); err != nil {
				t.Fatal(err)
			}
			var resp fasthttp.Response
			if err := resp.Read(bufio.NewReader(conn)); err != nil {
				t.Fatal(err)
			}
			r := testResp{status: resp.StatusCode(), body: resp.Body(), header: map[string]string{
				"X-Request-ID": string(resp.Header.Peek("X-Request-ID")),
				"Content-Type": string(resp.Header.ContentType()),
			}}
			assertError(t, r, tc.want)
		})
	}
}
