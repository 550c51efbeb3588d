package ingress

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The HTTP limits, over raw TCP against the server as the node builds it
// (NewHTTPServer served by Serve) on a loopback port. Only requests
// refused before the command log or a read is touched are sent.

// answerWait bounds every wait for an answer: far above the limits the
// tests configure, so that it only decides failures (an answer that never
// comes), never a pass.
const answerWait = 5 * time.Second

type limitsAPI struct {
	t    *testing.T
	addr string
	srv  *Server
	reg  *prometheus.Registry
}

func newLimitsAPI(t *testing.T, cfg Config) *limitsAPI {
	t.Helper()
	cfg.Partitions = 8
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, NewReplies("n/1", 10), nil, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.NewHTTPServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(hs, ln) }()
	t.Cleanup(func() {
		if err := hs.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &limitsAPI{t: t, addr: ln.Addr().String(), srv: srv, reg: reg}
}

// dial opens a connection, closed when the test ends, whose reads and
// writes fail after answerWait.
func (a *limitsAPI) dial() net.Conn {
	a.t.Helper()
	c, err := net.Dial("tcp", a.addr)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(answerWait)); err != nil {
		a.t.Fatal(err)
	}
	return c
}

// readResp reads one response from br.
func readResp(t *testing.T, br *bufio.Reader) testResp {
	t.Helper()
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return testResp{status: resp.StatusCode(), body: append([]byte(nil), resp.Body()...), header: map[string]string{
		"X-Request-ID": string(resp.Header.Peek("X-Request-ID")),
		"Content-Type": string(resp.Header.ContentType()),
		"Connection":   string(resp.Header.Peek("Connection")),
	}}
}

// send writes raw in the background: the server may answer, and close,
// before it has read all of it.
func send(c net.Conn, raw string) {
	go func() { _, _ = io.WriteString(c, raw) }()
}

// assertClosed checks that the server closed c after its answer.
func assertClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("the connection stayed open: read %q", b)
	} else if isTimeout(err) {
		t.Fatalf("the connection stayed open: %v", err)
	}
}

// rejected and timeouts read the counters as /metrics shows them.
func (a *limitsAPI) rejected(reason string) float64 {
	return counterValue(a.t, a.reg, "bursar_ingress_rejected_total", "reason", reason)
}

func (a *limitsAPI) timeouts(phase string) float64 {
	return counterValue(a.t, a.reg, "bursar_http_timeouts_total", "phase", phase)
}

// TestHTTPBareLF: a head with a line that ends in LF alone is answered
// 400 at once, instead of waiting for a CRLFCRLF that never comes; bare
// LFs in a body are data.
func TestHTTPBareLF(t *testing.T) {
	api := newLimitsAPI(t, Config{})
	for _, raw := range []string{
		"GET /healthz HTTP/1.1\nHost: t\n\n",
		"GET /healthz HTTP/1.1\r\nHost: t\n\n",
		"GET /healthz HTTP/1.1\r\nHost: t\r\n\n",
		"GET /healthz HTTP/1.1\nHost: t\r\n\r\n", // fasthttp would serve it; a proxy may read it otherwise
		"POST /api/v1/accounts HTTP/1.1\nHost: t\nContent-Type: application/json\nContent-Length: 2\n\n{}",
		"\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
	} {
		t.Run(strconv.Quote(raw), func(t *testing.T) {
			c := api.dial()
			send(c, raw)
			br := bufio.NewReader(c)
			r := readResp(t, br)
			assertError(t, r, ledger.CodeMalformedRequest)
			if !strings.Contains(string(r.body), "CRLF") {
				t.Fatalf("the message does not say why: %s", r.body)
			}
			assertClosed(t, br)
		})
	}
	if got := api.rejected("malformed"); got != 6 {
		t.Fatalf("bursar_ingress_rejected_total{reason=\"malformed\"} = %v, want 6", got)
	}

	t.Run("keep-alive", func(t *testing.T) {
		// Bare LFs in a body are data; the next request's head is checked
		// again.
		c := api.dial()
		br := bufio.NewReader(c)
		send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n\n\n\n\n")
		if r := readResp(t, br); r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
		if r := readResp(t, br); r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		send(c, "GET /healthz HTTP/1.1\r\nHost: t\n\n")
		assertError(t, readResp(t, br), ledger.CodeMalformedRequest)
		assertClosed(t, br)
	})
}

