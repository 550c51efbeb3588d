package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/engine/ledger"
)

// TestFlushWaitsForDurableLog: with Config.LogDurable (the embedded
// broker's group sync), no offset is committed to PostgreSQL until it
// returns, answers still come once applied, and its failure stops the
// engine instead of committing.
func TestFlushWaitsForDurableLog(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var calls atomic.Int64
	var fail atomic.Bool
	r.tweak = func(c *engine.Config) {
		c.LogDurable = func(ctx context.Context) error {
			calls.Add(1)
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			if fail.Load() {
				return errors.New("syncfs: input/output error")
			}
			return nil
		}
	}
	r.start()
	committed := func() int64 {
		rows, err := r.store.Partitions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, row := range rows {
			n += row.NextOffset
		}
		return n
	}
	before := committed()
	a := accountIn(1, r.slots)
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	time.Sleep(200 * time.Millisecond) // many flush intervals
	if calls.Load() == 0 {
		t.Fatal("no flush asked for durability")
	}
	if got := committed(); got != before {
		t.Fatalf("offsets committed (%d → %d) before the log was durable", before, got)
	}
	close(gate)
	r.waitCommitted(t)

	fail.Store(true)
	r.apply(money(ledger.KindCredit, a, 5, "k"))
	select {
	case err := <-r.eng.Fatal():
		if err == nil {
			t.Fatal("nil fatal error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed durability wait did not stop the engine")
	}
}
