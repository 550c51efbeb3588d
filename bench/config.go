// Package bench is Bursar's load generator: it opens and funds a set of
// accounts through the REST API, drives a workload against it in a closed
// loop (a fixed number of workers, each waiting for its answer) or an open
// loop (a fixed arrival rate, latency measured from each operation's
// intended send time so that a stalled server cannot hide its stall), and
// reports throughput, HDR latency percentiles, errors by code and
// per-second series.
//
// The package computes; cmd/bursar renders. It talks to the API only over
// HTTP and imports nothing of the node but the pure ledger core (currency
// exponents, amount formatting).
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/bursar/bursar/ledger"
)

// Limits. Everything the tool allocates per worker, per account or per
// second is bounded by one of these.
const (
	// AccountsMax bounds setup: account IDs are held in memory.
	AccountsMax = 10_000_000
	// ConcurrencyMax bounds workers (and connections).
	ConcurrencyMax = 65_536
	// RateMax bounds the open loop's arrival rate, in ops/s.
	RateMax = 10_000_000
	// DurationMax bounds the measured window: the per-second series keeps
	// one small histogram (about 20 KiB) per second, so an hour costs about
	// 72 MiB. Soak longer by running several benches.
	DurationMax = time.Hour
	// BatchSizeMax bounds the batch workload's items per request.
	BatchSizeMax = 1000
	// BatchSizeDefault is the batch workload's default items per request.
	BatchSizeDefault = 100
	// WarmupMax bounds the warmup.
	WarmupMax = 10 * time.Minute
	// runIDLenMax keeps the idempotency keys built from the run ID well
	// under ledger.IdemKeyLenMax.
	runIDLenMax = 40
)

// Config configures a bench run.
type Config struct {
	// APIKey is sent as the bearer token of every request but /readyz
	// (scopes: accounts:read, accounts:write, transactions:write and, for
	// a sweep's stage scrapes, metrics:read). Empty: none is sent.
	APIKey string
	// Target is the base URL of any node with the ingress role (or of a
	// baseline server, which offers the same endpoints). Default
	// http://127.0.0.1:8080.
	Target string
	// Label names the target in reports and charts ("bursar",
	// "baseline"). Default "bursar".
	Label string
	// Partitions is the partition count of the target's bursar.commands
	// topic. The bench hashes its account IDs with the initial slot map
	// (ledger.NewSlotMap, version 0) to know each account's partition,
	// which the same-partition and cross-partition workloads need; it must
	// match the node's --partitions, and slots must not have been moved.
	// Default 64.
	Partitions int
	// Workload names the operation mix; see Workloads. Default
	// credit-debit.
	Workload string
	// Accounts is how many accounts setup opens and funds. Default 1000.
	Accounts int
	// Concurrency is the number of workers. In a closed loop it is the
	// number of requests in flight; in an open loop it caps them (an
	// operation whose send time comes while every worker is busy is sent
	// late, and its latency counts the wait). Default 64.
	Concurrency int
	// Rate, when positive, runs an open loop at this many operations per
	// second over warmup and measurement. Default 0: closed loop.
	Rate float64
	// Warmup runs the workload before measuring, to fill connection pools,
	// caches and resident actors. Zero means no warmup (the CLI default is
	// 2s).
	Warmup time.Duration
	// Duration is the measured window. Default 10s.
	Duration time.Duration
	// Currency of the accounts and operations, ISO 4217. Default USD.
	Currency string
	// Funding is the decimal amount credited to each account at setup
	// ("1000", "1000.00"); "0" skips funding. Default "1000". The hot
	// workload's paying account gets ledger.AmountMax minor units instead,
	// so that it never runs dry.
	Funding string
	// BatchSize is the transfers per request of workload batch, in
	// [1, BatchSizeMax]. Default BatchSizeDefault.
	BatchSize int
	// Consistency of the balance reads: "" or "strong" (the owner's
	// memory), or "eventual" (?consistency=eventual: from Redis where
	// the node has the account's committed balance).
	Consistency string
	// Seed makes each worker's sequence of operations reproducible. Worker
	// w draws from a PCG seeded with (Seed, w). Zero is a valid seed.
	Seed uint64
	// RunID tags every idempotency key and reference_id of the run so that
	// runs against the same database never collide. Letters, digits and
	// . _ : - only, at most 40 bytes. Default: 10 random hex digits.
	RunID string
	// RequestTimeout bounds one request (connect, write, read). Default
	// 30s: longer than the API's own wait before it answers 202.
	RequestTimeout time.Duration
	// ReadyWait is how long to wait for GET /readyz to answer 200 before
	// setup. Default 30s.
	ReadyWait time.Duration
	// Out, when set, is where Run writes the result as JSON (after the
	// audit, so the file includes it).
	Out string
	// Audit, when set, runs after the load and its outcome goes into the
	// result. cmd/bursar wires it to the PostgreSQL money audit; the bench
	// package itself has no database access.
	Audit func(ctx context.Context) (AuditOutcome, error)
	// Log receives progress and diagnostics. Default: discard.
	Log *slog.Logger

	// Set per measurement by a session.
	// keyTag, when set, is added to every operation key so that a
	// session's later measurements never replay an earlier one's keys.
	keyTag string
	// marks, when set, is called at the edges of the measured window.
	marks *windowMarks

	// Filled by validate.
	exponent    int
	fundingUnit int64
	pool        *accountPool
	workload    workload
}

