package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errTransient, errPermanent = errors.New("transient"), errors.New("permanent")

func TestDo(t *testing.T) {
	for _, tc := range []struct {
		name     string
		errs     []error // op's answers in turn; nil after the last
		want     error
		attempts int
	}{
		{"succeeds at once", nil, nil, 1},
		{"succeeds after transient errors", []error{errTransient, errTransient}, nil, 3},
		{"gives up on a fatal error", []error{errTransient, errPermanent, errTransient}, errPermanent, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts, retries := 0, 0
			var waits []time.Duration
			err := Do(context.Background(), Policy{
				Min: time.Millisecond, Max: 2 * time.Millisecond,
				Fatal:   func(err error) bool { return errors.Is(err, errPermanent) },
				OnRetry: func(_ error, d time.Duration) { retries++; waits = append(waits, d) },
			}, func(context.Context) error {
				attempts++
				if attempts <= len(tc.errs) {
					return tc.errs[attempts-1]
				}
				return nil
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) || attempts != tc.attempts {
				t.Fatalf("Do = %v after %d attempts; want %v after %d", err, attempts, tc.want, tc.attempts)
			}
			for _, d := range waits {
				if d <= 0 || d > 2*time.Millisecond {
					t.Fatalf("wait %v outside (0, Max]", d)
				}
			}
			if retries != attempts-1 && tc.want == nil {
				t.Fatalf("%d retries reported for %d attempts", retries, attempts)
			}
		})
	}
}

// TestDoEndsWithItsContext: an error that never goes away is retried until
// the context ends, then returned.
func TestDoEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := Do(ctx, Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}, func(context.Context) error { return errTransient })
	if !errors.Is(err, errTransient) || ctx.Err() == nil {
		t.Fatalf("Do = %v with context %v", err, ctx.Err())
	}
}
