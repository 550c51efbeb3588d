package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFlushWaitsForDurableLog: with Config.LogDurable (the embedded
// broker's group sync), no offset is committed to PostgreSQL and no answer
// is delivered until it returns, and its failure stops the engine instead
// of committing.
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
	seq := r.produce(openCmd(a))
	time.Sleep(200 * time.Millisecond) // many flush intervals
	if calls.Load() == 0 {
		t.Fatal("nothing asked for durability")
	}
	if got := committed(); got != before {
		t.Fatalf("offsets committed (%d → %d) before the log was durable", before, got)
	}
	if r.sink.has(seq) {
		t.Fatal("answered before the log was durable")
	}
	close(gate)
	if res := r.sink.wait(t, seq); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	r.waitCommitted(t)

	fail.Store(true)
	seq = r.produce(money(ledger.KindCredit, a, 5, "k"))
	select {
	case err := <-r.eng.Fatal():
		if err == nil {
			t.Fatal("nil fatal error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed durability wait did not stop the engine")
	}
	if r.sink.has(seq) {
		t.Fatal("answered although the log could not be made durable")
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
	// The most events any durability wait found in Kafka. The engine also
	// waits before producing caused records (with fewer in Kafka then), so
	// the property is that some wait before each commit saw them all.
	var seen atomic.Int64
	r.tweak = func(c *engine.Config) {
		c.LogDurable = func(ctx context.Context) error {
			got, err := events(ctx)
			for {
				s := seen.Load()
				if got <= s || seen.CompareAndSwap(s, got) {
					break
				}
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
		// (answers are sent once applied): before it commits, a wait must
		// find both events.
		r.waitCommitted(t)
		if need, got := base+int64(2*(i+1)), seen.Load(); got < need {
			t.Fatalf("committed with a durability wait seeing at most %d events in Kafka, %d caused", got, need)
		}
	}
}

// TestCausedRecordsWaitForTheirCause: with Config.LogDurable, a record a
// command causes (a transfer's credit leg, the command's events) reaches
// the log only after the command is durable. Page write-back keeps no
// order across files: a credit leg on disk without its debit would create
// money on replay after a machine crash. The broker watches every produce
// request; while the durability wait is held, none may carry a caused
// record.
func TestCausedRecordsWaitForTheirCause(t *testing.T) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	r := newRigOn(t, broker.ListenAddrs(), parts, nil)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := accountIn(0, r.slots), accountIn(1, r.slots)
	pb := r.slots.PartitionOfAccount(b)

	var mu sync.Mutex
	gate := make(chan struct{})
	close(gate) // open while the accounts are set up
	var held atomic.Bool
	var early, caused atomic.Int64
	r.tweak = func(c *engine.Config) {
		c.LogDurable = func(ctx context.Context) error {
			mu.Lock()
			g := gate
			mu.Unlock()
			select {
			case <-g:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	r.start()
	// Runs before the engine's stop (cleanups run last first): a failing
	// test must not leave the final flush waiting on a held gate.
	t.Cleanup(func() {
		mu.Lock()
		select {
		case <-gate:
		default:
			close(gate)
		}
		mu.Unlock()
	})
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	if res := r.apply(openCmd(b)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	if res := r.apply(money(ledger.KindCredit, a, 100, "fund")); res.Status != ledger.StatusCompleted {
		t.Fatalf("credit = %+v", res)
	}
	r.waitCommitted(t)

	// The topics' IDs, for produce requests that name topics by ID.
	details, err := kadm.NewClient(r.newClient()).ListTopics(context.Background(), kafkalog.TopicCommands, kafkalog.TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	cmdID, evID := details[kafkalog.TopicCommands].ID, details[kafkalog.TopicEvents].ID
	broker.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		broker.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			isEvents := tp.Topic == kafkalog.TopicEvents || (tp.Topic == "" && tp.TopicID == evID)
			isCommands := tp.Topic == kafkalog.TopicCommands || (tp.Topic == "" && tp.TopicID == cmdID)
			for _, p := range tp.Partitions {
				if isEvents || (isCommands && p.Partition == pb) {
					caused.Add(1)
					if held.Load() {
						early.Add(1)
					}
				}
			}
		}
		return nil, nil, false
	})

	mu.Lock()
	gate = make(chan struct{})
	held.Store(true)
	mu.Unlock()
	applied := func() int64 {
		for _, st := range r.eng.Stats() {
			if st.Partition == r.slots.PartitionOfAccount(a) {
				return st.Applied
			}
		}
		t.Fatal("partition not owned")
		return 0
	}
	before := applied()
	seq := r.produce(&ledger.Command{Kind: ledger.KindTransferDebit, AccountID: a, Counterparty: b, Amount: 40, Currency: "USD", IdemKey: "t1"})
	deadline := time.Now().Add(10 * time.Second)
	for applied() == before {
		if time.Now().After(deadline) {
			t.Fatal("the debit was never applied")
		}
		time.Sleep(time.Millisecond)
	}
	// Applied, not durable: its leg and events must not be produced. An
	// engine that produced them right after applying has done so by now.
	time.Sleep(300 * time.Millisecond)
	if n := early.Load(); n > 0 {
		t.Fatalf("%d caused records produced before their cause was durable", n)
	}
	mu.Lock()
	held.Store(false)
	close(gate)
	mu.Unlock()
	if res := r.sink.wait(t, seq); res.Status != ledger.StatusCompleted || res.Kind != ledger.KindTransferCredit {
		t.Fatalf("transfer = %+v", res)
	}
	if early.Load() > 0 || caused.Load() == 0 {
		t.Fatalf("caused records: %d produced early, %d in all", early.Load(), caused.Load())
	}
}

// TestAnswersWaitForDurability: with Config.LogDurable, the engine answers
// a command only once it is on disk (the ingress then need not wait
// again): while the durability wait is held, an applied credit is not
// answered.
func TestAnswersWaitForDurability(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	gate := make(chan struct{})
	close(gate)
	r.tweak = func(c *engine.Config) {
		c.LogDurable = func(ctx context.Context) error {
			mu.Lock()
			g := gate
			mu.Unlock()
			select {
			case <-g:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	r.start()
	t.Cleanup(func() {
		mu.Lock()
		select {
		case <-gate:
		default:
			close(gate)
		}
		mu.Unlock()
	})
	a := accountIn(0, r.slots)
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	mu.Lock()
	gate = make(chan struct{})
	mu.Unlock()
	before := r.eng.Stats()[0].Applied
	seq := r.produce(money(ledger.KindCredit, a, 5, "held"))
	deadline := time.Now().Add(10 * time.Second)
	for r.eng.Stats()[0].Applied == before {
		if time.Now().After(deadline) {
			t.Fatal("the credit was never applied")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if r.sink.has(seq) {
		t.Fatal("answered before the command was durable")
	}
	mu.Lock()
	close(gate)
	mu.Unlock()
	if res := r.sink.wait(t, seq); res.Status != ledger.StatusCompleted {
		t.Fatalf("credit = %+v", res)
	}
}
