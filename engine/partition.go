package engine

import (
	"context"
	"fmt"
	"github.com/bursar/bursar/retry"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/actors"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// resident is an actor the partition has spawned.
type resident struct {
	pid        *actor.PID
	lastOffset int64 // offset of the last command it applied
	lastUsed   time.Time
}

// reply is an answer held back until its flush (ack=flushed).
type reply struct {
	node   string
	seq    uint64
	result ledger.Result
}

// buffer holds a partition's unflushed effects, in log order, up to next.
type buffer struct {
	rows       []storage.TxRow
	tombstones []storage.TxRow
	accounts   map[uuid.UUID]*ledger.Account
	replies    []reply
	handovers  []storage.Handover // groups whose barrier is before next
	next       int64              // everything before this offset is in the buffer or flushed

	emits   sync.WaitGroup // records produced for these effects, not yet acknowledged
	emitMu  sync.Mutex
	emitErr error

	// reemitting counts the records of emits the reemitter holds; stuck
	// is closed when the first one goes there (a flush then leaves this
	// partition for later instead of waiting).
	reemitting atomic.Int32
	stuck      chan struct{}
	stuckOnce  sync.Once
	doneOnce   sync.Once
	done       chan struct{} // closed once emits is done (emitsDone)
}

// markStuck notes that one of the buffer's records waits in the
// reemitter.
func (b *buffer) markStuck() {
	b.reemitting.Add(1)
	b.stuckOnce.Do(func() { close(b.stuck) })
}

// emitsDone returns a channel closed once every record produced for the
// buffer is acknowledged or given up: one goroutine per buffer waits for
// it, however many flushes ask.
func (b *buffer) emitsDone() <-chan struct{} {
	b.doneOnce.Do(func() {
		b.done = make(chan struct{})
		go func() { b.emits.Wait(); close(b.done) }()
	})
	return b.done
}

func newBuffer(next int64) *buffer {
	return &buffer{accounts: make(map[uuid.UUID]*ledger.Account), next: next, stuck: make(chan struct{})}
}

func (b *buffer) size() int { return len(b.rows) + len(b.accounts) + len(b.tombstones) }

func (b *buffer) setEmitErr(err error) {
	b.emitMu.Lock()
	if b.emitErr == nil {
		b.emitErr = err
	}
	b.emitMu.Unlock()
}

// partition is one owned partition: its worker, its actors and its
// unflushed buffer.
type partition struct {
	e           *Engine
	id          int32
	epoch       int64
	loadWaiting atomic.Bool // its worker retries loading accounts from PostgreSQL
	atLimit     atomic.Bool // its worker waits at MaxUnflushedRows for a flush
	end         int64       // log end when acquired; ready once applied reaches it

	in       chan []*kgo.Record
	quit     chan struct{} // closed to end the worker (halt or stop)
	quitOnce sync.Once
	done     chan struct{} // closed when the worker has ended
	ready    atomic.Bool
	stopped  atomic.Bool

	mu        sync.RWMutex
	space     *sync.Cond // signalled when a flush takes the buffer
	residents map[uuid.UUID]*resident
	buf       *buffer
	applied   int64 // next offset to apply
	committed int64 // next offset PostgreSQL has
	// changed is closed (and replaced) when committed moves or the
	// partition stops: Release waits on it.
	changed chan struct{}
	// flushing are the buffers a flush took and has not committed yet, in
	// log order (read by key lookups: their rows are in neither the buffer
	// nor PostgreSQL).
	flushing []*buffer

	// Moving slots (ledger.Migration). The worker's own: routes, the
	// routes the last record was decided under; the hold.
	routes    *Routes
	holdAt    int64
	holdVer   int64
	holdGroup int
	holdSlots []int
	holdSince time.Time
	// held: the worker holds at holdAt (its consumption removed) until
	// group holdGroup is handed over. passed: the groups of routes'
	// migration whose barrier this log holds before the next record to
	// apply (written by the worker, read by reads too).
	held         atomic.Bool
	heldCaughtUp atomic.Bool // held at or past the end seen at acquisition
	passed       atomic.Pointer[passedBarriers]
}

// passedBarriers are the groups of one migration whose barrier a
// partition has applied.
type passedBarriers struct {
	version int64
	groups  map[int]bool
}

// passedBarrier reports whether the partition has applied the barrier of
// group g of the migration to version.
func (p *partition) passedBarrier(version int64, g int) bool {
	pb := p.passed.Load()
	return pb != nil && pb.version == version && pb.groups[g]
}

func newPartition(e *Engine, id int32, epoch, next, end int64) *partition {
	p := &partition{
		e: e, id: id, epoch: epoch, end: end,
		in:        make(chan []*kgo.Record, 2),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		residents: make(map[uuid.UUID]*resident),
		buf:       newBuffer(next),
		applied:   next,
		committed: next,
		changed:   make(chan struct{}),
		routes:    e.routing.Load(),
	}
	p.space = sync.NewCond(&p.mu)
	if next >= end {
		p.ready.Store(true)
	}
	return p
}

func (p *partition) run() {
	defer p.e.wg.Done()
	defer close(p.done)
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		changed := p.e.routing.Changed()
		select {
		case <-p.e.ctx.Done():
			return
		case <-p.quit:
			return
		case recs := <-p.in:
			if p.held.Load() {
				continue // fetched before the hold; fetched again after it
			}
			p.process(recs)
		case <-changed:
			p.tryResume()
		case <-sweep.C:
			p.tryResume()
			p.passivate(time.Now())
		}
	}
}

