package engine_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/engine/kafkalog"
	"github.com/bursar/bursar/engine/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const parts = 4

// sink collects delivered answers by reply sequence.
type sink struct {
	mu  sync.Mutex
	got map[uint64]ledger.Result
	ch  chan uint64
}

func newSink() *sink { return &sink{got: map[uint64]ledger.Result{}, ch: make(chan uint64, 1024)} }

func (s *sink) Deliver(node string, seq uint64, r *ledger.Result) {
	s.mu.Lock()
	s.got[seq] = *r
	s.mu.Unlock()
	s.ch <- seq
}

func (s *sink) wait(t *testing.T, seq uint64) ledger.Result {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		r, ok := s.got[seq]
		s.mu.Unlock()
		if ok {
			return r
		}
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("no answer for request %d", seq)
		}
	}
}

type rig struct {
	t      *testing.T
	broker *kfake.Cluster
	store  *storage.Store
	client *kgo.Client
	eng    *engine.Engine
	sink   *sink
	slots  *ledger.SlotMap
	seq    uint64
}

// newRig starts a Kafka-protocol broker (kfake over TCP), a fresh database
// and an engine owning every partition.
func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	store, err := storage.Open(ctx, storage.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, broker: broker, store: store, slots: ledger.NewSlotMap(parts)}
	r.client = r.newClient()
	if _, err := kafkalog.EnsureTopics(ctx, r.client, parts, 1); err != nil {
		t.Fatal(err)
	}
	r.start()
	return r
}

func (r *rig) newClient() *kgo.Client {
	cl, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: r.broker.ListenAddrs()}.Options()...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

func (r *rig) start() {
	r.t.Helper()
	r.sink = newSink()
	eng, err := engine.New(engine.Config{NodeID: "test", Partitions: parts, FlushInterval: 5 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), r.store, r.newClient(), r.sink, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := eng.Start(context.Background(), []int32{0, 1, 2, 3}); err != nil {
		r.t.Fatal(err)
	}
	r.eng = eng
	r.t.Cleanup(func() { eng.Stop(context.Background()) }) //nolint:errcheck // second stop is a no-op
}

// produce appends a command to its account's partition and returns its
// reply sequence.
func (r *rig) produce(c *ledger.Command) uint64 {
	r.t.Helper()
	r.seq++
	if c.TxID == uuid.Nil {
		c.TxID = uuid.New()
	}
	if c.TimestampUs == 0 {
		c.TimestampUs = time.Now().UnixMicro()
	}
	c.RequestHash = ledger.HashRequest(c)
	c.ReplyNode, c.ReplySeq = "n", r.seq
	r.produceRaw(r.slots.PartitionOfAccount(c.AccountID), c.AppendBinary(nil))
	return r.seq
}

func (r *rig) produceRaw(p int32, value []byte) {
	r.t.Helper()
	res := r.client.ProduceSync(context.Background(), &kgo.Record{Topic: kafkalog.TopicCommands, Partition: p, Value: value})
	if err := res.FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) apply(c *ledger.Command) ledger.Result {
	r.t.Helper()
	return r.sink.wait(r.t, r.produce(c))
}

func openCmd(id uuid.UUID) *ledger.Command {
	return &ledger.Command{Kind: ledger.KindOpen, AccountID: id, Currency: "USD", CustomerID: "c", AccountType: "checking"}
}

func money(kind ledger.Kind, id uuid.UUID, amount int64, key string) *ledger.Command {
	return &ledger.Command{Kind: kind, AccountID: id, Amount: amount, Currency: "USD", IdemKey: key}
}

// accountIn returns an account ID that hashes to partition p.
func accountIn(p int32, slots *ledger.SlotMap) uuid.UUID {
	for {
		id := uuid.New()
		if slots.PartitionOfAccount(id) == p {
			return id
		}
	}
}

func TestApplyReadAndRecover(t *testing.T) {
	r := newRig(t)
	a := uuid.New()
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	if res := r.apply(money(ledger.KindCredit, a, 500, "k1")); res.Balance != 500 {
		t.Fatalf("credit = %+v", res)
	}
	if res := r.apply(money(ledger.KindDebit, a, 900, "k2")); res.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("overdraw = %+v", res)
	}
	// Read-your-writes from the actor, before any flush is guaranteed.
	acc, err := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(a), a)
	if err != nil || acc.Balance != 500 || acc.Seq != 3 {
		t.Fatalf("read = %+v %v", acc, err)
	}

	// A new engine on the same log and database rebuilds the same state.
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.start()
	if res := r.apply(money(ledger.KindDebit, a, 900, "k2")); !res.Replayed || res.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("retried refusal after restart = %+v", res)
	}
	if res := r.apply(money(ledger.KindDebit, a, 200, "k3")); res.Balance != 300 || res.Version != 3 {
		t.Fatalf("debit after restart = %+v", res)
	}
}

func TestDuplicateRecordAppliedOnce(t *testing.T) {
	r := newRig(t)
	a := uuid.New()
	r.apply(openCmd(a))
	c := money(ledger.KindCredit, a, 100, "dup")
	seq := r.produce(c)
	first := r.sink.wait(t, seq)
	// The very same record again, as a producer retry could write it.
	r.produceRaw(r.slots.PartitionOfAccount(a), c.AppendBinary(nil))
	r.sink.mu.Lock()
	delete(r.sink.got, seq)
	r.sink.mu.Unlock()
	second := r.sink.wait(t, seq)
	if !second.Replayed || second.TxID != first.TxID || second.Balance != 100 {
		t.Fatalf("duplicate = %+v, first = %+v", second, first)
	}
	acc, _ := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(a), a)
	if acc.Balance != 100 {
		t.Fatalf("balance %d after a duplicated record", acc.Balance)
	}
}

func TestUndecodableRecordGoesToDLQ(t *testing.T) {
	r := newRig(t)
	p := int32(1)
	a := accountIn(p, r.slots)
	r.produceRaw(p, []byte("not a command"))
	// The partition keeps going after the bad record.
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open after a bad record = %+v", res)
	}
	cl := r.newClient()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{kafkalog.TopicDLQ: {0: kgo.NewOffset().AtStart()}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Value) != "not a command" {
		t.Fatalf("dlq records = %v (errors %v)", recs, fs.Errors())
	}
	reason := ""
	for _, h := range recs[0].Headers {
		if h.Key == "reason" {
			reason = string(h.Value)
		}
	}
	if reason == "" {
		t.Fatal("dead letter without a reason")
	}
}

func TestFencedPartitionStopsWriting(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	p := int32(2)
	a := accountIn(p, r.slots)
	r.apply(openCmd(a))
	// Another node takes the partition: the epoch moves on.
	if _, _, err := r.store.Acquire(ctx, p, "usurper"); err != nil {
		t.Fatal(err)
	}
	r.apply(money(ledger.KindCredit, a, 70, "after-fence"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		owned := false
		for _, q := range r.eng.Owned() {
			owned = owned || q == p
		}
		if !owned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("engine still owns a fenced partition")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := r.eng.Account(ctx, p, a); err != engine.ErrNotOwner {
		t.Fatalf("read of a fenced partition = %v, want ErrNotOwner", err)
	}
	time.Sleep(50 * time.Millisecond) // several flush intervals
	acc, err := r.store.Account(ctx, a)
	if err == nil && acc.Balance != 0 {
		t.Fatalf("fenced node wrote the credit: %+v", acc)
	}
	rows, err := r.store.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Partition == p && row.Owner != "usurper" {
			t.Fatalf("partition row = %+v", row)
		}
	}
}
