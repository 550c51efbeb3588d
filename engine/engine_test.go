package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

func (s *sink) has(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.got[seq]
	return ok
}

func (s *sink) wait(t testing.TB, seq uint64) ledger.Result {
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
	t          testing.TB
	addrs      []string // the broker's
	eventParts int32
	store      *storage.Store
	client     *kgo.Client
	eng        *engine.Engine
	sink       *sink
	slots      *ledger.SlotMap
	seq        uint64
	dbURL      string
	// tweak, when set, adjusts the engine's configuration at each start.
	tweak func(*engine.Config)
}

// newRig starts a Kafka-protocol broker (kfake over TCP, in memory), a
// fresh database and an engine owning every partition.
func newRig(t testing.TB) *rig {
	t.Helper()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	return newRigOn(t, broker.ListenAddrs(), parts, nil)
}

// newRigOn is newRig against the broker at addrs, with eventParts
// partitions of bursar.events and the engine's configuration adjusted by
// tweak (nil: as it is).
func newRigOn(t testing.TB, addrs []string, eventParts int32, tweak func(*engine.Config)) *rig {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	store, err := storage.Open(ctx, storage.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, addrs: addrs, eventParts: eventParts, store: store, dbURL: dbURL, slots: ledger.NewSlotMap(parts), tweak: tweak}
	r.client = r.newClient()
	if _, _, err := kafkalog.EnsureTopics(ctx, r.client, kafkalog.Topics{Partitions: parts, EventPartitions: eventParts, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	r.start()
	return r
}

func (r *rig) newClient() *kgo.Client {
	cl, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: r.addrs}.Options()...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

func (r *rig) start() { r.startWith(engine.AckApplied) }

func (r *rig) startWith(ack string) {
	r.t.Helper()
	r.sink = newSink()
	cfg := engine.Config{NodeID: "test", Partitions: parts, EventPartitions: r.eventParts, FlushInterval: 5 * time.Millisecond, Ack: ack}
	if r.tweak != nil {
		r.tweak(&cfg)
	}
	eng, err := engine.New(cfg, testLogger(), r.store, r.newClient(), r.sink, nil, nil)
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

// holdFlushes holds every flush of the rig's engine, with a transaction
// that locks the partitions table's rows (each flush updates them first),
// until release is called (or the test ends).
func (r *rig) holdFlushes(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM partitions FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(ctx); err != nil {
				t.Error(err)
			}
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
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
	r.sink.mu.Lock()
	delete(r.sink.got, seq)
	r.sink.mu.Unlock()
	// The very same record again, as a producer retry could write it.
	r.produceRaw(r.slots.PartitionOfAccount(a), c.AppendBinary(nil))
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
	// The open's flush must land first: fenced before it, the engine would
	// drop the partition before the credit below is applied, and the
	// credit would never be answered (the race that made this test fail
	// 2 times in 30 under load).
	r.waitCommitted(t)
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

func transferCmd(src, dst uuid.UUID, amount int64, key string) *ledger.Command {
	return &ledger.Command{Kind: ledger.KindTransferDebit, AccountID: src, Counterparty: dst, Amount: amount, Currency: "USD", IdemKey: key}
}

func (r *rig) balance(id uuid.UUID) int64 {
	r.t.Helper()
	acc, err := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(id), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return acc.Balance
}

// waitBalance waits until the account's balance is want (legs and refunds
// arrive after the answer).
func (r *rig) waitBalance(id uuid.UUID, want int64) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.balance(id) != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("balance of %s = %d, want %d", id, r.balance(id), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTransferAcrossAndWithinPartitions(t *testing.T) {
	r := newRig(t)
	a := accountIn(0, r.slots)
	same := accountIn(0, r.slots)
	other := accountIn(3, r.slots)
	for _, id := range []uuid.UUID{a, same, other} {
		r.apply(openCmd(id))
	}
	r.apply(money(ledger.KindCredit, a, 1000, "fund"))
	for _, dst := range []uuid.UUID{same, other} {
		res := r.apply(transferCmd(a, dst, 100, "t-"+dst.String()))
		if res.Kind != ledger.KindTransferCredit || res.Status != ledger.StatusCompleted || res.AccountID != dst {
			t.Fatalf("transfer to %s answered %+v", dst, res)
		}
	}
	r.waitBalance(a, 800)
	r.waitBalance(same, 100)
	r.waitBalance(other, 100)
}

func TestReplayedLegAppliedOnce(t *testing.T) {
	r := newRig(t)
	a, b := accountIn(1, r.slots), accountIn(2, r.slots)
	r.apply(openCmd(a))
	r.apply(openCmd(b))
	r.apply(money(ledger.KindCredit, a, 500, "fund"))
	tr := transferCmd(a, b, 200, "t1")
	res := r.apply(tr)
	if res.Status != ledger.StatusCompleted {
		t.Fatalf("transfer = %+v", res)
	}
	// A replay of the source partition re-emits the very same credit leg.
	leg := *tr
	leg.Kind, leg.AccountID, leg.Counterparty, leg.IdemKey = ledger.KindTransferCredit, b, a, ""
	r.produceRaw(r.slots.PartitionOfAccount(b), leg.AppendBinary(nil))
	// And a refund that was never caused must not be invented either: send
	// a marker command after it and wait for that, so the leg was applied.
	r.apply(money(ledger.KindCredit, b, 1, "marker"))
	if got := r.balance(b); got != 201 {
		t.Fatalf("destination balance %d after a replayed leg, want 201", got)
	}
	if got := r.balance(a); got != 300 {
		t.Fatalf("source balance %d, want 300", got)
	}
}

func TestMissingDestinationRefundsAndRemembers(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	a := accountIn(0, r.slots)
	ghost := accountIn(1, r.slots)
	r.apply(openCmd(a))
	r.apply(money(ledger.KindCredit, a, 500, "fund"))
	tr := transferCmd(a, ghost, 120, "to-ghost")
	res := r.apply(tr)
	if res.Status != ledger.StatusFailed || res.Code != ledger.CodeAccountNotFound || res.Kind != ledger.KindTransferCredit {
		t.Fatalf("transfer to a missing account = %+v", res)
	}
	r.waitBalance(a, 500) // refunded

	// The missing account is opened later, then a replayed copy of the
	// refused leg arrives: it must be recognized, even across a restart
	// (the refusal is remembered in PostgreSQL), not credited.
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.start()
	r.apply(openCmd(ghost))
	leg := *tr
	leg.Kind, leg.AccountID, leg.Counterparty, leg.IdemKey = ledger.KindTransferCredit, ghost, a, ""
	r.produceRaw(r.slots.PartitionOfAccount(ghost), leg.AppendBinary(nil))
	r.apply(money(ledger.KindCredit, ghost, 1, "marker"))
	if got := r.balance(ghost); got != 1 {
		t.Fatalf("late replayed leg credited the new account: balance %d, want 1", got)
	}
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := r.store.Audit(ctx, nil)
	if err != nil || !rep.Clean {
		rows, _ := r.store.History(ctx, ghost, 0, 10)
		for _, row := range rows {
			t.Logf("ghost row %+v", row)
		}
		acc, _ := r.store.Account(ctx, ghost)
		t.Logf("ghost account %+v", acc)
		t.Fatalf("audit: %v %+v", err, rep)
	}
}

func TestEventsHaveStableIDs(t *testing.T) {
	r := newRig(t)
	checkEvents(t, r, 2, 2)
}

// TestEventsOnFewerPartitions: with fewer event partitions than command
// partitions (--event-partitions), a command partition's events go to
// its partition modulo the count, all of an account's to the same one.
func TestEventsOnFewerPartitions(t *testing.T) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	r := newRigOn(t, broker.ListenAddrs(), 2, nil)
	checkEvents(t, r, 3, 1)
}

// checkEvents applies an open, a credit and a refused debit on an account
// of command partition p and checks their events in events partition ep.
func checkEvents(t *testing.T, r *rig, p, ep int32) {
	t.Helper()
	a := accountIn(p, r.slots)
	r.apply(openCmd(a))
	r.apply(money(ledger.KindCredit, a, 700, "e1"))
	r.apply(money(ledger.KindDebit, a, 9999, "e2")) // refused
	cl := r.newClient()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{kafkalog.TopicEvents: {ep: kgo.NewOffset().AtStart()}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	types := map[string]string{}
	for len(types) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			var id, typ string
			for _, h := range rec.Headers {
				switch h.Key {
				case "event_id":
					id = string(h.Value)
				case "type":
					typ = string(h.Value)
				}
			}
			types[id] = typ
		})
	}
	want := map[string]string{EventKey(a, 2): engine.EventBalanceChanged}
	for id, typ := range want {
		if types[id] != typ {
			t.Fatalf("events = %v, missing %s %s", types, id, typ)
		}
	}
	completed, failed := 0, 0
	for _, typ := range types {
		switch typ {
		case engine.EventTransactionCompleted:
			completed++
		case engine.EventTransactionFailed:
			failed++
		}
	}
	if completed != 1 || failed != 1 {
		t.Fatalf("events = %v", types)
	}
}

// EventKey is the balance.changed event ID of an account version.
func EventKey(a uuid.UUID, version int) string {
	return a.String() + "/v" + strconv.Itoa(version)
}

func TestReleaseHandsOffWithoutLoss(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	p := int32(3)
	a := accountIn(p, r.slots)
	r.apply(openCmd(a))
	r.apply(money(ledger.KindCredit, a, 250, "before-handoff"))
	if err := r.eng.Release(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, q := range r.eng.Owned() {
		if q == p {
			t.Fatal("released partition still owned")
		}
	}
	rows, err := r.store.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Partition == p && (row.Owner != "" || row.NextOffset != 2) {
			t.Fatalf("after release: %+v, want no owner and offset 2 (everything flushed)", row)
		}
	}
	// Another node takes it over and continues from the committed state.
	old := r.eng
	r.start() // acquires every partition; the old engine is fenced on the rest
	if res := r.apply(money(ledger.KindCredit, a, 50, "after-handoff")); res.Balance != 300 || res.Version != 3 {
		t.Fatalf("after handoff = %+v", res)
	}
	if res := r.apply(money(ledger.KindCredit, a, 250, "before-handoff")); !res.Replayed {
		t.Fatalf("key from before the handoff not remembered: %+v", res)
	}
	old.Stop(ctx) //nolint:errcheck // fenced everywhere by now
}

// waitCommitted waits until PostgreSQL holds every partition's log up to
// its end.
func (r *rig) waitCommitted(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ends, err := kafkalog.EndOffsets(ctx, r.client)
		if err != nil {
			tb.Fatal(err)
		}
		rows, err := r.store.Partitions(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		done := len(rows) > 0
		for _, row := range rows {
			done = done && row.NextOffset >= ends[row.Partition]
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not committed after a minute: ends %v rows %+v", ends, rows)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLogger discards logs unless BURSAR_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("BURSAR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// With ack=flushed an answer is sent only once PostgreSQL holds the
// command: the row is readable the moment the answer arrives.
func TestAckFlushedAnswersAfterCommit(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.startWith(engine.AckFlushed)
	ctx := context.Background()
	a := uuid.New()
	r.apply(openCmd(a))
	for i := 0; i < 20; i++ {
		res := r.apply(money(ledger.KindCredit, a, 10, fmt.Sprintf("flushed-%d", i)))
		recs, err := r.store.Transaction(ctx, res.TxID)
		if err != nil || len(recs) != 1 {
			t.Fatalf("answer for %s arrived before its commit: %v %d rows", res.TxID, err, len(recs))
		}
	}
	acc, err := r.store.Account(ctx, a)
	if err != nil || acc.Balance != 200 {
		t.Fatalf("account = %+v %v", acc, err)
	}
}

func TestGroupByAccount(t *testing.T) {
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	cmds := []*ledger.Command{{AccountID: b}, {AccountID: a}, {AccountID: b}, {AccountID: c}, {AccountID: a}, {AccountID: b}}
	got := engine.GroupByAccount(cmds)
	want := [][]int32{{0, 2, 5}, {1, 4}, {3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	for _, g := range got {
		if cap(g) != len(g) {
			t.Fatalf("group %v can grow into its neighbour (cap %d)", g, cap(g))
		}
	}
	if len(engine.GroupByAccount(nil)) != 0 {
		t.Fatal("groups of no commands")
	}
}

// TestRetriedTransferAnsweredByItsLeg: a retried transfer (same key, same
// request, a new transaction ID minted by the ingress) is answered with the
// first request's outcome by the credit leg the retry sends again, without
// reading PostgreSQL: completed for a transfer that completed, the
// destination's refusal for one it refused. Nothing is applied twice.
func TestRetriedTransferAnsweredByItsLeg(t *testing.T) {
	r := newRig(t)
	a, b := accountIn(0, r.slots), accountIn(1, r.slots)
	ghost := accountIn(2, r.slots) // never opened
	for _, id := range []uuid.UUID{a, b} {
		if res := r.apply(openCmd(id)); res.Status != ledger.StatusCompleted {
			t.Fatalf("open = %+v", res)
		}
	}
	if res := r.apply(money(ledger.KindCredit, a, 100, "fund")); res.Status != ledger.StatusCompleted {
		t.Fatalf("credit = %+v", res)
	}
	for _, tc := range []struct {
		name   string
		dst    uuid.UUID
		key    string
		status ledger.TxStatus
		code   ledger.Code
	}{
		{"completed", b, "t-ok", ledger.StatusCompleted, ledger.OK},
		{"refused by the destination", ghost, "t-ghost", ledger.StatusFailed, ledger.CodeAccountNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			transfer := func() *ledger.Command {
				return &ledger.Command{Kind: ledger.KindTransferDebit, AccountID: a, Counterparty: tc.dst, Amount: 10, Currency: "USD", IdemKey: tc.key}
			}
			first := r.apply(transfer())
			if first.Kind != ledger.KindTransferCredit || first.Status != tc.status || first.Code != tc.code {
				t.Fatalf("first answer = %+v", first)
			}
			r.waitCommitted(t)
			for i := range 2 {
				retry := r.apply(transfer())
				if retry.Kind != ledger.KindTransferCredit || retry.Status != tc.status || retry.Code != tc.code || retry.TxID != first.TxID || !retry.Replayed {
					t.Fatalf("retry %d answer = %+v, first %+v", i, retry, first)
				}
			}
		})
	}
	r.waitCommitted(t)
	acc, err := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(a), a)
	if err != nil {
		t.Fatal(err)
	}
	// 100 in, 10 to b, 10 to ghost and back.
	if acc.Balance != 90 {
		t.Fatalf("source balance %d, want 90", acc.Balance)
	}
	if acc, _ := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(b), b); acc.Balance != 10 {
		t.Fatalf("destination balance %d, want 10", acc.Balance)
	}
}

// TestEvictedUnflushedKeyIsStillARetry: an account whose bounded key index
// has evicted an outcome that PostgreSQL does not hold yet (its flush is
// held by a lock) still recognizes the retry: the lookup reads the
// partition's unflushed rows before PostgreSQL. Without it the retry, or a
// re-sent transfer leg, would be applied twice.
func TestEvictedUnflushedKeyIsStillARetry(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.tweak = func(c *engine.Config) { c.KeysPerAccount = 4 }
	r.start()
	a := accountIn(0, r.slots)
	if res := r.apply(openCmd(a)); res.Status != ledger.StatusCompleted {
		t.Fatalf("open = %+v", res)
	}
	r.waitCommitted(t)

	ctx := context.Background()
	release := r.holdFlushes(t)
	first := money(ledger.KindCredit, a, 7, "k0")
	res := r.apply(first)
	for i := range 10 { // evicts k0 from the 4-key index
		r.apply(money(ledger.KindCredit, a, 1, fmt.Sprint("k", i+1)))
	}
	retry := r.apply(money(ledger.KindCredit, a, 7, "k0"))
	if !retry.Replayed || retry.TxID != res.TxID {
		t.Fatalf("retry of an evicted, unflushed key = %+v, first %+v", retry, res)
	}
	release()
	r.waitCommitted(t)
	acc, err := r.eng.Account(ctx, r.slots.PartitionOfAccount(a), a)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Balance != 17 {
		t.Fatalf("balance %d, want 17 (7 once, then ten 1s)", acc.Balance)
	}
}

// countingHandler counts the records logged at Warn and above.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countingHandler) Handle(context.Context, slog.Record) error    { h.n.Add(1); return nil }
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h countingHandler) WithGroup(string) slog.Handler                { return h }

// TestAccountsCommittedAfterTheCommit: the hook sees each account state
// once PostgreSQL holds it, per account in version order, and ends at the
// state the owner's memory has.
func TestAccountsCommittedAfterTheCommit(t *testing.T) {
	var (
		mu       sync.Mutex
		store    *storage.Store
		last     = map[uuid.UUID]int64{}
		problems []string
		changed  = make(chan struct{}, 1) // the hook ran
	)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	r := newRigOn(t, broker.ListenAddrs(), parts, func(c *engine.Config) {
		c.AccountsCommitted = func(accounts map[uuid.UUID]*ledger.Account, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			for id, a := range accounts {
				if a.Version < last[id] {
					problems = append(problems, fmt.Sprintf("%s: version %d after %d", id, a.Version, last[id]))
				}
				last[id] = a.Version
				if store == nil {
					continue
				}
				stored, err := store.Account(context.Background(), id)
				if err != nil || stored.Version < a.Version {
					problems = append(problems, fmt.Sprintf("%s: version %d published, PostgreSQL has %d (%v)", id, a.Version, stored.Version, err))
				}
			}
			if time.Since(at) < 0 {
				problems = append(problems, "a commit time in the future")
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	mu.Lock()
	store = r.store
	mu.Unlock()
	ids := []uuid.UUID{accountIn(0, r.slots), accountIn(1, r.slots), accountIn(2, r.slots)}
	for _, id := range ids {
		r.apply(openCmd(id))
	}
	for i := range 60 {
		r.apply(money(ledger.KindCredit, ids[i%len(ids)], 10, fmt.Sprintf("c%d", i)))
	}
	for _, id := range ids {
		acc, err := r.eng.Account(context.Background(), r.slots.PartitionOfAccount(id), id)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(5 * time.Second)
		for {
			mu.Lock()
			v := last[id]
			mu.Unlock()
			if v == acc.Version {
				break
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("%s: last published version %d, the owner has %d", id, v, acc.Version)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
}