// fetched is one fetched batch, decoded: the commands to apply in log
// order with their offsets, and the records that go to the dead-letter
// topic instead.
type fetched struct {
	cmds    []*ledger.Command
	offs    []int64
	dead    []*kgo.Record
	deadWhy []string
	last    int64 // offset of the last record taken; -1 when none was
	// forwards are records of slots another partition applies;
	// handovers the groups whose barrier the batch holds.
	forwards  []*kgo.Record
	handovers []storage.Handover
	hold      bool // stop after last: the next record waits for a handover
}

// process applies one fetched batch of records in log order, in the shape
// of raft's Ready/Advance: decode the batch, load what it needs in bulk,
// let each account's actor run the core over its commands (no I/O there),
// and take back everything the batch caused; then the worker alone hands
// on the records to produce and buffers the rest for the flush.
func (p *partition) process(recs []*kgo.Record) {
	start := time.Now()
	f := p.decode(recs)
	if f.hold {
		defer p.beginHold()
	}
	if f.last < 0 {
		return
	}
	// The applied commands must be on disk before anything they cause is
	// produced, and before their offsets commit.
	for _, r := range recs {
		if r.Offset <= f.last {
			p.e.logWritten(r)
		}
	}
	p.observeFetched(f.cmds, start)
	idx := groupByAccount(f.cmds)
	if !p.spawnMissing(f.cmds, idx) {
		return // shutting down; nothing of this batch is committed
	}
	outs, ok := p.dispatch(f.cmds, idx)
	if !ok {
		return // only when the engine stops mid-lookup; replay redoes the batch
	}
	p.advance(&f, idx, outs)
	p.e.m.batchSeconds.Observe(time.Since(start).Seconds())
}