// TestHTTPHeadersTooLarge: a head over the limit is 431, whatever makes it
// large.
func TestHTTPHeadersTooLarge(t *testing.T) {
	api := newLimitsAPI(t, Config{})
	cases := map[string]string{
		"10000 headers":     "GET /healthz HTTP/1.1\r\nHost: t\r\n" + strings.Repeat("X-A: b\r\n", 10000) + "\r\n",
		"a 1 MB header":     "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n",
		"a long URI":        "GET /healthz?" + strings.Repeat("q", 16<<10) + " HTTP/1.1\r\nHost: t\r\n\r\n",
		"a header unending": "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + strings.Repeat("a", 64<<10),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			c := api.dial()
			send(c, raw)
			br := bufio.NewReader(c)
			assertError(t, readResp(t, br), ledger.CodeHeadersTooLarge)
			assertClosed(t, br)
		})
	}
	if got := api.rejected("header_size"); got != float64(len(cases)) {
		t.Fatalf("bursar_ingress_rejected_total{reason=\"header_size\"} = %v, want %d", got, len(cases))
	}
	// Just under the limit is served.
	c := api.dial()
	head := "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
	send(c, strings.Replace(head, "\r\n\r\n", "\r\nX-Pad: "+strings.Repeat("p", 8<<10-len(head)-len("X-Pad: \r\n"))+"\r\n\r\n", 1))
	if r := readResp(t, bufio.NewReader(c)); r.status != 200 {
		t.Fatalf("a head of 8 KiB: status %d: %s", r.status, r.body)
	}
}

// TestHTTPBodyLimitFromHeader: a Content-Length over the route's limit is
// refused from the head, before a byte of the body is sent (these clients
// send none: an answer that waited for the body would never come).
func TestHTTPBodyLimitFromHeader(t *testing.T) {
	api := newLimitsAPI(t, Config{MaxBodyBytes: testMaxBody, MaxBatchBodyBytes: 64 << 10})
	head := func(path string, n int, extra string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + extra +
			"Content-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	}
	refused := []struct {
		name, raw string
		limit     int
	}{
		{"credit, under the batch limit", head("/api/v1/transactions/credit", 32<<10, ""), testMaxBody},
		{"credit, 10 MB", head("/api/v1/transactions/credit", 10<<20, ""), testMaxBody},
		{"open, one byte over", head("/api/v1/accounts", testMaxBody+1, ""), testMaxBody},
		{"batch", head(batchPath, 64<<10+1, ""), 64 << 10},
		{"batch, 10 MB", head(batchPath+"?x=1", 10<<20, ""), 64 << 10},
		// Only the batch path spelled exactly has the batch limit.
		{"batch spelled otherwise", head("/api/v1/transactions//batch", 32<<10, ""), testMaxBody},
		{"unknown route", head("/nope", 32<<10, ""), testMaxBody},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			c := api.dial()
			send(c, tc.raw)
			br := bufio.NewReader(c)
			r := readResp(t, br)
			assertError(t, r, ledger.CodePayloadTooLarge)
			if want := "larger than " + strconv.Itoa(tc.limit) + " bytes"; !strings.Contains(string(r.body), want) {
				t.Fatalf("message %s does not say %q", r.body, want)
			}
			assertClosed(t, br)
		})
	}

	t.Run("expect 100-continue, over", func(t *testing.T) {
		c := api.dial()
		send(c, head("/api/v1/transactions/credit", 32<<10, "Expect: 100-continue\r\n"))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 413 ") {
			t.Fatalf("first line %q (%v), want a 413 without 100 Continue", line, err)
		}
	})
	t.Run("expect 100-continue, under", func(t *testing.T) {
		c := api.dial()
		send(c, head("/api/v1/accounts", 1, "Expect: 100-continue\r\n"))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q (%v), want 100 Continue", line, err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		send(c, "{")
		assertError(t, readResp(t, br), ledger.CodeMalformedRequest)
	})
	if got, want := api.rejected("body_size"), float64(len(refused)+1); got != want {
		t.Fatalf("bursar_ingress_rejected_total{reason=\"body_size\"} = %v, want %v", got, want)
	}

	t.Run("batch under its limit", func(t *testing.T) {
		// Over the other routes' limit, under the batch's: the body is read
		// (and refused as JSON).
		c := api.dial()
		body := "{" + strings.Repeat(" ", 32<<10)
		send(c, head(batchPath, len(body), "")+body)
		assertError(t, readResp(t, bufio.NewReader(c)), ledger.CodeMalformedRequest)
	})
}

