// Package baseline is what a team would build instead of Bursar: the same
// REST endpoints the bench workloads use (open account, credit, debit,
// transfer, balance) written the straightforward way, each operation one
// PostgreSQL transaction:
//
//	BEGIN
//	SELECT … FROM baseline_accounts WHERE account_id IN (…) ORDER BY account_id FOR UPDATE
//	-- check existence, currency, funds in Go
//	INSERT INTO baseline_transactions …   -- unique idem_key: a retry finds the original
//	UPDATE baseline_accounts …
//	COMMIT                                -- synchronous_commit = on
//
// It exists so that `bursar bench --compare baseline` measures Bursar
// against a fair opponent on the same machine, and it is tuned the way a
// competent engineer would tune it, not handicapped: a pgx pool sized to
// the cores and kept warm, prepared statements (pgx's statement cache),
// and each transaction sent in two pipelined round trips (BEGIN with the
// locking SELECT; INSERT, UPDATE and COMMIT together) so that row locks
// are held for one round trip and the commit's WAL flush. What it does not
// do is give up durability or correctness: every answer follows a
// committed, flushed transaction, and money is checked under row locks.
//
// Its tables are prefixed baseline_ and created at start, so it can share
// a database with Bursar. The JSON shapes and error codes are Bursar's
// (from the ledger's code table) for everything the workloads use, so the
// same bench client drives both.
package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valyala/fasthttp"
)

// Limits.
const (
	// MaxConnsMax bounds the pool; PostgreSQL's own max_connections (100
	// by default) is usually lower.
	MaxConnsMax = 1024
	// bodyBytesMax bounds request bodies, as Bursar's API does (16 KiB).
	bodyBytesMax = 16 << 10
)

// Config configures a baseline server.
type Config struct {
	// DatabaseURL is the PostgreSQL the baseline keeps its tables in.
	// Required.
	DatabaseURL string
	// MaxConns is the pgx pool size: every request in flight holds one
	// connection for its whole transaction, so this is also the number of
	// transactions in flight. Default 4 × GOMAXPROCS: most of a
	// transaction's time is spent waiting for the commit's WAL flush, so a
	// few connections per core keep the CPU busy and let PostgreSQL group
	// commits, while many more only queue on row locks and CPU.
	MaxConns int32
	// RequestTimeout bounds one request, including the wait for a pool
	// connection; past it the answer is 503 UNAVAILABLE. Default 30s.
	RequestTimeout time.Duration
	// Log receives diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxConns == 0 {
		c.MaxConns = int32(4 * runtime.GOMAXPROCS(0))
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("baseline: a database URL is required")
	case c.MaxConns < 1 || c.MaxConns > MaxConnsMax:
		return fmt.Errorf("baseline: max conns must be in [1, %d], got %d", MaxConnsMax, c.MaxConns)
	case c.RequestTimeout < time.Millisecond:
		return fmt.Errorf("baseline: request timeout must be at least 1ms, got %s", c.RequestTimeout)
	}
	return nil
}

// Server is a baseline server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pool   *pgxpool.Pool
	reqSeq atomic.Uint64
	boot   string
}

// New connects to PostgreSQL, creates the baseline tables if they are
// missing and returns a server. Close releases the pool.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("baseline: database URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	// Open every connection up front and keep it: a benchmark should not
	// measure connection setup.
	pc.MinConns = cfg.MaxConns
	pc.MaxConnIdleTime = time.Hour
	// Durability as a bank needs it, whatever the server's default: a
	// commit is answered only once its WAL is flushed.
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pc.ConnConfig.RuntimeParams["application_name"] = "bursar-baseline"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("baseline: connect: %w", err)
	}
	if err := createSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Server{
		cfg: cfg, log: cfg.Log, pool: pool,
		boot: fmt.Sprintf("bl%x", time.Now().UnixNano()%(1<<32)),
	}, nil
}

// Close releases the pool.
func (s *Server) Close() { s.pool.Close() }

// Handler returns the HTTP handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serve }

// NewHTTPServer wraps the handler with the same HTTP limits as Bursar's
// API (fasthttp, the same stack, so that the HTTP layer is no difference
// between the two).
func (s *Server) NewHTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.serve,
		Name:               "bursar-baseline",
		MaxRequestBodySize: bodyBytesMax,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        120 * time.Second,
		Concurrency:        256 * 1024,
		ReadBufferSize:     8 << 10,
		NoDefaultDate:      true,
	}
}

// Running is a baseline server listening on an address.
type Running struct {
	*Server
	// URL is the base URL of the API, e.g. http://127.0.0.1:41234.
	URL  string
	http *fasthttp.Server
	done chan error
}

// Start creates a server and serves it on addr ("127.0.0.1:0" picks a
// free port). Stop it with Shutdown.
func Start(ctx context.Context, cfg Config, addr string) (*Running, error) {
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("baseline: listen: %w", err)
	}
	r := &Running{Server: s, URL: "http://" + ln.Addr().String(), http: s.NewHTTPServer(), done: make(chan error, 1)}
	go func() { r.done <- r.http.Serve(ln) }()
	s.log.Info("baseline serving", "url", r.URL, "max_conns", s.cfg.MaxConns)
	return r, nil
}

// Done delivers the serve loop's error if it stops on its own (the
// listener failed).
func (r *Running) Done() <-chan error { return r.done }

// Shutdown stops accepting requests, waits for those in flight (up to
// ctx) and closes the pool.
func (r *Running) Shutdown(ctx context.Context) error {
	err := r.http.ShutdownWithContext(ctx)
	r.Close()
	return err
}