// decode takes the records that continue the partition at its next offset
// and decodes them; an undecodable or misrouted record is set aside for the
// dead-letter topic.
func (p *partition) decode(recs []*kgo.Record) fetched {
	e := p.e
	f := fetched{cmds: make([]*ledger.Command, 0, len(recs)), offs: make([]int64, 0, len(recs)), last: -1}
	expected := p.applied
	for _, r := range recs {
		if r.Offset < expected {
			continue // re-fetched after a seek; already applied
		}
		if r.Offset > expected {
			// Offsets of bursar.commands are contiguous (no transactions, no
			// compaction), so a gap means this fetch came from an earlier
			// consumption of the partition (it was dropped and acquired again
			// and the client's cursor had not moved yet). Applying it would
			// skip the records in between: drop the rest and seek back.
			e.m.fetchGaps.Inc()
			e.log.Warn("fetch does not continue where the partition stands; seeking back", "partition", p.id, "offset", r.Offset, "expected", expected)
			e.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{kafkalog.TopicCommands: {p.id: {Epoch: -1, Offset: expected}}})
			break
		}
		if ledger.IsBarrier(r.Value) {
			expected++
			f.last = r.Offset
			p.takeBarrier(&f, r)
			continue
		}
		c, err := ledger.DecodeCommand(r.Value)
		if err != nil {
			expected++
			f.last = r.Offset
			f.dead = append(f.dead, r)
			f.deadWhy = append(f.deadWhy, err.Error())
			continue
		}
		rt, known := p.routesFor(kafkalog.SlotMapOf(r))
		if !known {
			expected++
			f.last = r.Offset
			f.dead = append(f.dead, r)
			f.deadWhy = append(f.deadWhy, fmt.Sprintf("routed under slot map version %d, which PostgreSQL does not hold (newest %d)", kafkalog.SlotMapOf(r), rt.Slots.Version))
			continue
		}
		route, to := p.route(rt, ledger.SlotOf(c.AccountID))
		if route == ledger.RouteHold {
			p.holdAt, p.holdVer, p.holdGroup = r.Offset, rt.Slots.Version, rt.Mig.GroupOf(ledger.SlotOf(c.AccountID))
			p.holdSlots = rt.Mig.Groups()[p.holdGroup].Slots
			f.hold = true
			break
		}
		expected++
		f.last = r.Offset
		if route == ledger.RouteForward {
			f.forwards = append(f.forwards, p.forward(r, to, rt))
			continue
		}
		f.cmds = append(f.cmds, &c)
		f.offs = append(f.offs, r.Offset)
	}
	return f
}

// routesFor returns the routes to decide a record by: the newest this
// node has, read again from PostgreSQL first when the record was routed
// under a newer map than they hold (its ingress saw the map first). It
// starts a fresh barrier set when the migration changed.
//
// ok is false when PostgreSQL answers but holds no such map: the record's
// header is wrong (maps are stored before anything is routed by them),
// and the caller dead-letters it. While PostgreSQL does not answer, it
// retries: deciding by an older map could apply a record that belongs to
// another partition now.
func (p *partition) routesFor(version int64) (rt *Routes, ok bool) {
	e := p.e
	if version > e.routing.Load().Slots.Version && e.routing.store != nil {
		retry.Do(e.ctx, retry.Policy{OnRetry: func(err error, _ time.Duration) { //nolint:errcheck // ends only with e.ctx
			e.m.storageErrors.Inc()
			e.log.Warn("a record names a newer slot map; reading it failed, retrying", "partition", p.id, "version", version, "err", err)
		}}, e.routing.Refresh)
	}
	rt = e.routing.Load()
	ok = version <= rt.Slots.Version
	if rt.Slots.Version != p.routes.Slots.Version {
		p.passed.Store(nil) // another migration: none of its barriers yet
	}
	p.routes = rt
	return rt, ok
}

// route decides what this partition does with a record of slot under rt,
// and where a forwarded record goes.
func (p *partition) route(rt *Routes, slot int) (ledger.Route, int32) {
	if rt.Mig == nil {
		if q := rt.Slots.PartitionOf(slot); q != p.id {
			return ledger.RouteForward, q
		}
		return ledger.RouteApply, p.id
	}
	barrier := func(g int) bool { return p.passedBarrier(rt.Slots.Version, g) || rt.Handed(g) }
	return rt.Mig.RouteOf(p.id, slot, barrier, rt.Handed), rt.Mig.Target(slot)
}

// forward is record r appended to partition to: the same command, with the
// slot map version it is now routed under.
func (p *partition) forward(r *kgo.Record, to int32, rt *Routes) *kgo.Record {
	p.e.m.forwarded.Inc()
	return &kgo.Record{
		Topic: kafkalog.TopicCommands, Partition: to, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
		Headers: []kgo.RecordHeader{kafkalog.SlotMapHeader(rt.Slots.Version)},
	}
}

