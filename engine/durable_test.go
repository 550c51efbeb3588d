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
	t.Cleanup(func() { broker.Close() })
	r := newRigOn(t, broker.ListenAddrs(), parts, nil)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := accountIn(0, r.slots), accountIn(1, r.slots)
	pb := r.slots.PartitionOfAccount(b)

	gate := newDurabilityGate()
	var early, caused atomic.Int64
	r.tweak = func(c *engine.Config) { c.LogDurable = gate.wait }
	r.start()
	gate.releaseAtCleanup(t)
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
					if gate.held() {
						early.Add(1)
					}
				}
			}
		}
		return nil, nil, false
	})

	gate.hold()
	seq := r.produce(&ledger.Command{Kind: ledger.KindTransferDebit, AccountID: a, Counterparty: b, Amount: 40, Currency: "USD", IdemKey: "t1"})
	// The first wait after the debit is the emitter's, before it produces
	// the leg and the events. An engine that produced them at once would
	// first wait in the flush, which waits for their acknowledgements: by
	// then the broker has seen them.
	gate.awaitEntered(t)
	if n := early.Load(); n > 0 {
		t.Fatalf("%d caused records produced before their cause was durable", n)
	}
	gate.release()
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
	gate := newDurabilityGate()
	r.tweak = func(c *engine.Config) { c.LogDurable = gate.wait }
	r.start()
	gate.releaseAtCleanup(t)
	a := accountIn(0, r.slots)
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	r.waitCommitted(t)
	gate.hold()
	seq := r.produce(money(ledger.KindCredit, a, 5, "held"))
	// The emitter waits for the credit's durability before it answers; an
	// engine that answered on apply would have answered before that wait.
	gate.awaitEntered(t)
	if r.sink.has(seq) {
		t.Fatal("answered before the command was durable")
	}
	gate.release()
	if res := r.sink.wait(t, seq); res.Status != ledger.StatusCompleted {
		t.Fatalf("credit = %+v", res)
	}
}

// durabilityGate is a Config.LogDurable that a test can hold: while held,
// every call waits until release, and the first call is signalled.
type durabilityGate struct {
	mu      sync.Mutex
	open    chan struct{}
	entered chan struct{}
}

// newDurabilityGate returns a gate that is open.
func newDurabilityGate() *durabilityGate {
	g := &durabilityGate{open: make(chan struct{}), entered: make(chan struct{}, 1)}
	close(g.open)
	return g
}

func (g *durabilityGate) wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	default:
	}
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *durabilityGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
	select {
	case <-g.entered:
	default:
	}
}

func (g *durabilityGate) held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		return false
	default:
		return true
	}
}

func (g *durabilityGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// awaitEntered returns once a call has waited on the held gate.
func (g *durabilityGate) awaitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing waited for durability")
	}
}

// releaseAtCleanup releases the gate before the engine's stop (cleanups
// run last first): a failing test must not leave the final flush waiting.
func (g *durabilityGate) releaseAtCleanup(t *testing.T) { t.Cleanup(g.release) }