// ConfigError is Run refusing its Config (a usage error) before any
// request is sent.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// AuditOutcome is what Config.Audit found.
type AuditOutcome struct {
	Clean bool `json:"clean"`
	// Error is set when the audit could not check.
	Error string `json:"error,omitempty"`
	// Report is the audit's own report, kept for the JSON result.
	Report any `json:"report,omitempty"`
}

// Check reports what Run would refuse in c (a *ConfigError), before
// anything is set up for it.
func (c Config) Check() error {
	if err := c.setDefaults(); err != nil {
		return &ConfigError{Err: err}
	}
	if err := c.validate(); err != nil {
		return &ConfigError{Err: err}
	}
	return nil
}

func (c *Config) setDefaults() error {
	if c.Target == "" {
		c.Target = "http://127.0.0.1:8080"
	}
	if c.Label == "" {
		c.Label = "bursar"
	}
	if c.Partitions == 0 {
		c.Partitions = 64
	}
	if c.Workload == "" {
		c.Workload = WorkloadCreditDebit
	}
	if c.Accounts == 0 {
		c.Accounts = 1000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Currency == "" {
		c.Currency = "USD"
	}
	if c.BatchSize == 0 {
		c.BatchSize = BatchSizeDefault
	}
	if c.Funding == "" {
		c.Funding = "1000"
	}
	if c.RunID == "" {
		var b [5]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("bench: run ID: %w", err)
		}
		c.RunID = hex.EncodeToString(b[:])
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.ReadyWait == 0 {
		c.ReadyWait = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) validate() error {
	u, err := url.Parse(c.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("bench: target %q must be a base URL like http://127.0.0.1:8080", c.Target)
	}
	c.Target = strings.TrimRight(c.Target, "/")
	switch {
	case c.Consistency != "" && c.Consistency != "strong" && c.Consistency != "eventual":
		return fmt.Errorf("bench: consistency must be strong or eventual, got %q", c.Consistency)
	case c.Accounts < 1 || c.Accounts > AccountsMax:
		return fmt.Errorf("bench: accounts must be in [1, %d], got %d", AccountsMax, c.Accounts)
	case c.Partitions < 1 || c.Partitions > PartitionsMax:
		return fmt.Errorf("bench: partitions must be in [1, %d], got %d", PartitionsMax, c.Partitions)
	case c.Concurrency < 1 || c.Concurrency > ConcurrencyMax:
		return fmt.Errorf("bench: concurrency must be in [1, %d], got %d", ConcurrencyMax, c.Concurrency)
	case c.Rate < 0 || c.Rate > RateMax || c.Rate != c.Rate: // c.Rate != c.Rate: NaN
		return fmt.Errorf("bench: rate must be in [0, %d] ops/s, got %v", RateMax, c.Rate)
	case c.Warmup < 0 || c.Warmup > WarmupMax:
		return fmt.Errorf("bench: warmup must be in [0, %s], got %s", WarmupMax, c.Warmup)
	case c.Duration < time.Second || c.Duration > DurationMax:
		return fmt.Errorf("bench: duration must be in [1s, %s], got %s", DurationMax, c.Duration)
	case c.RequestTimeout < time.Millisecond:
		return fmt.Errorf("bench: request timeout must be at least 1ms, got %s", c.RequestTimeout)
	case c.BatchSize < 1 || c.BatchSize > BatchSizeMax:
		return fmt.Errorf("bench: batch size must be in [1, %d], got %d", BatchSizeMax, c.BatchSize)
	case c.ReadyWait < 0:
		return fmt.Errorf("bench: ready wait must not be negative, got %s", c.ReadyWait)
	}
	if err := checkRunID(c.RunID); err != nil {
		return err
	}
	if err := checkLabel(c.Label); err != nil {
		return err
	}
	exp, ok := ledger.CurrencyExponent(c.Currency)
	if !ok {
		return fmt.Errorf("bench: currency %q is not a supported ISO 4217 code", c.Currency)
	}
	c.exponent = exp
	funding, err := parseFunding(c.Funding, exp)
	if err != nil {
		return err
	}
	c.fundingUnit = funding
	pool := newAccountPool(c.RunID, c.Accounts, int32(c.Partitions))
	wl, err := newWorkload(c.Workload, pool, exp, c.BatchSize)
	if err != nil {
		return err
	}
	if err := pool.checkPairs(c.Workload, int32(c.Partitions)); err != nil {
		return err
	}
	c.pool, c.workload = pool, wl
	return nil
}

// parseFunding parses the per-account funding; "0" (in any spelling) means
// no funding.
func parseFunding(text string, exp int) (int64, error) {
	// ParseAmount checks the syntax first: only a well-formed zero is zero.
	v, err := ledger.ParseAmount([]byte(text), exp)
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, ledger.ErrAmountNotPos) && strings.Trim(text, "0.") == "":
		return 0, nil
	}
	return 0, fmt.Errorf("bench: funding %q: %w", text, err)
}

// checkLabel keeps labels safe as file-name parts of charts.
func checkLabel(s string) error {
	if s == "" || len(s) > 32 {
		return fmt.Errorf("bench: label must be 1 to 32 bytes, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errors.New("bench: label may contain only letters, digits and . _ -")
		}
	}
	return nil
}

func checkRunID(s string) error {
	if s == "" || len(s) > runIDLenMax {
		return fmt.Errorf("bench: run ID must be 1 to %d bytes, got %d", runIDLenMax, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return errors.New("bench: run ID may contain only letters, digits and . _ : -")
		}
	}
	return nil
}
