package ingress

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Connection limits. Serve wraps the listener: a connection beyond
// Config.MaxConns (503 UNAVAILABLE), or beyond Config.MaxConnsPerIP from one
// source address (429 TOO_MANY_CONNECTIONS), is answered and closed at
// once, before a byte of it is read, and counted in
// bursar_ingress_rejected_total{reason="connections"} and
// {reason="connections_per_ip"}. fasthttp's own MaxConnsPerIP is not used:
// it counts IPv4 addresses only and answers in plain text, uncounted.
//
// Every accepted connection reads through a framer (framing.go), which
// refuses bare-LF line endings and names what a read that timed out was
// waiting for: bursar_http_timeouts_total{phase="header", "body", "idle"}.

// connLimits counts the open connections, in total and per source address.
type connLimits struct {
	total, perIP int // caps; perIP 0: none

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]int

	opened atomic.Int64 // open, for the gauge without the lock

	// released, if set (setReleased), is called after a connection's slot
	// is given back: tests wait on it instead of polling.
	released func()
}

func (l *connLimits) setReleased(f func()) {
	l.mu.Lock()
	l.released = f
	l.mu.Unlock()
}

// acquire takes a slot for a connection from addr (invalid: not a TCP
// address, counted in the total only), or says which limit refuses it.
func (l *connLimits) acquire(addr netip.Addr) ledger.Code {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total {
		return ledger.CodeUnavailable
	}
	if l.perIP > 0 && addr.IsValid() {
		if l.byAddr[addr] >= l.perIP {
			return ledger.CodeTooManyConnections
		}
		if l.byAddr == nil {
			l.byAddr = make(map[netip.Addr]int)
		}
		l.byAddr[addr]++
	}
	l.open++
	l.opened.Store(int64(l.open))
	return ledger.OK
}

func (l *connLimits) release(addr netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.open < 0 {
		panic("ingress: more connections released than acquired")
	}
	if l.perIP > 0 && addr.IsValid() {
		if n := l.byAddr[addr] - 1; n > 0 {
			l.byAddr[addr] = n
		} else {
			delete(l.byAddr, addr)
		}
	}
	l.opened.Store(int64(l.open))
	released := l.released
	l.mu.Unlock()
	if released != nil {
		released()
	}
}

// sourceAddr is c's remote IP address, IPv4-mapped IPv6 unmapped so that
// one client counts once; the zero Addr for a non-TCP connection.
func sourceAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// limitListener applies the connection limits to what its listener
// accepts.
type limitListener struct {
	net.Listener
	s      *Server
	limits *connLimits // the API's, or the admin listener's own
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := sourceAddr(c)
		code := l.limits.acquire(addr)
		if code == ledger.OK {
			return &limitConn{Conn: c, s: l.s, limits: l.limits, addr: addr}, nil
		}
		l.s.refuseConn(c, l.limits, code)
	}
}

// refusalWriteTimeout bounds the write of a refusal, done on the accept
// loop (a fresh connection's send buffer takes it at once).
const refusalWriteTimeout = 100 * time.Millisecond

// refuseConn answers a connection over a limit and closes it.
func (s *Server) refuseConn(c net.Conn, limits *connLimits, code ledger.Code) {
	reason, msg := "connections", "the server has "+strconv.Itoa(limits.total)+" connections open, its limit; retry shortly"
	if code == ledger.CodeTooManyConnections {
		reason, msg = "connections_per_ip", "this address has "+strconv.Itoa(limits.perIP)+" connections open, the limit per address; reuse them (keep-alive) or close some"
	}
	s.rejected.WithLabelValues(reason).Inc()
	info := code.Info()
	rid := s.mintRequestID()
	w := getJSONWriter()
	appendError(w, info.Name, msg, rid)
	w.B = append(w.B, '\n')
	head := "HTTP/1.1 " + strconv.Itoa(info.HTTPStatus) + " " + fasthttp.StatusMessage(info.HTTPStatus) + "\r\n" +
		"Server: bursar\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(w.B)) + "\r\n" +
		"X-Request-ID: " + rid + "\r\nConnection: close\r\n\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	_, _ = c.Write(append([]byte(head), w.B...)) // best effort: the client may be gone
	putJSONWriter(w)
	_ = c.Close()
}

// limitConn is an accepted connection: it holds its slot until closed and
// reads through a framer.
type limitConn struct {
	net.Conn
	s      *Server
	limits *connLimits
	addr   netip.Addr

	// Read runs on the connection's one serving goroutine; Close may run
	// on another (fasthttp's shutdown closes idle connections).
	fr     framer
	err    error // sticky: a framing refusal
	timed  bool  // a timeout was counted
	closed atomic.Bool
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if k, ferr := c.fr.feed(p[:n]); ferr != nil {
			// Hand over what came before the refused line: fasthttp then
			// finds the head incomplete, reads again, gets the error and
			// answers 400 through the error handler.
			c.err = ferr
			return k, ferr
		}
	}
	if err != nil && !c.timed && isTimeout(err) {
		c.timed = true
		c.s.timeouts.WithLabelValues(c.fr.reading()).Inc()
	}
	return n, err
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.limits.release(c.addr)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// initConns creates the connection limits and their metrics.
func (s *Server) initConns(reg prometheus.Registerer) {
	s.conns = &connLimits{total: s.cfg.MaxConns, perIP: max(s.cfg.MaxConnsPerIP, 0)}
	// The admin listener has slots of its own: a flood of the API's
	// connections must not shut operators out.
	s.adminConns = &connLimits{total: adminConnsMax, perIP: 0}
	s.timeouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bursar_http_timeouts_total",
		Help: "Connections cut by a read timeout, by what was being read: header (--http-header-timeout; also a new connection that sent nothing), body (--http-body-timeout), idle (--http-idle-timeout between keep-alive requests), unknown (framing the server refuses anyway).",
	}, []string{"phase"})
	if reg != nil {
		reg.MustRegister(s.timeouts, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bursar_http_connections", Help: "Open HTTP connections (at most --http-max-conns).",
		}, func() float64 { return float64(s.conns.opened.Load()) }))
	}
}

// Serve serves hs (from NewHTTPServer) on ln under the connection limits.
func (s *Server) Serve(hs *fasthttp.Server, ln net.Listener) error {
	return hs.Serve(&limitListener{Listener: ln, s: s, limits: s.conns})
}

// adminConnsMax bounds the admin listener's connections.
const adminConnsMax = 256

// ServeAdmin serves hs (from NewAdminHTTPServer) on ln under the admin
// listener's own connection limit (adminConnsMax).
func (s *Server) ServeAdmin(hs *fasthttp.Server, ln net.Listener) error {
	return hs.Serve(&limitListener{Listener: ln, s: s, limits: s.adminConns})
}
