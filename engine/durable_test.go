package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/twmb/franz-go/pkg/kadm"
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

// TestDurableWaitFollowsCausedRecords: the flush asks for durability only
// after the records its commands caused (here their events) are
// acknowledged, so the one sync covers them as well (rule 3). Each credit
// causes two events; whenever a flush asks, every event of the credits
// answered before must already be in bursar.events.
func TestDurableWaitFollowsCausedRecords(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(r.newClient())
	events := func(ctx context.Context) (int64, error) {
		ends, err := adm.ListEndOffsets(ctx, kafkalog.TopicEvents)
		if err != nil {
			return 0, err
		}
		n := int64(0)
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n, ends.Error()
	}
	var want atomic.Int64 // events of the credits answered so far
	var bad atomic.Value
	r.tweak = func(c *engine.Config) {
		c.LogDurable = func(ctx context.Context) error {
			need := want.Load()
			got, err := events(ctx)
			if err == nil && got < need {
				bad.Store(fmt.Sprintf("durability asked with %d events in Kafka, %d caused", got, need))
			}
			return err
		}
	}
	r.start()
	a := accountIn(0, r.slots)
	r.apply(openCmd(a))
	r.waitCommitted(t)
	base, err := events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		r.apply(money(ledger.KindCredit, a, 1, fmt.Sprint("k", i)))
		// The credit's flush has not run yet when its answer comes
		// (answers are sent once applied): it must find both events.
		want.Store(base + int64(2*(i+1)))
		r.waitCommitted(t)
		if v := bad.Load(); v != nil {
			t.Fatal(v)
		}
	}
}