// takeBarrier notes a barrier record: from it on, this partition forwards
// the group's records, and the flush that passes it hands the group over.
// A repeat (the driver appended it again after a crash), a barrier of a
// group this partition does not give, or of another migration is ignored.
func (p *partition) takeBarrier(f *fetched, r *kgo.Record) {
	e := p.e
	b, err := ledger.DecodeBarrier(r.Value)
	if err != nil {
		f.dead = append(f.dead, r)
		f.deadWhy = append(f.deadWhy, err.Error())
		return
	}
	rt, known := p.routesFor(b.Version)
	if !known {
		f.dead = append(f.dead, r)
		f.deadWhy = append(f.deadWhy, fmt.Sprintf("barrier of slot map version %d, which PostgreSQL does not hold (newest %d)", b.Version, rt.Slots.Version))
		return
	}
	if rt.Mig == nil || rt.Slots.Version != b.Version || b.Group >= len(rt.Mig.Groups()) || rt.Mig.Groups()[b.Group].From != p.id || rt.Handed(b.Group) {
		e.m.barriers.WithLabelValues("ignored").Inc()
		return
	}
	if p.passedBarrier(b.Version, b.Group) {
		e.m.barriers.WithLabelValues("ignored").Inc()
		return
	}
	e.m.barriers.WithLabelValues("taken").Inc()
	groups := map[int]bool{b.Group: true}
	if pb := p.passed.Load(); pb != nil && pb.version == b.Version {
		for g := range pb.groups {
			groups[g] = true
		}
	}
	p.passed.Store(&passedBarriers{version: b.Version, groups: groups})
	mv := rt.Mig.Groups()[b.Group]
	f.handovers = append(f.handovers, storage.Handover{Version: b.Version, Group: b.Group, From: mv.From, To: mv.To, BarrierOffset: r.Offset, Slots: mv.Slots})
	e.log.Info("barrier applied: forwarding the group's records from here on", "partition", p.id, "offset", r.Offset, "slot_map_version", b.Version, "group", b.Group, "to", mv.To, "slots", len(mv.Slots))
}

// beginHold stops consuming at holdAt: the record there belongs to a group
// moving to this partition that is not handed over yet.
func (p *partition) beginHold() {
	e := p.e
	e.mu.Lock()
	if e.parts[p.id] == p && !p.stopped.Load() {
		e.client.RemoveConsumePartitions(map[string][]int32{kafkalog.TopicCommands: {p.id}})
	}
	e.mu.Unlock()
	p.heldCaughtUp.Store(p.holdAt >= p.end)
	p.held.Store(true)
	p.holdSince = time.Now()
	e.log.Info("holding until a moving group is handed over", "partition", p.id, "offset", p.holdAt, "slot_map_version", p.holdVer, "group", p.holdGroup)
	p.tryResume()
}

// tryResume ends a hold once its group is handed over (or its migration
// ended): the stale actors of the group's accounts go, and consumption
// starts again at the held record.
func (p *partition) tryResume() {
	if !p.held.Load() {
		return
	}
	e := p.e
	rt := e.routing.Load()
	if rt.Slots.Version == p.holdVer && !rt.Handed(p.holdGroup) {
		return
	}
	p.dropResidents(p.holdSlots)
	e.mu.Lock()
	if e.parts[p.id] == p && !p.stopped.Load() && !p.quitting() {
		e.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{
			kafkalog.TopicCommands: {p.id: kgo.NewOffset().At(p.holdAt)},
		})
	}
	e.mu.Unlock()
	p.held.Store(false)
	wait := time.Since(p.holdSince)
	e.m.barrierWait.Observe(wait.Seconds())
	e.log.Info("hold ended: the group is handed over", "partition", p.id, "offset", p.holdAt, "slot_map_version", p.holdVer, "group", p.holdGroup, "waited", wait)
}

// quitting reports whether the worker was told to end (Release, stop).
func (p *partition) quitting() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}