// slowTimeouts are the timeouts of the slow-client tests: a header must
// come within 300ms of its first byte, a body within 2s of its head.
var slowTimeouts = Config{HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 2 * time.Second, IdleTimeout: 300 * time.Millisecond}

// trickle writes raw a byte every gap until it is written or the
// connection fails, then closes done.
func trickle(c net.Conn, raw string, gap time.Duration) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(gap)
		defer t.Stop()
		for i := range len(raw) {
			if _, err := c.Write([]byte{raw[i]}); err != nil {
				return
			}
			<-t.C
		}
	}()
	return done
}

// TestHTTPSlowloris: clients sending their head a byte at a time are cut
// by the header timeout, each with a 408, and counted; so is a connection
// that sends nothing.
func TestHTTPSlowloris(t *testing.T) {
	api := newLimitsAPI(t, slowTimeouts)
	const clients = 50
	head := "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n"
	var wg sync.WaitGroup
	for i := range clients {
		c := api.dial()
		raw := head
		if i == 0 {
			raw = "" // connects and says nothing
		}
		done := trickle(c, raw, 20*time.Millisecond)
		wg.Go(func() {
			br := bufio.NewReader(c)
			var resp fasthttp.Response
			err := resp.Read(br)
			c.Close()
			<-done
			if err != nil || resp.StatusCode() != 408 {
				t.Errorf("client %d: status %d, %v; want 408", i, resp.StatusCode(), err)
			}
		})
	}
	wg.Wait()
	if got := api.timeouts("header"); got != clients {
		t.Fatalf("bursar_http_timeouts_total{phase=\"header\"} = %v, want %d", got, clients)
	}
}

