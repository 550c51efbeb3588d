// Package ingress is Bursar's REST API (fasthttp). It validates a request,
// mints the command's IDs and timestamp, appends the command to the
// partition of its account, and waits for the owner's answer; reads go to
// the owner's memory (balances) or PostgreSQL (history).
package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// Config configures the API.
type Config struct {
	// Partitions is the partition count of bursar.commands. Required.
	Partitions int32
	// Routing routes accounts to partitions (the slot maps PostgreSQL
	// holds, shared with the node's engine); nil: version 0 over
	// Partitions.
	Routing *engine.Routing
	// Auth checks every route's credential but /healthz and /readyz; nil
	// lets every request in (--auth=off).
	Auth Authenticator
	// RateLimiter, if set, limits the API's requests per credential and
	// per source address (429 RATE_LIMITED); nil: no limits.
	RateLimiter *RateLimiter
	// Redis is the node's Redis (nil: none), for /readyz.
	Redis *RedisLink
	// Idem is the idempotency fast path (nil: none).
	Idem *IdemCache
	// Balances serves the eventual balance reads from Redis (nil: every
	// read is strong).
	Balances *BalanceCache
	// MetricsOnAdmin serves /metrics on the admin listener only, not on
	// the API's.
	MetricsOnAdmin bool
	// RecordVersion, if set, is the newest command record version every
	// engine node reads; below 2 the ingress records no created_by (a
	// rolling upgrade with older engines). Nil: the newest.
	RecordVersion func() int
	// AuthFailuresPerMinute is how many failed authentications a source
	// address may make in a minute before its requests are refused with
	// 429 until it earns some back (authThrottle), and how many one API
	// key ID may take from any address before tokens with that ID other
	// than the live key are (keyThrottle); 0: no limit.
	AuthFailuresPerMinute int
	// LoginFailuresPerMinute is how many failed logins one username may
	// take in a minute, from any address, before its logins are refused
	// with 429 until it earns some back (loginThrottle); 0: no limit.
	LoginFailuresPerMinute int
	// Directory serves users, logins and key management (users.go); nil:
	// those routes answer 404.
	Directory Directory
	// MaxBodyBytes bounds request bodies (PAYLOAD_TOO_LARGE beyond) on
	// every route but the batch. Default 16 KiB.
	MaxBodyBytes int
	// MaxBatchBodyBytes bounds the body of POST /transactions/batch.
	// Default 1 MiB.
	MaxBatchBodyBytes int
	// BatchItemsMax bounds the items of one batch. Default 1000.
	BatchItemsMax int
	// WaitTimeout is how long a write waits for its answer before 202
	// Accepted. Default 5s.
	WaitTimeout time.Duration
	// HistoryLimitMax bounds the page size of history reads. Default 500.
	HistoryLimitMax int
	// Durable, when set, returns once everything written to Kafka before
	// the call is durable (the embedded broker's group sync). Write answers
	// (202 Accepted too) and balance reads wait for it, so nothing a client
	// was told can be lost to a power cut. nil: the broker's acknowledgement is durability
	// enough.
	Durable func(context.Context) error
	// Written, set with Durable, is told the partition of every command
	// the broker acknowledged, before anything waits on Durable for it:
	// the embedded broker syncs only the partitions reported.
	Written func(r *kgo.Record)
	// AnswersDurable says the engine that delivers the answers delivers
	// them only once what they reflect is durable (it runs in this process
	// over the embedded broker's group sync), so answers are not waited on
	// again; 202 Accepted and balance reads still wait on Durable.
	AnswersDurable bool
	// WritesRefused, if set, says writes must be refused for now (the
	// data directory's disk is full): 503 STORAGE_FULL before anything is
	// appended; reads go on.
	WritesRefused func() bool
	// Stages, if set, observes the ingress's stages of each write
	// (bursar_stage_seconds: decoded, produced, durable, answered).
	Stages *engine.Stages

	// HTTP limits (README, "HTTP limits").

	// MaxHeaderBytes bounds a request's head, request line and header
	// fields (431 HEADERS_TOO_LARGE beyond). It is also each connection's
	// read buffer. Default 8 KiB.
	MaxHeaderBytes int
	// HeaderTimeout bounds the read of a request's head, from its first
	// byte (on a new connection, from the connection's start) to its
	// blank line (408 REQUEST_TIMEOUT). Default 5s.
	HeaderTimeout time.Duration
	// BodyTimeout bounds the read of a request's body, from the end of its
	// head (408 REQUEST_TIMEOUT). Default 10s.
	BodyTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection (closed without an answer). Default 120s.
	IdleTimeout time.Duration
	// MaxConns bounds the open connections (503 UNAVAILABLE beyond).
	// Default 65536.
	MaxConns int
	// MaxConnsPerIP bounds the open connections from one source address
	// (429 TOO_MANY_CONNECTIONS beyond). Default 1024; negative: no bound.
	MaxConnsPerIP int
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 10
	}
	if c.MaxBatchBodyBytes <= 0 {
		c.MaxBatchBodyBytes = 1 << 20
	}
	if c.BatchItemsMax <= 0 {
		c.BatchItemsMax = 1000
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 5 * time.Second
	}
	if c.HistoryLimitMax <= 0 {
		c.HistoryLimitMax = 500
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = 5 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 65536
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 1024
	}
}

// Authenticator checks a bearer token (auth.Verifier).
type Authenticator interface {
	Check(ctx context.Context, token []byte) (*auth.Principal, error)
	// CheckLoaded checks against the keys in memory only (no reload).
	CheckLoaded(token []byte) (*auth.Principal, error)
}

// Engine is the engine as the API uses it.
type Engine interface {
	Account(ctx context.Context, p int32, id uuid.UUID) (ledger.Account, error)
	Ready() bool
	// WaitsForStorage reports whether owned partition p applies nothing
	// until PostgreSQL answers (false for a partition owned elsewhere).
	WaitsForStorage(p int32) bool
}

// Store is storage as the API uses it.
type Store interface {
	Transaction(ctx context.Context, id uuid.UUID) ([]storage.TxRecord, error)
	History(ctx context.Context, account uuid.UUID, beforeSeq int64, limit int) ([]storage.TxRecord, error)
	// AccountOwners is the owner of each stored account of ids (absent:
	// no row).
	AccountOwners(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error)
	Ping(ctx context.Context) error
}

