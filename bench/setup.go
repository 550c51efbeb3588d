package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Setup retries. Every setup request carries an Idempotency-Key, so a
// retry after an unknown outcome cannot open or fund twice.
const (
	setupAttemptsMax = 10
	setupBackoffMin  = 50 * time.Millisecond
	setupBackoffMax  = 2 * time.Second
)

// setupRetriable reports whether a setup failure may succeed when retried
// with the same key: the node was busy, down or slow, never a refusal.
func setupRetriable(code string) bool {
	switch code {
	case codeTransport, "UNAVAILABLE", "RATE_LIMITED", "INTERNAL":
		return true
	case "HTTP_202": // accepted but not answered in time: the retry replays it
		return true
	}
	return strings.HasPrefix(code, "HTTP_5")
}

// waitReady polls GET /readyz until it answers 200 or wait passes.
func waitReady(ctx context.Context, cl *fasthttp.Client, base string, wait time.Duration) error {
	x := newExchange(cl, base, "") // /readyz needs no credential
	defer x.release()
	x.url = append(append(x.url[:0], base...), pathReadyz...)
	deadline := time.Now().Add(wait)
	for {
		code, err := x.do(nil, 200)
		if code == "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("bench: %s is not ready after %s: %w", base, wait, err)
			}
			return fmt.Errorf("bench: %s is not ready after %s: %s %s", base, wait, code, strings.TrimSpace(string(x.resp.Body())))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// setupStats describes setup.
type setupStats struct {
	elapsed time.Duration
	retries int64
}

// setup opens the cfg.Accounts accounts of cfg.pool and funds each, with
// min(Concurrency, Accounts) workers, and returns their IDs in index order.
func setup(ctx context.Context, cfg *Config, cl *fasthttp.Client) ([]string, setupStats, error) {
	start := time.Now()
	ids := cfg.pool.ids
	var next, done, retries atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	stopProgress := make(chan struct{})
	go func() {
		for {
			select {
			case <-progress.C:
				cfg.Log.Info("setup", "accounts_ready", done.Load(), "accounts", cfg.Accounts)
			case <-stopProgress:
				return
			}
		}
	}()
	defer close(stopProgress)

	var wg sync.WaitGroup
	for w := range min(cfg.Concurrency, cfg.Accounts) {
		wg.Go(func() {
			x := newExchange(cl, cfg.Target, cfg.APIKey)
			defer x.release()
			key := make([]byte, 0, 64)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Accounts {
					return
				}
				if err := setupAccount(ctx, cfg, x, i, &key, &retries); err != nil {
					cancel(fmt.Errorf("bench: setup of account %d (worker %d): %w", i, w, err))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, setupStats{}, err
	}
	return ids, setupStats{elapsed: time.Since(start), retries: retries.Load()}, nil
}

// setupAccount opens account i under its chosen ID and funds it. The keys
// derive from the run ID and i, so a retry names the same account and the
// same credit.
func setupAccount(ctx context.Context, cfg *Config, x *exchange, i int, key *[]byte, retries *atomic.Int64) error {
	id := cfg.pool.ids[i]
	k := append((*key)[:0], "bench-"...)
	k = append(k, cfg.RunID...)
	k = append(k, "-open-"...)
	k = strconv.AppendInt(k, int64(i), 10)
	x.url = append(append(x.url[:0], cfg.Target...), pathOpen...)
	x.body = appendOpenBody(x.body[:0], uuid.MustParse(id), k, cfg.Currency)
	if err := retry(ctx, x, k, 201, retries); err != nil {
		return fmt.Errorf("open: %w", err)
	}
	var acc struct {
		AccountID string `json:"account_id"`
	}
	if err := json.Unmarshal(x.resp.Body(), &acc); err != nil {
		return fmt.Errorf("open: cannot decode the answer: %w", err)
	}
	// The workloads pair accounts by the partitions of the IDs they chose:
	// a target that ignored account_id would silently break that.
	if acc.AccountID != id {
		return fmt.Errorf("open: asked for account_id %s, the answer has %q", id, acc.AccountID)
	}
	if amount := cfg.workload.funding(i, cfg.fundingUnit); amount > 0 {
		k = append(k[:0], "bench-"...)
		k = append(k, cfg.RunID...)
		k = append(k, "-fund-"...)
		k = strconv.AppendInt(k, int64(i), 10)
		x.url = append(append(x.url[:0], cfg.Target...), pathCredit...)
		x.body = appendMoneyBody(x.body[:0], id, amount, cfg.exponent, cfg.Currency, k)
		if err := retry(ctx, x, k, 201, retries); err != nil {
			return fmt.Errorf("fund: %w", err)
		}
	}
	*key = k
	return nil
}

// retry sends x's request until it gets want, a non-retriable answer, or
// setupAttemptsMax attempts.
func retry(ctx context.Context, x *exchange, key []byte, want int, retries *atomic.Int64) error {
	backoff := setupBackoffMin
	for attempt := 1; ; attempt++ {
		code, err := x.do(key, want)
		if code == "" {
			return nil
		}
		detail := strings.TrimSpace(string(x.resp.Body()))
		if err != nil {
			detail = err.Error()
		}
		if !setupRetriable(code) {
			return fmt.Errorf("%s: %s", code, detail)
		}
		if attempt == setupAttemptsMax {
			return fmt.Errorf("%s after %d attempts: %s", code, attempt, detail)
		}
		retries.Add(1)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), fmt.Errorf("%s: %s", code, detail))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, setupBackoffMax)
	}
}