// TestHTTPSlowBody: a body sent a byte at a time is cut by the body
// timeout, not the header timeout: one that takes longer than the header
// timeout but less than the body timeout is served.
func TestHTTPSlowBody(t *testing.T) {
	api := newLimitsAPI(t, slowTimeouts)
	head := func(n int) string {
		return "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	}
	within, beyond := api.dial(), api.dial()
	// The head at once, then 30 bytes in 600ms: twice the header timeout,
	// under the body timeout.
	if _, err := io.WriteString(within, head(30)); err != nil {
		t.Fatal(err)
	}
	withinDone := trickle(within, strings.Repeat("w", 30), 20*time.Millisecond)
	// 200 bytes in 4s: beyond the body timeout.
	if _, err := io.WriteString(beyond, head(200)); err != nil {
		t.Fatal(err)
	}
	beyondDone := trickle(beyond, strings.Repeat("b", 200), 20*time.Millisecond)

	if r := readResp(t, bufio.NewReader(within)); r.status != 200 {
		t.Fatalf("a body within the body timeout: status %d: %s", r.status, r.body)
	}
	<-withinDone
	br := bufio.NewReader(beyond)
	assertError(t, readResp(t, br), ledger.CodeRequestTimeout)
	assertClosed(t, br)
	beyond.Close()
	<-beyondDone
	if got := api.timeouts("body"); got != 1 {
		t.Fatalf("bursar_http_timeouts_total{phase=\"body\"} = %v, want 1", got)
	}
	if got := api.timeouts("header"); got != 0 {
		t.Fatalf("bursar_http_timeouts_total{phase=\"header\"} = %v, want 0", got)
	}
}

// TestHTTPIdleTimeout: a keep-alive connection with no next request is
// closed, without an answer, and counted as idle.
func TestHTTPIdleTimeout(t *testing.T) {
	api := newLimitsAPI(t, slowTimeouts)
	c := api.dial()
	send(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResp(t, br); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if b, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %q, %v; want the server to close the idle connection", b, err)
	}
	if got := api.timeouts("idle"); got != 1 {
		t.Fatalf("bursar_http_timeouts_total{phase=\"idle\"} = %v, want 1", got)
	}
}

// waitReleased makes api's connection limits report each released slot.
func (a *limitsAPI) waitReleased() <-chan struct{} {
	ch := make(chan struct{}, 64)
	a.srv.conns.setReleased(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch
}

// holdConns opens n connections and has each served once, so that each is
// accepted (holding its slot) when this returns.
func (a *limitsAPI) holdConns(n int) []net.Conn {
	a.t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = a.dial()
		send(conns[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
		if r := readResp(a.t, bufio.NewReader(conns[i])); r.status != 200 {
			a.t.Fatalf("connection %d: status %d", i, r.status)
		}
	}
	return conns
}

// refused checks that a new connection is answered with want and closed.
func (a *limitsAPI) refused(want ledger.Code) {
	a.t.Helper()
	c := a.dial()
	br := bufio.NewReader(c)
	r := readResp(a.t, br)
	assertError(a.t, r, want)
	if r.header["Connection"] != "close" {
		a.t.Fatalf("Connection %q, want close", r.header["Connection"])
	}
	assertClosed(a.t, br)
}

// TestHTTPConnsPerIP: the connection after --http-max-conns-per-ip from one
// address is answered 429 and closed; closing one frees its slot.
func TestHTTPConnsPerIP(t *testing.T) {
	const perIP = 5
	api := newLimitsAPI(t, Config{MaxConnsPerIP: perIP})
	released := api.waitReleased()
	held := api.holdConns(perIP)
	api.refused(ledger.CodeTooManyConnections)
	api.refused(ledger.CodeTooManyConnections)
	if got := api.rejected("connections_per_ip"); got != 2 {
		t.Fatalf("bursar_ingress_rejected_total{reason=\"connections_per_ip\"} = %v, want 2", got)
	}
	held[0].Close()
	<-released
	api.holdConns(1)
	api.refused(ledger.CodeTooManyConnections)
}

// TestHTTPMaxConns: the connection after --http-max-conns, from any
// address, is answered 503 and closed.
func TestHTTPMaxConns(t *testing.T) {
	const total = 4
	api := newLimitsAPI(t, Config{MaxConns: total, MaxConnsPerIP: -1})
	released := api.waitReleased()
	held := api.holdConns(total)
	api.refused(ledger.CodeUnavailable)
	if got := api.rejected("connections"); got != 1 {
		t.Fatalf("bursar_ingress_rejected_total{reason=\"connections\"} = %v, want 1", got)
	}
	held[total-1].Close()
	<-released
	api.holdConns(1)
}

// TestHTTPLogger: fasthttp's messages (about requests already answered and
// counted) are logged at debug level only.
func TestHTTPLogger(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf strings.Builder
		l := httpLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))}
		l.Printf("error when serving connection %q: %v", "a<->b", errBareLF)
		if got := buf.String(); (got != "") != (level == slog.LevelDebug) || got != "" && !strings.Contains(got, "level=DEBUG") {
			t.Fatalf("at level %v: %q", level, got)
		}
	}
}

// TestHTTPConnsDefaults: the defaults take the bench's 256 keep-alive
// connections and k6's 1000 virtual users (plus the 6 connections of
// its setup's batches) from one address.
func TestHTTPConnsDefaults(t *testing.T) {
	var cfg Config
	cfg.setDefaults()
	if cfg.MaxConnsPerIP < 1000+6 || cfg.MaxConns < cfg.MaxConnsPerIP {
		t.Fatalf("per address %d, total %d", cfg.MaxConnsPerIP, cfg.MaxConns)
	}
}

// TestAdminListenerHasItsOwnConnections: with every API connection taken,
// the admin listener still takes operators' connections.
func TestAdminListenerHasItsOwnConnections(t *testing.T) {
	const total = 2
	api := newLimitsAPI(t, Config{MaxConns: total, MaxConnsPerIP: -1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := api.srv.NewAdminHTTPServer()
	served := make(chan error, 1)
	go func() { served <- api.srv.ServeAdmin(hs, ln) }()
	t.Cleanup(func() {
		if err := hs.Shutdown(); err != nil {
			t.Errorf("admin shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("admin serve: %v", err)
		}
	})
	api.holdConns(total)
	api.refused(ledger.CodeUnavailable)
	admin := &limitsAPI{t: t, addr: ln.Addr().String(), srv: api.srv, reg: api.reg}
	admin.holdConns(total + 1) // more than the API's whole limit
}