// Server serves the API.
type Server struct {
	cfg      Config
	log      *slog.Logger
	producer *kgo.Client
	replies  *Replies
	engine   Engine
	store    Store
	routing  *engine.Routing
	metrics  fasthttp.RequestHandler
	reqSeq   atomic.Uint64
	boot     string

	admin fasthttp.RequestHandler // /internal/*, on the admin listener
	pprof fasthttp.RequestHandler // /debug/pprof/*, on the admin listener
	ready ReadyCheck

	requests *prometheus.CounterVec
	rejected *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	batchItems *prometheus.CounterVec // batch.go

	conns      *connLimits            // conns.go
	adminConns *connLimits            // conns.go: the admin listener's
	timeouts   *prometheus.CounterVec // conns.go

	authThrottle  *authThrottle  // authlimit.go; nil: no limit
	loginThrottle *loginThrottle // authlimit.go, per username; nil: no limit
	keyThrottle   *loginThrottle // authlimit.go, per API key ID; nil: no limit
	// loginCleanThrottle is the per-username budget of logins from
	// addresses with no recent failure (users.go login).
	loginCleanThrottle *loginThrottle
	owners             *ownerCache // principal.go
}

// New returns a server. metrics serves /metrics (nil: 404).
func New(cfg Config, log *slog.Logger, producer *kgo.Client, replies *Replies, eng Engine, store Store, reg prometheus.Registerer, metrics fasthttp.RequestHandler) (*Server, error) {
	cfg.setDefaults()
	if cfg.Partitions <= 0 {
		return nil, errors.New("ingress: partition count must be positive")
	}
	if cfg.Routing == nil {
		cfg.Routing = engine.NewRouting(engine.NewRoutes(ledger.NewSlotMap(cfg.Partitions)), nil, log)
	}
	s := &Server{
		cfg: cfg, log: log, producer: producer, replies: replies, engine: eng, store: store,
		routing: cfg.Routing, metrics: metrics,
		boot: strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_ingress_rejected_total", Help: "Requests and connections refused by a limit, by reason (inflight, body_size, header_size, malformed, connections, connections_per_ip, storage_full, database).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bursar_http_request_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"route"}),
	}
	s.initBatch(reg)
	s.initConns(reg)
	s.authThrottle = newAuthThrottle(cfg.AuthFailuresPerMinute)
	s.loginThrottle = newLoginThrottle(cfg.LoginFailuresPerMinute)
	s.loginCleanThrottle = newLoginThrottle(3 * cfg.LoginFailuresPerMinute)
	s.keyThrottle = newLoginThrottle(cfg.AuthFailuresPerMinute)
	s.owners = newOwnerCache(ownerCacheMax)
	if reg != nil {
		reg.MustRegister(s.requests, s.rejected, s.latency,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bursar_ingress_inflight", Help: "Writes waiting for their answer."},
				func() float64 { return float64(replies.Len()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_ingress_owner_cache_clears_total", Help: "Times the cache of account owners (customers' checks) filled up at 100000 accounts and was emptied."},
				func() float64 { return float64(s.owners.Cleared.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_ingress_replies_dropped_total", Help: "Answers that arrived after their request gave up."},
				func() float64 { return float64(replies.Dropped.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_ingress_replies_foreign_total", Help: "Answers addressed to another node (or an earlier boot of this one) that reached this node's registry."},
				func() float64 { return float64(replies.Foreign.Load()) }),
		)
	}
	return s, nil
}

// ReadyCheck is the node's part of /readyz, beyond PostgreSQL and Kafka:
// the name and reason of the check that fails, or "" when all pass. pgDown
// says PostgreSQL did not answer: a node whose write-behind still has room
// serves writes without it for a while (degraded, not failing), so the
// check says when it cannot.
type ReadyCheck func(pgDown bool) (check, reason string)

// SetAdmin routes the admin listener's /internal/ to h (the cluster's
// operator endpoints) and /debug/pprof/ to pprof (nil: none), and makes
// /readyz also require ready.
func (s *Server) SetAdmin(h, pprof fasthttp.RequestHandler, ready ReadyCheck) {
	s.admin, s.pprof, s.ready = h, pprof, ready
}

// NewAdminHTTPServer is NewHTTPServer for the admin listener
// (--admin-addr): /healthz, /readyz, /internal/* and /debug/pprof/*
// (admin scope) and, with MetricsOnAdmin, /metrics.
func (s *Server) NewAdminHTTPServer() *fasthttp.Server {
	srv := s.NewHTTPServer()
	srv.Handler = s.serveAdmin
	return srv
}

// adminListenerKey marks a request of the admin listener.
const adminListenerKey = "bursar.admin"

func (s *Server) serveAdmin(ctx *fasthttp.RequestCtx) {
	ctx.SetUserValue(adminListenerKey, true)
	start := time.Now()
	rid := s.requestID(ctx)
	ctx.SetUserValue("rid", rid)
	ctx.Response.Header.Set("X-Request-ID", rid)
	name, err := s.routeAdmin(ctx)
	if err != nil {
		s.fail(ctx, err)
	}
	s.requests.WithLabelValues(name, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	s.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// routeAdmin routes the admin listener; every route but /healthz and
// /readyz needs a credential: the cluster scope (an operator or admin)
// for /internal/*, admin for the profiles, metrics:read for /metrics.
func (s *Server) routeAdmin(ctx *fasthttp.RequestCtx) (string, *apiError) {
	path := string(ctx.Path())
	if orig := ctx.URI().PathOriginal(); string(orig) != path {
		return "unknown", bad(ledger.CodeRouteNotFound, "no route for this path: paths must be in canonical form (no dot or empty segments, no percent-escapes)")
	}
	want := func(m string) *apiError {
		if string(ctx.Method()) == m || (m == "GET" && string(ctx.Method()) == "HEAD") {
			return s.checkBodySize(ctx, path)
		}
		ctx.Response.Header.Set("Allow", m)
		return bad(ledger.CodeMethodNotAllowed, "use "+m+" for "+path)
	}
	if name, err, ok := s.routeManagement(ctx, path, want); ok {
		return name, err
	}
	switch {
	case path == "/healthz" || path == "/readyz":
		return s.route(ctx)
	case path == "/metrics" && s.cfg.MetricsOnAdmin && s.metrics != nil:
		if err := s.authorize(ctx, auth.MetricsRead); err != nil {
			return "metrics", err
		}
		s.metrics(ctx)
		return "metrics", nil
	case strings.HasPrefix(path, "/internal/") && s.admin != nil:
		if err := s.authorize(ctx, auth.Cluster); err != nil {
			return "internal", err
		}
		s.admin(ctx)
		return "internal", nil
	case strings.HasPrefix(path, "/debug/pprof/") && s.pprof != nil:
		if err := s.authorize(ctx, auth.Admin); err != nil {
			return "pprof", err
		}
		s.pprof(ctx)
		return "pprof", nil
	}
	return "unknown", bad(ledger.CodeRouteNotFound, "no admin route for "+string(ctx.Method())+" "+path)
}

// Handler returns the fasthttp handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serve }

// NewHTTPServer wraps the handler with the limits the API needs; serve it
// with Serve, which adds the connection limits.
//
// fasthttp's ReadTimeout is the header timeout: it runs from a new
// connection's start, or from the first byte of a keep-alive connection's
// next request (IdleTimeout runs until then). Once the head is read,
// HeaderReceived sets the body's timeout and its route's body limit, so
// that a Content-Length over the limit is refused before a byte of the
// body is read.
func (s *Server) NewHTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: s.serve,
		Name:    "bursar",
		// The larger limit; HeaderReceived gives each request its route's.
		MaxRequestBodySize: max(s.cfg.MaxBodyBytes, s.cfg.MaxBatchBodyBytes),
		HeaderReceived:     s.headerReceived,
		ExpectHandler:      s.expect,
		ReadTimeout:        s.cfg.HeaderTimeout,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        s.cfg.IdleTimeout,
		// Above MaxConns, which Serve's listener enforces: fasthttp's
		// worker of a closed connection is still busy for a moment after
		// the listener has given its slot back, and fasthttp's own refusal
		// would be plain text and uncounted.
		Concurrency:    2 * s.cfg.MaxConns,
		ReadBufferSize: s.cfg.MaxHeaderBytes,
		NoDefaultDate:  true,
		ErrorHandler:   s.httpError,
		// Every request fasthttp cannot read is answered and counted
		// (httpError); its log line goes to debug, without the request's
		// bytes (they may hold credentials).
		Logger:                httpLogger{s.log},
		SecureErrorLogMessage: true,
	}
}

// httpLogger takes fasthttp's messages: a connection's read or parse
// errors, at debug level.
type httpLogger struct{ log *slog.Logger }

func (l httpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("http connection error", "err", fmt.Sprintf(format, args...))
	}
}

// routeBodyBytesMax is the body limit of the request with header h, from
// the raw path of its request line: only the batch path spelled exactly
// (no "//", "." or %-escapes, no absolute form) gets the batch limit, so a
// request never gets a larger limit than its route has. checkBodySize
// checks again once the router has the normalized path.
func (s *Server) routeBodyBytesMax(h *fasthttp.RequestHeader) int {
	path := h.RequestURI()
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if string(path) == batchPath { // a comparison: no allocation
		return s.cfg.MaxBatchBodyBytes
	}
	return s.cfg.MaxBodyBytes
}

func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{ReadTimeout: s.cfg.BodyTimeout, MaxRequestBodySize: s.routeBodyBytesMax(h)}
}

// expect answers "Expect: 100-continue": a Content-Length over the route's
// limit is refused with a bare 413 before the client sends the body
// (fasthttp allows a status, not a body, from this hook; the connection
// closes).
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > s.routeBodyBytesMax(&ctx.Request.Header) {
		s.rejected.WithLabelValues("body_size").Inc()
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// httpError answers a request fasthttp could not read, with our JSON
// error instead of fasthttp's text. fasthttp closes the connection after.
func (s *Server) httpError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.rejected.WithLabelValues("body_size").Inc()
		s.fail(ctx, bad(ledger.CodePayloadTooLarge, "request body is larger than "+strconv.Itoa(s.routeBodyBytesMax(&ctx.Request.Header))+" bytes"))
	case errors.As(err, &small):
		s.rejected.WithLabelValues("header_size").Inc()
		s.fail(ctx, bad(ledger.CodeHeadersTooLarge, "the request line and header fields are larger than "+strconv.Itoa(s.cfg.MaxHeaderBytes)+" bytes"))
	case isTimeout(err):
		// Counted by the connection (bursar_http_timeouts_total).
		s.fail(ctx, bad(ledger.CodeRequestTimeout, "the request was not received in time: its header within "+
			s.cfg.HeaderTimeout.String()+", its body within "+s.cfg.BodyTimeout.String()))
	case errors.Is(err, errBareLF):
		s.rejected.WithLabelValues("malformed").Inc()
		s.fail(ctx, bad(ledger.CodeMalformedRequest, "cannot parse HTTP request: every line of the request line and header fields must end in CRLF"))
	default:
		s.rejected.WithLabelValues("malformed").Inc()
		s.fail(ctx, bad(ledger.CodeMalformedRequest, "cannot parse HTTP request"))
	}
}

// Keys of the request's user values: when serve started, and the
// timestamp of the command a write submitted (for the answered stage).
const (
	startKey = "bursar.start"
	stampKey = "bursar.stamp"
)

type route struct {
	name    string
	methods string // "GET" or "POST"
	h       func(*fasthttp.RequestCtx, []string) *apiError
}

func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	ctx.SetUserValue(startKey, start)
	rid := s.requestID(ctx)
	ctx.SetUserValue("rid", rid)
	ctx.Response.Header.Set("X-Request-ID", rid)

	name, err := s.route(ctx)
	if err != nil {
		s.fail(ctx, err)
		s.cfg.RateLimiter.countRefusal(ctx, name)
	}
	if us, ok := ctx.UserValue(stampKey).(int64); ok {
		s.cfg.Stages.Since(engine.StageAnswered, us, time.Now())
	}
	s.requests.WithLabelValues(name, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	s.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// route dispatches by path and method and returns the route's name for
// metrics.
func (s *Server) route(ctx *fasthttp.RequestCtx) (string, *apiError) {
	path := string(ctx.Path())
	method := string(ctx.Method())
	// One spelling per route: fasthttp resolves dot segments, empty
	// segments and percent-escapes into Path, so "/api/v1/../../internal/x"
	// or "/api/v1/%2e%2e/internal/x" would reach another route than the
	// one a proxy in front (which passes /api/* only) judged it by. Every
	// route is spelled in plain lower-case ASCII: anything else is no
	// route at all.
	if orig := ctx.URI().PathOriginal(); string(orig) != path {
		return "unknown", bad(ledger.CodeRouteNotFound, "no route for this path: paths must be in canonical form (no dot or empty segments, no percent-escapes)")
	}
	want := func(m string) *apiError {
		if method == m || (m == "GET" && method == "HEAD") {
			return s.checkBodySize(ctx, path)
		}
		ctx.Response.Header.Set("Allow", m)
		return bad(ledger.CodeMethodNotAllowed, "use "+m+" for "+path)
	}
	if name, err, ok := s.routeLogin(ctx, path, want); ok {
		return name, err
	}
	switch path {
	case "/healthz":
		if err := want("GET"); err != nil {
			return "healthz", err
		}
		writeJSON(ctx, 200, map[string]string{"status": "ok"})
		return "healthz", nil
	case "/readyz":
		if err := want("GET"); err != nil {
			return "readyz", err
		}
		return "readyz", s.readyz(ctx)
	case "/metrics":
		if s.metrics == nil || s.cfg.MetricsOnAdmin {
			return "metrics", bad(ledger.CodeRouteNotFound, "metrics are not served on this listener")
		}
		if err := s.authorize(ctx, auth.MetricsRead); err != nil {
			return "metrics", err
		}
		s.metrics(ctx)
		return "metrics", nil
	case "/api/v1/accounts":
		if err := s.authorize(ctx, auth.AccountsWrite); err != nil {
			return "open", err
		}
		if err := want("POST"); err != nil {
			return "open", err
		}
		return "open", s.open(ctx)
	case "/api/v1/transactions/credit":
		if err := s.authorize(ctx, auth.TransactionsWrite); err != nil {
			return "credit", err
		}
		if err := want("POST"); err != nil {
			return "credit", err
		}
		return "credit", s.money(ctx, ledger.KindCredit)
	case "/api/v1/transactions/debit":
		if err := s.authorize(ctx, auth.TransactionsWrite); err != nil {
			return "debit", err
		}
		if err := want("POST"); err != nil {
			return "debit", err
		}
		return "debit", s.money(ctx, ledger.KindDebit)
	case "/api/v1/transactions/transfer":
		if err := s.authorize(ctx, auth.TransactionsWrite); err != nil {
			return "transfer", err
		}
		if err := want("POST"); err != nil {
			return "transfer", err
		}
		return "transfer", s.transfer(ctx)
	case batchPath:
		if err := s.authorize(ctx, auth.TransactionsWrite); err != nil {
			return "batch", err
		}
		if err := want("POST"); err != nil {
			return "batch", err
		}
		return "batch", s.batch(ctx)
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) >= 4 && parts[0] == "api" && parts[1] == "v1" {
		switch {
		case parts[2] == "accounts" && len(parts) == 4:
			if err := s.authorize(ctx, auth.AccountsRead); err != nil {
				return "account", err
			}
			if err := want("GET"); err != nil {
				return "account", err
			}
			return "account", s.account(ctx, parts[3], false)
		case parts[2] == "accounts" && len(parts) == 5 && parts[4] == "balance":
			if err := s.authorize(ctx, auth.AccountsRead); err != nil {
				return "balance", err
			}
			if err := want("GET"); err != nil {
				return "balance", err
			}
			return "balance", s.account(ctx, parts[3], true)
		case parts[2] == "accounts" && len(parts) == 5 && parts[4] == "transactions":
			if err := s.authorize(ctx, auth.TransactionsRead); err != nil {
				return "history", err
			}
			if err := want("GET"); err != nil {
				return "history", err
			}
			return "history", s.history(ctx, parts[3])
		case parts[2] == "transactions" && len(parts) == 4:
			if err := s.authorize(ctx, auth.TransactionsRead); err != nil {
				return "transaction", err
			}
			if err := want("GET"); err != nil {
				return "transaction", err
			}
			return "transaction", s.transaction(ctx, parts[3])
		}
	}
	return "unknown", bad(ledger.CodeRouteNotFound, "no route for "+method+" "+path)
}

// principalKey holds the request's principal once authorize let it in.
const principalKey = "bursar.principal"

// authorize admits the request when auth is off, or when it carries a
// bearer API key with scope; else it is refused (counted): no credential
// or a bad one is 401 UNAUTHENTICATED with a WWW-Authenticate challenge,
// a good one without the scope is 403 FORBIDDEN. It runs before anything
// else of the route (method, body, decoding), so a refused request is
// told nothing about the route beyond that it exists.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, scope auth.Scope) *apiError {
	limited := s.cfg.RateLimiter != nil && ctx.UserValue(adminListenerKey) == nil
	write := scope == auth.AccountsWrite || scope == auth.TransactionsWrite
	if limited {
		// Per address first: it also bounds what unauthenticated floods
		// cost (a credential's check needs the key looked up).
		if err := s.cfg.RateLimiter.check(ctx, write, sourceAddrOf(ctx), ""); err != nil {
			return err
		}
	}
	if s.cfg.Auth == nil {
		return nil
	}
	aerr := s.authorizeCredential(ctx, scope)
	if aerr == nil && limited {
		if p := principalOf(ctx); p != nil {
			return s.cfg.RateLimiter.check(ctx, write, netip.Addr{}, p.String())
		}
	}
	return aerr
}

// authorizeCredential checks the request's credential for scope, with the
// failed-authentication throttles.
func (s *Server) authorizeCredential(ctx *fasthttp.RequestCtx, scope auth.Scope) *apiError {
	addr := sourceAddrOf(ctx)
	// Failures are counted per source address and, for API keys, per key
	// ID too (the principal a bad key claims), from any address. Past
	// either limit, a request waits: it costs nothing, not even a reload
	// for an unknown key. A live key still gets in (an address may be
	// shared: a proxy, a NAT), so guessing a key's secret cannot lock its
	// service out.
	token, _ := bearer(ctx.Request.Header.Peek("Authorization"))
	keyID, isKey := auth.KeyID(token)
	var (
		wait        time.Duration
		reason, why string
	)
	if s.authThrottle != nil && addr.IsValid() {
		wait, reason, why = s.authThrottle.wait(addr), "auth_throttled", "from this address"
	}
	if wait == 0 && isKey && s.keyThrottle != nil {
		wait, reason, why = s.keyThrottle.wait(keyID), "key_throttled", "with this key ID"
	}
	if wait > 0 {
		if p, ok := s.loadedPrincipal(ctx); ok {
			return s.admit(ctx, p, scope)
		}
		s.rejected.WithLabelValues(reason).Inc()
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		return bad(ledger.CodeRateLimited, "too many failed authentications "+why+"; retry after Retry-After seconds")
	}
	aerr := s.checkCredential(ctx, scope)
	if aerr != nil && aerr.code == ledger.CodeUnauthenticated {
		if s.authThrottle != nil && addr.IsValid() && !s.authThrottle.fail(addr) {
			s.rejected.WithLabelValues("auth_throttle_full").Inc()
		}
		if isKey && s.keyThrottle != nil && !s.keyThrottle.fail(keyID) {
			s.rejected.WithLabelValues("key_throttle_full").Inc()
		}
	}
	return aerr
}

// sourceAddrOf is the request's source address (invalid if not TCP).
func sourceAddrOf(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// checkCredential is authorize's check of the request's credential.
func (s *Server) checkCredential(ctx *fasthttp.RequestCtx, scope auth.Scope) *apiError {
	h := ctx.Request.Header.Peek("Authorization")
	if len(h) == 0 {
		s.rejected.WithLabelValues("unauthenticated").Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bursar"`)
		return bad(ledger.CodeUnauthenticated, "this route needs a credential: send the header Authorization: Bearer and an API key (bsk_…) or a user token (POST /api/v1/auth/token)")
	}
	token, ok := bearer(h)
	if !ok {
		s.rejected.WithLabelValues("unauthenticated").Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bursar", error="invalid_request"`)
		return bad(ledger.CodeUnauthenticated, "the Authorization header must be: Bearer and an API key (bsk_…) or a user token")
	}
	p, err := s.cfg.Auth.Check(context.Background(), token)
	if err != nil {
		s.rejected.WithLabelValues("unauthenticated").Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="bursar", error="invalid_token"`)
		return bad(ledger.CodeUnauthenticated, err.Error())
	}
	return s.admit(ctx, p, scope)
}

// admit lets principal p in when it has scope (403 FORBIDDEN otherwise).
func (s *Server) admit(ctx *fasthttp.RequestCtx, p *auth.Principal, scope auth.Scope) *apiError {
	if !p.Allows(scope) {
		s.rejected.WithLabelValues("forbidden").Inc()
		return bad(ledger.CodeForbidden, p.String()+" lacks the scope "+string(scope)+" this route needs")
	}
	ctx.SetUserValue(principalKey, p)
	return nil
}

// loadedPrincipal is the principal of the request's bearer token among the
// keys in memory, if it is a live one.
func (s *Server) loadedPrincipal(ctx *fasthttp.RequestCtx) (*auth.Principal, bool) {
	token, ok := bearer(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		return nil, false
	}
	p, err := s.cfg.Auth.CheckLoaded(token)
	return p, err == nil
}

// bearer returns the token of an "Authorization: Bearer <token>" value
// (the scheme in any case, RFC 9110), with no space inside the token.
func bearer(h []byte) ([]byte, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(string(h[:len(scheme)]), scheme) {
		return nil, false
	}
	token := h[len(scheme):]
	if bytes.ContainsAny(token, " \t") {
		return nil, false
	}
	return token, true
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) *apiError {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "kafka": "ok", "partitions": "ok"}
	ok, degraded := true, false
	// The API's listener is open to anyone: it names what fails, not how
	// (a driver's error names hosts, users and databases); the admin
	// listener's /readyz gives the errors.
	detail := func(err error) string {
		if onAdmin, _ := ctx.UserValue(adminListenerKey).(bool); onAdmin {
			return err.Error()
		}
		return "unreachable"
	}
	pgErr := s.store.Ping(c)
	if pgErr != nil {
		if s.ready != nil {
			// Writes go on while the write-behind has room; the node's
			// check below fails it when that room is gone.
			checks["postgres"], degraded = "degraded: "+detail(pgErr), true
		} else {
			checks["postgres"], ok = detail(pgErr), false
		}
	}
	if err := s.producer.Ping(c); err != nil {
		checks["kafka"], ok = detail(err), false
	}
	if s.engine != nil && !s.engine.Ready() {
		checks["partitions"], ok = "recovering", false
	}
	if s.ready != nil {
		if check, reason := s.ready(pgErr != nil); check != "" {
			checks[check], ok = reason, false
		}
	}
	status := 200
	if !ok {
		status = 503
	}
	if s.cfg.Redis.Configured() {
		// Never failing: without Redis each node works alone.
		checks["redis"] = "ok"
		if !s.cfg.Redis.Up() {
			checks["redis"], degraded = "degraded: unreachable; rate limits per node, no idempotency fast path", true
		}
	}
	// Not a failure, but never quiet: a node that lets every request in.
	checks["auth"] = "api keys"
	if s.cfg.Auth == nil {
		checks["auth"] = "off (--auth=off): every request is let in without a credential"
	}
	writeJSON(ctx, status, map[string]any{"ready": ok, "degraded": degraded && ok, "checks": checks})
	return nil
}

func (s *Server) idemKey(ctx *fasthttp.RequestCtx) (string, *apiError) {
	k := string(ctx.Request.Header.Peek("Idempotency-Key"))
	if k == "" {
		return "", nil
	}
	if err := checkKey(k, "Idempotency-Key"); err != nil {
		return "", err
	}
	return k, nil
}

func (s *Server) checkJSON(ctx *fasthttp.RequestCtx) *apiError {
	ct := string(ctx.Request.Header.ContentType())
	// Compare the media type without its parameters ("; charset=utf-8"),
	// case-insensitively as RFC 9110 says; a prefix test would also let
	// "application/jsonp" through and refuse "Application/JSON".
	mt, _, _ := strings.Cut(ct, ";")
	if ct != "" && !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return bad(ledger.CodeUnsupportedMediaType, "Content-Type must be application/json, got "+strconv.Quote(ct))
	}
	return nil
}

func (s *Server) open(ctx *fasthttp.RequestCtx) *apiError {
	owner := customerOf(ctx)
	c, res, aerr := s.decodeAndSubmit(ctx, 0, func(_ ledger.Kind, body []byte, key string) (ledger.Command, *apiError) {
		return decodeOpenAs(body, key, owner)
	})
	if aerr != nil || res == nil {
		return aerr
	}
	if res.Status != ledger.StatusCompleted {
		return resultError(res)
	}
	exp, _ := ledger.CurrencyExponent(c.Currency)
	markReplay(ctx, res)
	writeJSON(ctx, 201, accountJSON(&ledger.Account{
		ID: c.AccountID, Exists: true, CustomerID: c.CustomerID, Owner: c.Owner, Type: c.AccountType, Currency: c.Currency,
		Status: ledger.AccountActive, OverdraftLimit: c.OverdraftLimit, Version: res.Version,
		CreatedUs: res.TimestampUs, UpdatedUs: res.TimestampUs,
	}, exp))
	return nil
}

func (s *Server) money(ctx *fasthttp.RequestCtx, kind ledger.Kind) *apiError {
	_, res, aerr := s.decodeAndSubmit(ctx, kind, decodeMoney)
	if aerr != nil || res == nil {
		return aerr
	}
	// A replayed refusal is a replay too (the README promises the header
	// for refusals, and transfers had it).
	markReplay(ctx, res)
	if res.Status == ledger.StatusFailed {
		return resultError(res)
	}
	writeJSON(ctx, 201, txJSON(res))
	return nil
}

// decodeAndSubmit runs a write's common steps: the content type, the
// Idempotency-Key header, decoding the body into a command (kind is
// decode's, for the money endpoints), and submitting it. A nil result
// with a nil error means the answer was already written (202).
func (s *Server) decodeAndSubmit(ctx *fasthttp.RequestCtx, kind ledger.Kind,
	decode func(ledger.Kind, []byte, string) (ledger.Command, *apiError)) (ledger.Command, *ledger.Result, *apiError) {
	if err := s.checkJSON(ctx); err != nil {
		return ledger.Command{}, nil, err
	}
	key, aerr := s.idemKey(ctx)
	if aerr != nil {
		return ledger.Command{}, nil, aerr
	}
	c, aerr := decode(kind, ctx.PostBody(), key)
	if aerr != nil {
		return c, nil, aerr
	}
	if aerr := s.restrict(ctx, &c); aerr != nil {
		return c, nil, aerr
	}
	c.CreatedBy = s.createdBy(ctx)
	if res, ok := s.cfg.Idem.lookup(&c); ok {
		return c, res, nil // a retry answered from Redis, as the actor would
	}
	res, aerr := s.submit(ctx, &c)
	if res != nil {
		s.cfg.Idem.store(&c, res)
	}
	return c, res, aerr
}

// createdBy is the principal authorize let in ("" without auth): what
// the command records as created_by. It comes from the credential only,
// never from the body. While an engine node of an older release is in
// the cluster (it reads record version 1 only, and would dead-letter a
// version 2 record: a lost command), it is left out.
func (s *Server) createdBy(ctx *fasthttp.RequestCtx) string {
	p, ok := ctx.UserValue(principalKey).(*auth.Principal)
	if !ok {
		return ""
	}
	if s.cfg.RecordVersion != nil && s.cfg.RecordVersion() < 2 {
		s.rejected.WithLabelValues("created_by_withheld").Inc()
		return ""
	}
	return p.String()
}

func markReplay(ctx *fasthttp.RequestCtx, r *ledger.Result) {
	if r.Replayed {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	}
}

// resultError turns a refused command into the API error, keeping the
// transaction ID of a recorded refusal so the client can look it up.
func resultError(r *ledger.Result) *apiError {
	msg := r.Code.Info().Description
	if !r.Unrecorded {
		msg += " (transaction " + r.TxID.String() + ")"
	}
	return &apiError{code: r.Code, msg: msg}
}

// refuseWrites is the STORAGE_FULL answer while Config.WritesRefused says
// so, counted; nil otherwise.
func (s *Server) refuseWrites() *apiError {
	if s.cfg.WritesRefused == nil || !s.cfg.WritesRefused() {
		return nil
	}
	s.rejected.WithLabelValues("storage_full").Inc()
	return bad(ledger.CodeStorageFull, "the node's disk is full: writes are refused until space returns; retry with the same idempotency key")
}

// refuseWaiting is the DATABASE_UNAVAILABLE answer to c when its
// partition is owned here and applies nothing until PostgreSQL answers
// (Engine.WaitsForStorage), counted; nil otherwise. The command would only
// wait in the log, and its answer with it: refusing it appends nothing,
// and the retry the code asks for is safe under the same key.
func (s *Server) refuseWaiting(c *ledger.Command) *apiError {
	if s.engine == nil || !s.engine.WaitsForStorage(s.routing.Load().PartitionOf(c.AccountID)) {
		return nil
	}
	s.rejected.WithLabelValues("database").Inc()
	return bad(ledger.CodeDatabaseUnavailable, "the account's partition waits for PostgreSQL, which cannot be reached; nothing was appended: retry with the same idempotency key")
}

// submit mints the command's ID and timestamp, appends it to its
// partition and waits for the answer. A nil result with a nil error means
// the answer was already written (202 after the wait timeout).
func (s *Server) submit(ctx *fasthttp.RequestCtx, c *ledger.Command) (*ledger.Result, *apiError) {
	if aerr := s.refuseWrites(); aerr != nil {
		return nil, aerr
	}
	if aerr := s.refuseWaiting(c); aerr != nil {
		return nil, aerr
	}
	seq, ch, ok := s.replies.Register()
	if !ok {
		s.rejected.WithLabelValues("inflight").Inc()
		return nil, bad(ledger.CodeUnavailable, "too many requests in flight; retry shortly")
	}
	now := time.Now()
	if st, ok := ctx.UserValue(startKey).(time.Time); ok {
		s.cfg.Stages.Observe(engine.StageDecoded, now.Sub(st))
	}
	rec := s.newRecord(c, seq, now)
	ctx.SetUserValue(stampKey, c.TimestampUs)
	produced := make(chan error, 1)
	// One deadline for both the append and the answer.
	pctx, cancel := context.WithTimeout(context.Background(), s.cfg.WaitTimeout)
	defer cancel()
	s.producer.Produce(pctx, rec, func(r *kgo.Record, err error) {
		if err == nil {
			if s.cfg.Written != nil {
				s.cfg.Written(r)
			}
			s.cfg.Stages.Since(engine.StageProduced, c.TimestampUs, time.Now())
		}
		produced <- err
	})
	for {
		select {
		case res := <-ch:
			return s.durable(c, &res)
		case err := <-produced:
			if err != nil {
				s.replies.Forget(seq)
				s.log.Warn("produce failed", "request_id", ctx.UserValue("rid"), "err", err)
				return nil, bad(ledger.CodeUnavailable, "the command log is unavailable; retry with the same idempotency key")
			}
			produced = nil
		case <-pctx.Done():
			s.replies.Forget(seq)
			// The deadline may have come together with the answer or the
			// append's outcome, and select picked one at random: prefer
			// what did happen (an appended command must not be answered
			// as possibly lost).
			select {
			case res := <-ch:
				return s.durable(c, &res)
			default:
			}
			if produced != nil {
				select {
				case err := <-produced:
					if err == nil {
						produced = nil
					}
				default:
				}
			}
			if produced != nil {
				// Not even durable yet: the outcome is unknown.
				return nil, bad(ledger.CodeUnavailable, "timed out appending the command; retry with the same idempotency key")
			}
			// Accepted is a promise too: the command must be on disk.
			if _, aerr := s.durable(c, nil); aerr != nil {
				return nil, aerr
			}
			writeJSON(ctx, 202, pendingBody{c})
			return nil, nil
		}
	}
}

// newRecord mints c's transaction ID and timestamp (now), fingerprints the
// request, routes its answer to seq on this node, and returns the record
// for its account's partition.
func (s *Server) newRecord(c *ledger.Command, seq uint64, now time.Time) *kgo.Record {
	// Version 7: time-ordered, so the transactions table's index on
	// (transaction_id, kind) grows at its right edge instead of at random
	// pages (half the PostgreSQL cost of that index per row).
	c.TxID = newTxID()
	c.TimestampUs = now.UnixMicro()
	c.RequestHash = ledger.HashRequest(c)
	c.ReplyNode, c.ReplySeq = s.replies.Node(), seq
	rt := s.routing.Load()
	return &kgo.Record{
		Topic:     kafkalog.TopicCommands,
		Partition: rt.PartitionOf(c.AccountID),
		Key:       c.AccountID[:],
		Value:     c.AppendBinary(make([]byte, 0, 256)),
		Timestamp: now,
		Headers:   []kgo.RecordHeader{kafkalog.SlotMapHeader(rt.Slots.Version)},
	}
}

// durable returns res once the log holds everything it reflects on disk
// (Config.Durable), or the error to answer with. The wait has a deadline of
// its own (WaitTimeout): an answer that came late in the request's wait must
// not be turned into a failure by a healthy disk.
func (s *Server) durable(c *ledger.Command, res *ledger.Result) (*ledger.Result, *apiError) {
	if s.cfg.Durable == nil {
		return res, nil
	}
	if res != nil && s.cfg.AnswersDurable {
		s.cfg.Stages.Since(engine.StageDurable, c.TimestampUs, time.Now())
		return res, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WaitTimeout)
	defer cancel()
	if err := s.cfg.Durable(ctx); err != nil {
		s.log.Warn("waiting for the command log to be durable failed", "err", err)
		return nil, bad(ledger.CodeUnavailable, "the command log could not confirm it is on disk; retry with the same idempotency key")
	}
	s.cfg.Stages.Since(engine.StageDurable, c.TimestampUs, time.Now())
	return res, nil
}

func (s *Server) account(ctx *fasthttp.RequestCtx, idText string, balanceOnly bool) *apiError {
	id, aerr := parseID(idText, "account_id")
	if aerr != nil {
		return aerr
	}
	if balanceOnly {
		consistency, aerr := readConsistency(string(ctx.QueryArgs().Peek("consistency")), string(ctx.Request.Header.Peek("Consistency")))
		if aerr != nil {
			return aerr
		}
		if consistency == consistencyEventual && s.eventualBalance(ctx, id) {
			return nil
		}
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	read := time.Now() // the strong answer holds every write answered before
	acc, err := s.readAccount(c, id)
	switch {
	case errors.Is(err, engine.ErrNotReady):
		return bad(ledger.CodeUnavailable, "the account's partition is recovering; retry shortly")
	case errors.Is(err, engine.ErrNotOwner):
		return bad(ledger.CodeUnavailable, "no node here owns the account's partition; retry shortly")
	case err != nil:
		// An account not in its owner's memory is loaded from PostgreSQL.
		return s.readFailed("accounts", err)
	case !acc.Exists, hides(ctx, acc.Owner):
		// Another owner's account is as unknown as a missing one.
		return bad(ledger.CodeAccountNotFound, "no account "+id.String())
	}
	if s.cfg.Durable != nil {
		// The balance may include commands applied but not yet on disk.
		if err := s.cfg.Durable(c); err != nil {
			s.log.Warn("waiting for the command log to be durable failed", "err", err)
			return bad(ledger.CodeUnavailable, "cannot read the account now; retry shortly")
		}
	}
	exp, _ := ledger.CurrencyExponent(acc.Currency)
	if balanceOnly {
		writeBalance(ctx, id, &acc, exp, consistencyStrong, read.UnixMicro())
		return nil
	}
	writeJSON(ctx, 200, accountJSON(&acc, exp))
	return nil
}

// eventualBalance answers a balance read from Redis when it can and
// reports whether it did. What Redis cannot answer (no entry, down, slow)
// is served as a strong read; so is another owner's account, read from its
// owner as a missing one is: the answer's time tells nothing of whether it
// exists.
func (s *Server) eventualBalance(ctx *fasthttp.RequestCtx, id uuid.UUID) bool {
	if s.cfg.Balances == nil {
		return false
	}
	b, ok := s.cfg.Balances.lookup(id)
	if !ok {
		return false
	}
	visible := !hides(ctx, b.Owner)
	s.cfg.Balances.served(visible)
	if visible {
		acc := b.account()
		exp, _ := ledger.CurrencyExponent(acc.Currency)
		writeBalance(ctx, id, &acc, exp, consistencyEventual, b.AsOfUs)
	}
	return visible
}

// readAccount reads an account from the owner of the partition that holds
// its newest state. While its slot moves, the old partition refuses once
// past the barrier and the new one until the handover lands: a few
// milliseconds, waited out here rather than answered 503.
func (s *Server) readAccount(c context.Context, id uuid.UUID) (ledger.Account, error) {
	deadline := time.Now().Add(time.Second)
	for {
		rt := s.routing.Load()
		acc, err := s.engine.Account(c, rt.PartitionOf(id), id)
		if (!errors.Is(err, engine.ErrNotReady) && !errors.Is(err, engine.ErrNotOwner)) || time.Now().After(deadline) || c.Err() != nil {
			return acc, err
		}
		changed := s.routing.Changed()
		if now := s.routing.Load(); now != rt {
			continue // the routes moved on meanwhile: ask where they say
		} else if now.Mig == nil {
			return acc, err // recovering or unowned, not moving
		}
		s.routing.Kick()
		// The handover lands in this node's routes (its poll, or its own
		// flush's commit); a handover another node commits is polled, so
		// the wait is bounded by the poll's interval too.
		select {
		case <-changed:
		case <-time.After(s.routing.FastInterval):
		case <-c.Done():
		}
	}
}

// readFailed is the answer to a read of PostgreSQL (what: transactions,
// history) that failed: DATABASE_UNAVAILABLE when PostgreSQL does not
// answer a ping either, else UNAVAILABLE (a timeout under load, or an
// error of the query itself, which the log shows).
func (s *Server) readFailed(what string, err error) *apiError {
	s.log.Warn(what+" read failed", "err", err)
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if perr := s.store.Ping(c); perr != nil {
		return bad(ledger.CodeDatabaseUnavailable, "reading "+what+" needs PostgreSQL, which cannot be reached now; retry shortly")
	}
	return bad(ledger.CodeUnavailable, "cannot read "+what+" now; retry shortly")
}

func (s *Server) transaction(ctx *fasthttp.RequestCtx, idText string) *apiError {
	id, aerr := parseID(idText, "transaction_id")
	if aerr != nil {
		return aerr
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := s.store.Transaction(c, id)
	if err != nil {
		return s.readFailed("transactions", err)
	}
	var view *rowView
	if len(recs) > 0 && customerOf(ctx) != "" {
		accounts := make([]uuid.UUID, 0, 2*len(recs))
		for _, r := range recs {
			accounts = append(accounts, r.AccountID)
		}
		owned, aerr := s.ownedAccounts(ctx, accounts)
		if aerr != nil {
			return aerr
		}
		if len(owned) == 0 {
			recs = nil // another owner's: as unknown as a missing one
		}
		view = &rowView{owned: owned, self: principalOf(ctx).String()}
	}
	if len(recs) == 0 {
		return bad(ledger.CodeTransactionNotFound, "no transaction "+id.String()+" (history lags writes by the flush interval)")
	}
	if t := transferView(recs); t != nil {
		writeJSON(ctx, 200, t.json(view))
		return nil
	}
	writeJSON(ctx, 200, recordBody{&recs[0], view})
	return nil
}

func (s *Server) history(ctx *fasthttp.RequestCtx, idText string) *apiError {
	id, aerr := parseID(idText, "account_id")
	if aerr != nil {
		return aerr
	}
	args := ctx.QueryArgs()
	limit := 50
	if v := args.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > s.cfg.HistoryLimitMax {
			return bad(ledger.CodeInvalidField, fmt.Sprintf("limit must be an integer from 1 to %d", s.cfg.HistoryLimitMax))
		}
		limit = n
	}
	var before int64
	if v := args.Peek("cursor"); len(v) > 0 {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 1 {
			return bad(ledger.CodeInvalidField, "cursor must be a value returned as next_cursor")
		}
		before = n
	}
	var view *rowView
	if customerOf(ctx) != "" {
		if aerr := s.checkOwner(ctx, id); aerr != nil {
			return aerr
		}
		view = &rowView{owned: map[uuid.UUID]bool{id: true}, self: principalOf(ctx).String()}
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := s.store.History(c, id, before, limit+1)
	if err != nil {
		return s.readFailed("history", err)
	}
	if len(recs) == 0 && before == 0 && s.engine != nil {
		// No rows: an unknown account is 404, as its balance is; an account
		// opened but not yet flushed has an empty history. The owner knows.
		acc, aerr := s.ownerMemory(c, id)
		switch {
		case aerr != nil:
			return aerr
		case !acc.Exists:
			return bad(ledger.CodeAccountNotFound, "no account "+id.String())
		}
	}
	out := map[string]any{"account_id": id.String()}
	if len(recs) > limit {
		recs = recs[:limit]
		out["next_cursor"] = strconv.FormatInt(recs[limit-1].Seq, 10)
	} else {
		out["next_cursor"] = nil
	}
	items := make([]recordBody, len(recs))
	for i := range recs {
		items[i] = recordBody{&recs[i], view}
	}
	out["transactions"] = items
	writeJSON(ctx, 200, out)
	return nil
}

func timestamp(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

// accountJSON, txJSON and recordJSON return bodies that write themselves
// (jsonbody.go): writeJSON takes them without reflection, and they still
// marshal with encoding/json when nested in a map.
func accountJSON(a *ledger.Account, exp int) accountBody { return accountBody{a, exp} }

func txJSON(r *ledger.Result) txBody { return txBody{r} }

func recordJSON(r *storage.TxRecord) recordBody { return recordBody{r, nil} }

// writeJSON answers with v as JSON: appended by hand when v is one of the
// bodies of jsonbody.go, else through encoding/json (cold paths: health,
// readiness, history pages).
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	if a, ok := v.(jsonAppender); ok {
		w := getJSONWriter()
		a.appendJSON(w)
		sendJSON(ctx, status, w)
		putJSONWriter(w)
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own maps and strings are marshalled
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

// requestID is the client's X-Request-ID when it is a valid key (1–128 of
// [A-Za-z0-9._:-]), else a fresh one. The error handler calls it too: the
// headers are parsed by the time a body is refused as too large.
func (s *Server) requestID(ctx *fasthttp.RequestCtx) string {
	rid := string(ctx.Request.Header.Peek("X-Request-ID"))
	if rid == "" || checkKey(rid, "X-Request-ID") != nil {
		rid = s.mintRequestID()
	}
	return rid
}

// mintRequestID returns a fresh request ID, unique per boot.
func (s *Server) mintRequestID() string {
	return s.boot + "-" + strconv.FormatUint(s.reqSeq.Add(1), 36)
}

func (s *Server) fail(ctx *fasthttp.RequestCtx, e *apiError) {
	info := e.code.Info()
	rid, _ := ctx.UserValue("rid").(string)
	if rid == "" { // fasthttp's error handler runs before serve
		rid = s.requestID(ctx)
		ctx.Response.Header.Set("X-Request-ID", rid)
	}
	if info.HTTPStatus == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	w := getJSONWriter()
	appendError(w, info.Name, e.msg, rid)
	sendJSON(ctx, info.HTTPStatus, w)
	putJSONWriter(w)
}

// newTxID returns a version 7 UUID (RFC 9562: a millisecond timestamp, then
// random bits). NewV7 fails only when the system's random source does,
// where crypto/rand itself panics.
func newTxID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}