// dropResidents stops the actors of the accounts in slots: their state
// moved to or from another partition, and PostgreSQL has the newest.
func (p *partition) dropResidents(slots []int) {
	in := make(map[int]bool, len(slots))
	for _, s := range slots {
		in[s] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.residents {
		if in[ledger.SlotOf(id)] {
			p.stopActor(id, r)
		}
	}
}

func (p *partition) observeFetched(cmds []*ledger.Command, now time.Time) {
	st := p.e.cfg.Stages
	if st == nil {
		return
	}
	for _, c := range cmds {
		if c.ReplyNode == "" {
			continue // not a client's command (nobody waits on it)
		}
		switch c.Kind {
		case ledger.KindTransferCredit:
			st.Since(StageLegFetched, c.TimestampUs, now)
		case ledger.KindTransferRefund:
		default:
			st.Since(StageFetched, c.TimestampUs, now)
		}
	}
}

// spawnMissing loads every account the batch touches that has no actor yet,
// in one round trip, and spawns their actors. False when the engine stops
// first.
func (p *partition) spawnMissing(cmds []*ledger.Command, idx [][]int32) bool {
	e := p.e
	p.mu.RLock()
	var missing []uuid.UUID
	for _, ix := range idx {
		if id := cmds[ix[0]].AccountID; p.residents[id] == nil {
			missing = append(missing, id)
		}
	}
	p.mu.RUnlock()
	if len(missing) == 0 {
		return true
	}
	loaded, ok := p.load(missing, cmds[0].TimestampUs)
	if !ok {
		return false
	}
	p.mu.Lock()
	for id, acc := range loaded {
		pid := e.system.Root.Spawn(actors.Props(e.actors, acc))
		p.residents[id] = &resident{pid: pid, lastOffset: -1}
	}
	e.m.resident.Add(float64(len(loaded)))
	p.mu.Unlock()
	return true
}

// dispatch sends each account's actor one message with its commands in log
// order and waits for the whole batch: effects are committed in log order,
// so the batch's offset is final only when all of it is applied. False
// when an actor could not apply (the engine stops mid-lookup).
func (p *partition) dispatch(cmds []*ledger.Command, idx [][]int32) ([]actors.Applied, bool) {
	e := p.e
	outs := make([]actors.Applied, len(cmds))
	var wg sync.WaitGroup
	wg.Add(len(idx))
	p.mu.RLock()
	for _, ix := range idx {
		pid := p.residents[cmds[ix[0]].AccountID].pid
		e.system.Root.Send(pid, &actors.Apply{Cmds: cmds, Outs: outs, Idx: ix, Done: &wg})
	}
	p.mu.RUnlock()
	wg.Wait()
	for i := range outs {
		if outs[i].Err != nil {
			return nil, false
		}
	}
	return outs, true
}

// advance takes what the applied batch caused: the records to produce
// (credit legs, refunds, events, dead letters) and, with ack=applied, the
// answers go to the emitter (the one place that answers: once the batch
// is durable); the rows, account states and, with ack=flushed, the
// answers go to the partition's buffer, which moves to the batch's end.
func (p *partition) advance(f *fetched, idx [][]int32, outs []actors.Applied) {
	e := p.e
	if e.client.BufferedProduceRecords() >= int64(e.cfg.MaxBufferedRecords) {
		e.m.bufferFull.Inc() // the produces below will wait for room
	}
	now := time.Now()
	replyNow := e.cfg.Ack == AckApplied
	caused := make([]*kgo.Record, 0, 2*len(f.cmds)+len(f.dead))
	var answers []reply
	p.mu.Lock()
	b := p.buf
	for i := range outs {
		o := &outs[i]
		c := f.cmds[i]
		res := &o.Effect.Result
		switch {
		case res.Replayed:
		case !res.Unrecorded:
			b.rows = append(b.rows, storage.TxRow{Cmd: c, Result: *res, Partition: p.id, Offset: f.offs[i]})
		case res.Tombstone:
			b.tombstones = append(b.tombstones, storage.TxRow{Cmd: c, Result: *res, Partition: p.id, Offset: f.offs[i]})
		}
		if o.Account != nil {
			b.accounts[c.AccountID] = o.Account
		}
		if o.Effect.Emit != nil {
			caused = append(caused, p.legRecord(o.Effect.Emit))
			e.m.emitted.Inc()
		}
		if !e.cfg.DisableEvents {
			n := len(caused)
			caused = eventRecords(caused, c, res, p.id, p.id%e.cfg.EventPartitions, f.offs[i])
			e.m.events.Add(float64(len(caused) - n))
		}
		if c.ReplyNode != "" && actors.Answers(c, res) {
			if replyNow {
				answers = append(answers, reply{node: c.ReplyNode, seq: c.ReplySeq, result: *res})
			} else {
				b.replies = append(b.replies, reply{node: c.ReplyNode, seq: c.ReplySeq, result: *res})
			}
		}
		e.m.applied.WithLabelValues(c.Kind.String(), res.Status.String()).Inc()
		if c.ReplyNode != "" {
			if c.Kind == ledger.KindTransferCredit {
				e.cfg.Stages.Since(StageLegApplied, c.TimestampUs, now)
			} else if c.Kind != ledger.KindTransferRefund {
				e.cfg.Stages.Since(StageApplied, c.TimestampUs, now)
			}
		}
	}
	for _, ix := range idx { // each actor's newest command
		k := ix[len(ix)-1]
		r := p.residents[f.cmds[k].AccountID]
		r.lastOffset, r.lastUsed = f.offs[k], now
	}
	for i, r := range f.dead {
		caused = append(caused, p.deadLetter(r, f.deadWhy[i]))
	}
	caused = append(caused, f.forwards...)
	b.handovers = append(b.handovers, f.handovers...)
	if len(caused) > 0 || len(answers) > 0 {
		// Before the buffer can be taken: its flush waits for these.
		b.emits.Add(len(caused))
		e.emitter.send(emission{b: b, recs: caused, answers: answers, partition: p.id, last: f.last})
	}
	b.next = f.last + 1
	p.applied = f.last + 1
	if !p.ready.Load() && p.applied >= p.end {
		p.ready.Store(true)
		e.log.Info("partition recovered", "partition", p.id, "offset", p.applied)
	}
	if b.size() >= e.cfg.FlushRows {
		e.kickFlush()
	}
	for p.buf.size() >= e.cfg.MaxUnflushedRows && e.ctx.Err() == nil && !p.stopped.Load() {
		p.atLimit.Store(true)
		e.m.backpressure.Inc()
		e.kickFlush()
		p.space.Wait()
	}
	p.atLimit.Store(false)
	p.mu.Unlock()
}

// groupByAccount returns, per account of cmds in order of first
// appearance, the positions of its commands in log order; the lists share
// one backing array.
func groupByAccount(cmds []*ledger.Command) [][]int32 {
	group := make([]int32, len(cmds)) // the group of each command
	seen := make(map[uuid.UUID]int32, len(cmds))
	var sizes []int32
	for i, c := range cmds {
		g, ok := seen[c.AccountID]
		if !ok {
			g = int32(len(sizes))
			seen[c.AccountID] = g
			sizes = append(sizes, 0)
		}
		group[i] = g
		sizes[g]++
	}
	flat := make([]int32, len(cmds))
	idx := make([][]int32, len(sizes))
	at := int32(0)
	for g, n := range sizes {
		idx[g] = flat[at : at : at+n]
		at += n
	}
	for i, g := range group {
		idx[g] = append(idx[g], int32(i))
	}
	return idx
}

// full reports whether the worker waits at MaxUnflushedRows: it consumes
// nothing more until a flush lands. It takes no lock (the ingress asks on
// every write, and the worker holds p.mu across a batch).
func (p *partition) full() bool { return p.atLimit.Load() }

// load reads accounts from storage, retrying until it succeeds or the
// engine stops: the partition must not skip commands.
func (p *partition) load(ids []uuid.UUID, nowUs int64) (map[uuid.UUID]*ledger.Account, bool) {
	e := p.e
	var accs map[uuid.UUID]*ledger.Account
	defer p.loadWaiting.Store(false)
	err := retry.Do(e.ctx, retry.Policy{Fatal: fatalStorageError, OnRetry: func(err error, _ time.Duration) {
		p.loadWaiting.Store(true) // the partition cannot go on without PostgreSQL
		e.m.storageErrors.Inc()
		e.log.Warn("loading accounts failed; retrying", "partition", p.id, "err", err)
	}}, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// Keys as far back as the index counts them as needed: the window
		// plus the clock skew a later command's timestamp may step back by.
		var err error
		accs, err = e.store.LoadAccounts(ctx, ids, nowUs-ledger.IdempotencyWindowUs-ledger.ClockSkewUs, e.cfg.KeysPerAccount)
		return err
	})
	if err != nil {
		if e.ctx.Err() == nil {
			e.m.storageErrors.Inc()
			e.fail(fmt.Errorf("engine: loading accounts of partition %d: %w", p.id, err))
		}
		return nil, false
	}
	e.m.loaded.Add(float64(len(ids)))
	return accs, true
}

