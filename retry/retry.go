// Package retry is Bursar's one retry loop: a capped exponential backoff
// with jitter until the operation succeeds, the caller's classifier calls
// its error fatal, or the context ends. Loops that wait out an outage
// (PostgreSQL down: commands wait in Kafka, rule 8) retry without a count
// and are bounded by their context; every wait is bounded by Max.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how Do waits and what it gives up on.
type Policy struct {
	// Min is the first wait, Max the longest. Defaults 10 ms and 2 s.
	Min, Max time.Duration
	// Fatal, if set, says an error will not go away by retrying: Do
	// returns it at once. Nil retries every error.
	Fatal func(error) bool
	// OnRetry, if set, is told each error that will be retried and the
	// wait before the next attempt (to log and count it).
	OnRetry func(err error, wait time.Duration)
}

// Do runs op until it returns nil, a fatal error, or ctx ends; it returns
// op's last error (nil on success).
func Do(ctx context.Context, p Policy, op func(context.Context) error) error {
	if p.Min <= 0 {
		p.Min = 10 * time.Millisecond
	}
	if p.Max < p.Min {
		p.Max = max(p.Min, 2*time.Second)
	}
	wait := p.Min
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || (p.Fatal != nil && p.Fatal(err)) {
			return err
		}
		// Up to a quarter less, so that loops that failed together do not
		// retry in step.
		d := wait - time.Duration(rand.Int64N(int64(wait)/4+1))
		if p.OnRetry != nil {
			p.OnRetry(err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, p.Max)
	}
}
