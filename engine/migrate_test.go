package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
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

// migRig is one engine node with a live routing (refreshed from
// PostgreSQL), a coordinator stand-in that acquires every partition the
// slot map routes to, and a migrator: what a node runs to move slots.
type migRig struct {
	t        *testing.T
	addrs    []string
	dbURL    string
	store    *storage.Store
	producer *kgo.Client
	sink     *sink
	seq      atomic.Uint64

	staleHandovers bool // the next start's routes forget the handovers

	mu       sync.Mutex
	eng      *engine.Engine
	routing  *engine.Routing
	migrator *engine.Migrator
	stop     context.CancelFunc
}

func newMigRig(t *testing.T, partitions int32) *migRig {
	t.Helper()
	ctx := context.Background()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	dbURL := pgtest.NewDatabase(t)
	store, err := storage.Open(ctx, storage.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := &migRig{t: t, addrs: broker.ListenAddrs(), dbURL: dbURL, store: store, sink: newSink()}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // send polls got; the channel only must not fill
		for {
			select {
			case <-r.sink.ch:
			case <-done:
				return
			}
		}
	}()
	r.producer = r.newClient()
	if _, _, err := kafkalog.EnsureTopics(ctx, r.producer, kafkalog.Topics{Partitions: partitions, EventPartitions: 1, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.InitSlotMap(ctx, partitions); err != nil {
		t.Fatal(err)
	}
	r.start()
	return r
}

func (r *migRig) newClient() *kgo.Client {
	cl, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: r.addrs}.Options()...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

// start starts the node: a fresh engine, routing and migrator.
func (r *migRig) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := r.store.RouteState(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	lagging := r.staleHandovers
	if lagging {
		st.Handed = nil // a view from before the handovers (a node that lags)
		r.staleHandovers = false
	}
	cl := r.newClient()
	routing := engine.NewRouting(engine.RoutesFrom(st), r.store, testLogger(), cl, r.producer)
	routing.PollInterval = 50 * time.Millisecond
	eng, err := engine.New(engine.Config{NodeID: "test", Partitions: routing.Load().Partitions(), Routing: routing, EventPartitions: 1,
		FlushInterval: 5 * time.Millisecond, DisableEvents: true}, testLogger(), r.store, cl, r.sink, nil, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := eng.Start(ctx, nil); err != nil {
		r.t.Fatal(err)
	}
	if !lagging { // a lagging node does not poll: only what it must read at acquisition helps
		go routing.Run(ctx)
	}
	go func() { // the coordinator's part: own every partition routed to
		for ctx.Err() == nil {
			n := routing.Load().Partitions()
			owned := map[int32]bool{}
			for _, p := range eng.Owned() {
				owned[p] = true
			}
			var want []int32
			for p := range n {
				if !owned[p] {
					want = append(want, p)
				}
			}
			if len(want) > 0 {
				if err := eng.Acquire(ctx, want...); err != nil && ctx.Err() == nil {
					r.t.Logf("acquire: %v", err)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	r.mu.Lock()
	r.eng, r.routing, r.stop = eng, routing, cancel
	r.migrator = &engine.Migrator{Store: r.store, Client: cl, Log: testLogger(), Routing: routing}
	r.mu.Unlock()
	r.t.Cleanup(func() { cancel(); eng.Stop(context.Background()) }) //nolint:errcheck // a second stop is a no-op
}

// restart stops the node gracefully and starts it again.
func (r *migRig) restart() {
	r.t.Helper()
	r.mu.Lock()
	eng, stop := r.eng, r.stop
	r.mu.Unlock()
	stop()
	if err := eng.Stop(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.start()
}

func (r *migRig) node() (*engine.Engine, *engine.Routing, *engine.Migrator) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng, r.routing, r.migrator
}

// send appends c to partition to (-1: the one slots gives its account),
// as an ingress routing by slots does, and waits for the answer.
func (r *migRig) send(slots *ledger.SlotMap, to int32, c *ledger.Command) (ledger.Result, error) {
	seq := r.seq.Add(1)
	c.TxID = uuid.Must(uuid.NewV7())
	c.TimestampUs = time.Now().UnixMicro()
	c.RequestHash = ledger.HashRequest(c)
	c.ReplyNode, c.ReplySeq = "n", seq
	if to < 0 {
		to = slots.PartitionOfAccount(c.AccountID)
	}
	rec := &kgo.Record{Topic: kafkalog.TopicCommands, Partition: to, Key: c.AccountID[:],
		Value: c.AppendBinary(nil), Headers: []kgo.RecordHeader{kafkalog.SlotMapHeader(slots.Version)}}
	if err := r.producer.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		return ledger.Result{}, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r.sink.mu.Lock()
		res, ok := r.sink.got[seq]
		r.sink.mu.Unlock()
		if ok {
			return res, nil
		}
		time.Sleep(time.Millisecond)
	}
	return ledger.Result{}, fmt.Errorf("no answer for %s %s on account %s (partition %d under map v%d)", c.Kind, c.IdemKey, c.AccountID, rec.Partition, slots.Version)
}

// loadClients runs clients that each issue operations on their own
// accounts one after another, half of them routing by the newest map and
// half by the map at start (stale ingresses), until stop; each checks that
// every answer's version is one past the last it saw on that account.
type loadClients struct {
	accounts [][]uuid.UUID // per client
	issued   [][]string    // per account index: the keys, in the order sent
	acctIdx  map[uuid.UUID]int
	ops      atomic.Int64
	errs     chan error
	wg       sync.WaitGroup
}

func (r *migRig) openAccounts(n int) []uuid.UUID {
	r.t.Helper()
	_, routing, _ := r.node()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
		if res, err := r.send(routing.Load().Slots, -1, openCmd(ids[i])); err != nil || res.Status != ledger.StatusCompleted {
			r.t.Fatalf("open: %+v %v", res, err)
		}
	}
	return ids
}

func (r *migRig) runLoad(ctx context.Context, clients, perClient int, sinks []uuid.UUID) *loadClients {
	_, routing, _ := r.node()
	stale := routing.Load().Slots
	lc := &loadClients{acctIdx: map[uuid.UUID]int{}, errs: make(chan error, clients)}
	for range clients {
		ids := r.openAccounts(perClient)
		lc.accounts = append(lc.accounts, ids)
		for _, id := range ids {
			lc.acctIdx[id] = len(lc.issued)
			lc.issued = append(lc.issued, nil)
		}
	}
	for c, ids := range lc.accounts {
		lc.wg.Add(1)
		go func(c int, ids []uuid.UUID) {
			defer lc.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			version := make(map[uuid.UUID]int64, len(ids))
			balance := make(map[uuid.UUID]int64, len(ids))
			for _, id := range ids {
				version[id] = 1 // the open
			}
			for i := 0; ctx.Err() == nil; i++ {
				id := ids[rng.IntN(len(ids))]
				// A third route by the newest map (their commands for a
				// moving slot wait at its new partition), a third by the
				// map at start (a stale ingress: forwarded), a third as
				// the ingress does (the old partition until handed over).
				slots, to := stale, int32(-1)
				_, routing, _ := r.node()
				switch rt := routing.Load(); c % 3 {
				case 0:
					slots = rt.Slots
				case 2:
					slots, to = rt.Slots, rt.PartitionOf(id)
				}
				key := fmt.Sprintf("c%d-%d", c, i)
				cmd := money(ledger.KindCredit, id, 3, key)
				transfer := len(sinks) > 0 && i%3 == 2 && balance[id] > 0
				if transfer {
					cmd = &ledger.Command{Kind: ledger.KindTransferDebit, AccountID: id, Counterparty: sinks[rng.IntN(len(sinks))], Amount: 1, Currency: "USD", IdemKey: key}
				}
				res, err := r.send(slots, to, cmd)
				if err != nil {
					lc.errs <- err
					return
				}
				lc.issued[lc.acctIdx[id]] = append(lc.issued[lc.acctIdx[id]], key)
				lc.ops.Add(1)
				if transfer {
					if res.Status != ledger.StatusCompleted {
						lc.errs <- fmt.Errorf("transfer %s: %+v", key, res)
						return
					}
					version[id]++ // answered by the credit leg: the source's version is not in it
					balance[id]--
					continue
				}
				if res.Status != ledger.StatusCompleted || res.Version != version[id]+1 {
					lc.errs <- fmt.Errorf("account %s op %s: version %d after %d (status %s, replayed %v): out of order or lost", id, key, res.Version, version[id], res.Status, res.Replayed)
					return
				}
				version[id] = res.Version
				balance[id] += 3
			}
		}(c, ids)
	}
	return lc
}

// check waits for the clients and checks PostgreSQL: every account's
// client operations in the order they were sent, each once, and a clean
// audit.
func (lc *loadClients) check(t *testing.T, r *migRig) {
	t.Helper()
	lc.wg.Wait()
	close(lc.errs)
	for err := range lc.errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	eng, _, _ := r.node()
	if err := eng.Stop(ctx); err != nil { // everything flushed
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for id, i := range lc.acctIdx {
		rows, err := conn.Query(ctx, `SELECT idem_key FROM transactions WHERE account_id = $1 AND kind <> 'open' ORDER BY seq`, [16]byte(id))
		if err != nil {
			t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(keys) != fmt.Sprint(lc.issued[i]) {
			t.Fatalf("account %s: history %v, sent %v", id, keys, lc.issued[i])
		}
	}
	rep, err := r.store.Audit(ctx, nil)
	if err != nil || !rep.Clean {
		t.Fatalf("audit: %+v %v", rep, err)
	}
}

func TestScaleUnderLoadKeepsOrder(t *testing.T) {
	r := newMigRig(t, 2)
	sinks := r.openAccounts(3)
	ctx, cancel := context.WithCancel(context.Background())
	lc := r.runLoad(ctx, 6, 4, sinks)
	time.Sleep(300 * time.Millisecond)
	_, _, mig := r.node()
	for _, n := range []int32{4, 8} {
		before := lc.ops.Load()
		if err := mig.Scale(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		st := mig.Status()
		if st.Running || st.Error != "" || st.HandedOver != st.Groups || st.SlotsMoved != st.SlotsTotal || st.SlotsMoved == 0 {
			t.Fatalf("scale to %d: %+v", n, st)
		}
		time.Sleep(300 * time.Millisecond)
		if lc.ops.Load() == before {
			t.Fatalf("no operation completed while scaling to %d", n)
		}
	}
	// Hot-spot relief: one client account's slot to another partition.
	hot := lc.accounts[0][0]
	_, routing, _ := r.node()
	to := (routing.Load().Slots.PartitionOfAccount(hot) + 1) % 8
	if err := mig.MoveSlot(context.Background(), ledger.SlotOf(hot), to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if rt := routing.Load(); rt.Slots.PartitionOfAccount(hot) != to || rt.Mig != nil || rt.Partitions() != 8 {
		t.Fatalf("routes after the moves: partitions %d, hot account on %d, in flight %v", rt.Partitions(), rt.Slots.PartitionOfAccount(hot), rt.Mig != nil)
	}
	// Idempotent: the same target again moves nothing.
	if err := mig.Scale(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	if v := routing.Load().Slots.Version; v != 3 {
		t.Fatalf("slot map version %d after two scales and a move-slot (and a repeat)", v)
	}
	if err := mig.Scale(context.Background(), 4); err == nil {
		t.Fatal("shrinking was accepted")
	}
	lc.check(t, r)
	t.Logf("%d operations", lc.ops.Load())
}

// The old partition's owner dies between the barrier and its flush: the
// flush cannot commit (PostgreSQL's partitions rows are locked), then it
// is fenced, as a crashed owner's successor fences it; the new owner
// replays from before the barrier, takes it again and hands the group
// over. The records forwarded twice are applied once.
func TestMigrationSurvivesOldOwnerCrashMidBarrier(t *testing.T) {
	r := newMigRig(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	lc := r.runLoad(ctx, 4, 3, nil)
	time.Sleep(200 * time.Millisecond)
	_, _, mig := r.node()

	bctx := context.Background()
	conn, err := pgx.Connect(bctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bctx)
	tx, err := conn.Begin(bctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(bctx, `SELECT 1 FROM partitions FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mig.Scale(context.Background(), 4) }()
	for !strings.Contains(mig.Status().Step, "waiting for the handover") {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the barrier applied, forwards produced, the flush stuck
	var handed int
	if err := r.store.Pool().QueryRow(bctx, `SELECT count(*) FROM slot_handovers`).Scan(&handed); err != nil {
		t.Fatal(err)
	}
	if handed != 0 {
		t.Fatalf("%d handovers committed while flushes were held", handed)
	}
	// The new partitions' owner crashes while it holds: its successor
	// holds again.
	eng, _, _ := r.node()
	eng.Drop(2)
	eng.Drop(3)
	// Another owner acquires both (as after a crash): the held flush is
	// fenced, the partitions dropped, their unflushed work (the barrier
	// and the forwards included) forgotten; the stand-in coordinator
	// acquires them again.
	if _, err := tx.Exec(bctx, `UPDATE partitions SET epoch = epoch + 1 WHERE partition IN (0, 1)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(bctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	lc.check(t, r)
}

// The driver stops mid-migration (its context ends); the node restarts;
// a second run resumes the migration and finishes it, and a third does
// nothing.
func TestMigrationResumesAfterDriverStops(t *testing.T) {
	r := newMigRig(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	lc := r.runLoad(ctx, 4, 3, nil)
	time.Sleep(200 * time.Millisecond)
	_, _, mig := r.node()
	dctx, stopDriver := context.WithCancel(context.Background())
	go func() {
		for mig.Status().HandedOver == 0 {
			time.Sleep(time.Millisecond)
		}
		stopDriver()
	}()
	if err := mig.Scale(dctx, 4); err == nil {
		t.Log("the driver finished before it was stopped")
	}
	st, err := r.store.RouteState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Slots.Map.Version != 1 {
		t.Fatalf("slot map version %d after the interrupted scale", st.Slots.Map.Version)
	}
	r.restart()
	_, routing, mig := r.node()
	if err := mig.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mig.Scale(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	if rt := routing.Load(); rt.Mig != nil || rt.Slots.Version != 1 || rt.Partitions() != 4 {
		t.Fatalf("after resuming: version %d, partitions %d, in flight %v", rt.Slots.Version, rt.Partitions(), rt.Mig != nil)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	lc.check(t, r)
}

// A node whose routes lag (it has not seen the handovers) acquires the
// old partition of a moved group, whose committed offset is past the
// barrier: a record an old ingress appended there is forwarded, not
// applied on the state PostgreSQL had at the handover.
func TestReplayPastBarrierForwardsWithLaggingRoutes(t *testing.T) {
	r := newMigRig(t, 2)
	_, routing, mig := r.node()
	next, err := routing.Load().Slots.Scale(4)
	if err != nil {
		t.Fatal(err)
	}
	prev := routing.Load().Slots
	var id uuid.UUID
	for { // an account whose slot moves from 0 to 2
		id = uuid.New()
		if prev.PartitionOfAccount(id) == 0 && next.PartitionOfAccount(id) == 2 {
			break
		}
	}
	if res, err := r.send(prev, -1, openCmd(id)); err != nil || res.Status != ledger.StatusCompleted {
		t.Fatalf("open: %+v %v", res, err)
	}
	if err := mig.Scale(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	if res, err := r.send(routing.Load().Slots, -1, money(ledger.KindCredit, id, 5, "on-new")); err != nil || res.Balance != 5 {
		t.Fatalf("credit at the new partition: %+v %v", res, err)
	}
	r.staleHandovers = true
	r.restart()
	// An ingress still on version 0 appends to partition 0.
	res, err := r.send(prev, -1, money(ledger.KindCredit, id, 7, "via-old"))
	if err != nil || res.Balance != 12 || res.Version != 3 {
		t.Fatalf("credit through the old partition: %+v %v", res, err)
	}
	eng, _, _ := r.node()
	if err := eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var part int32
	if err := r.store.Pool().QueryRow(context.Background(), `SELECT partition FROM transactions WHERE idem_key = 'via-old'`).Scan(&part); err != nil {
		t.Fatal(err)
	}
	if part != 2 {
		t.Fatalf("the credit sent to the old partition was applied by partition %d, not forwarded to 2", part)
	}
	if rep, err := r.store.Audit(context.Background(), nil); err != nil || !rep.Clean {
		t.Fatalf("audit: %+v %v", rep, err)
	}
}
