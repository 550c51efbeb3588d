package kafkalog

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncLog is a sync function that numbers its calls and records which
// ones have finished.
type syncLog struct {
	started, finished atomic.Int64
	delay             time.Duration
	fail              atomic.Bool
}

func (l *syncLog) sync(*os.File) error {
	n := l.started.Add(1)
	time.Sleep(l.delay)
	for {
		f := l.finished.Load()
		if f >= n || l.finished.CompareAndSwap(f, n) {
			break
		}
	}
	if l.fail.Load() {
		return errors.New("EIO")
	}
	return nil
}

func newTestGroupSync(t *testing.T, l *syncLog) *groupSync {
	t.Helper()
	g, err := newGroupSync(t.TempDir(), l.sync, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGroupSyncWaitsForALaterSync: a wait returns only after a sync that
// started after it was called has finished, even when it arrives while
// another sync runs (that one may have missed its writes).
func TestGroupSyncWaitsForALaterSync(t *testing.T) {
	l := &syncLog{delay: 2 * time.Millisecond}
	g := newTestGroupSync(t, l)
	defer g.close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%7) * 300 * time.Microsecond)
			before := l.started.Load()
			if err := g.wait(context.Background()); err != nil {
				t.Error(err)
				return
			}
			if got := l.finished.Load(); got <= before {
				t.Errorf("wait returned with syncs up to %d finished; %d had started before it was called", got, before)
			}
		}()
	}
	wg.Wait()
	// Waiters that arrive during a sync share the next one.
	if n := l.started.Load(); n >= 50 {
		t.Errorf("%d syncs for 50 waits: no grouping", n)
	}
}

// TestGroupSyncFailureIsSticky: once a sync fails, written pages may be
// lost, so every later wait fails too, even if a later sync succeeds.
func TestGroupSyncFailureIsSticky(t *testing.T) {
	l := &syncLog{}
	g := newTestGroupSync(t, l)
	defer g.close()
	if err := g.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.fail.Store(true)
	if err := g.wait(context.Background()); err == nil {
		t.Fatal("a failed sync reported success")
	}
	l.fail.Store(false)
	if err := g.wait(context.Background()); err == nil {
		t.Fatal("a wait after a failed sync succeeded")
	}
}

// TestGroupSyncCancelAndClose: a cancelled wait returns its context's
// error; closing runs a last sync for the waits in progress, and later
// waits get ErrBrokerClosed.
func TestGroupSyncCancelAndClose(t *testing.T) {
	l := &syncLog{delay: 50 * time.Millisecond}
	g := newTestGroupSync(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := g.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.wait(context.Background()) }()
	time.Sleep(5 * time.Millisecond)
	g.close()
	if err := <-done; err != nil {
		t.Fatalf("wait in progress at close = %v", err)
	}
	if err := g.wait(context.Background()); !errors.Is(err, ErrBrokerClosed) {
		t.Fatalf("wait after close = %v", err)
	}
}