// legRecord is the record of a credit leg or refund an effect caused, to
// the partition of its account (rule 1: even when it is this partition).
func (p *partition) legRecord(c *ledger.Command) *kgo.Record {
	rt := p.e.routing.Load()
	return &kgo.Record{
		Topic:     kafkalog.TopicCommands,
		Partition: rt.PartitionOf(c.AccountID),
		Key:       c.AccountID[:],
		Value:     c.AppendBinary(nil),
		Timestamp: time.UnixMicro(c.TimestampUs),
		Headers:   []kgo.RecordHeader{kafkalog.SlotMapHeader(rt.Slots.Version)},
	}
}

// deadLetter is the dead-letter record of an undecodable or misrouted
// record, with the reason: one bad record must not stop its partition.
func (p *partition) deadLetter(r *kgo.Record, why string) *kgo.Record {
	p.e.m.deadLetters.Inc()
	p.e.log.Warn("dead-lettering record", "partition", p.id, "offset", r.Offset, "reason", why)
	return &kgo.Record{
		Topic: kafkalog.TopicDLQ, Partition: 0, Key: r.Key, Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "reason", Value: []byte(why)},
			{Key: "source_partition", Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
			{Key: "source_offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
}

// passivate stops actors that are idle and fully flushed, and the least
// recently used flushed ones when the partition holds more than its share of
// MaxResidentActors.
func (p *partition) passivate(now time.Time) {
	e := p.e
	// Engine.mu before partition.mu (the lock order): the share first.
	e.mu.RLock()
	share := max(1, e.cfg.MaxResidentActors/max(1, len(e.parts)))
	e.mu.RUnlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := 0
	for id, r := range p.residents {
		if r.lastOffset < p.committed && now.Sub(r.lastUsed) >= e.cfg.IdleTimeout {
			p.stopActor(id, r)
			idle++
		}
	}
	e.m.passivations.WithLabelValues("idle").Add(float64(idle))
	if len(p.residents) <= share {
		return
	}
	type cand struct {
		id uuid.UUID
		r  *resident
	}
	var cands []cand
	for id, r := range p.residents {
		if r.lastOffset < p.committed {
			cands = append(cands, cand{id, r})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.r.lastUsed.Compare(b.r.lastUsed) })
	n := 0
	for _, c := range cands {
		if len(p.residents) <= share {
			break
		}
		p.stopActor(c.id, c.r)
		n++
	}
	e.m.passivations.WithLabelValues("limit").Add(float64(n))
}

// stopActor removes an actor. Poison is a user message, so reads already in
// its mailbox are answered first. Callers hold p.mu.
func (p *partition) stopActor(id uuid.UUID, r *resident) {
	delete(p.residents, id)
	p.e.system.Root.Poison(r.pid)
	p.e.m.resident.Dec()
}

// notifyLocked wakes whoever waits on p.changed. Callers hold p.mu.
func (p *partition) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// halt ends the worker after the batch in hand; the partition's buffer is
// still flushed (a graceful release).
func (p *partition) halt() { p.quitOnce.Do(func() { close(p.quit) }) }

// stop ends the partition's processing at once (fenced, or released) and
// excludes it from flushes.
func (p *partition) stop() {
	if p.stopped.Swap(true) {
		return
	}
	p.halt()
	p.mu.Lock()
	p.space.Broadcast() // wake a worker waiting at the unflushed limit
	p.notifyLocked()
	p.mu.Unlock()
	// The actors go once the worker has ended: it may be dispatching a
	// batch right now, and a command sent after an actor's poison pill
	// would never be applied (the worker would wait for it forever).
	go func() {
		<-p.done
		p.mu.Lock()
		for id, r := range p.residents {
			p.stopActor(id, r)
		}
		p.mu.Unlock()
	}()
}
