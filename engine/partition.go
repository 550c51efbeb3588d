package engine

import (
	"context"
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
	next       int64 // everything before this offset is in the buffer or flushed

	emits   sync.WaitGroup // records produced for these effects, not yet acknowledged
	emitMu  sync.Mutex
	emitErr error
}

func newBuffer(next int64) *buffer {
	return &buffer{accounts: make(map[uuid.UUID]*ledger.Account), next: next}
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
	e     *Engine
	id    int32
	epoch int64
	end   int64 // log end when acquired; ready once applied reaches it

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
		select {
		case <-p.e.ctx.Done():
			return
		case <-p.quit:
			return
		case recs := <-p.in:
			p.process(recs)
		case <-sweep.C:
			p.passivate(time.Now())
		}
	}
}

// process applies one fetched batch of records in log order.
func (p *partition) process(recs []*kgo.Record) {
	e := p.e
	start := time.Now()
	cmds := make([]*ledger.Command, 0, len(recs))
	offs := make([]int64, 0, len(recs))
	var dead []*kgo.Record
	var deadWhy []string
	last := int64(-1)
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
		expected++
		last = r.Offset
		c, err := ledger.DecodeCommand(r.Value)
		if err == nil && e.slots.PartitionOfAccount(c.AccountID) != p.id {
			err = errMisrouted
		}
		if err != nil {
			dead = append(dead, r)
			deadWhy = append(deadWhy, err.Error())
			continue
		}
		cmds = append(cmds, &c)
		offs = append(offs, r.Offset)
	}
	if last < 0 {
		return
	}

	// The batch by account: each account's commands in log order.
	idx := groupByAccount(cmds)

	// Load every account this batch touches that has no actor yet, in one
	// round trip.
	p.mu.RLock()
	var missing []uuid.UUID
	for _, ix := range idx {
		if id := cmds[ix[0]].AccountID; p.residents[id] == nil {
			missing = append(missing, id)
		}
	}
	p.mu.RUnlock()
	if len(missing) > 0 {
		loaded, ok := p.load(missing, cmds[0].TimestampUs)
		if !ok {
			return // shutting down; nothing of this batch is committed
		}
		p.mu.Lock()
		for id, acc := range loaded {
			pid := e.system.Root.Spawn(actors.Props(e.actors, acc))
			p.residents[id] = &resident{pid: pid, lastOffset: -1}
		}
		e.m.resident.Add(float64(len(loaded)))
		p.mu.Unlock()
	}

	// Dispatch one message per account with its commands in log order,
	// then wait for the whole batch: effects are committed in log order,
	// so the batch's offset is final only when all of it is applied.
	outs := make([]actors.Applied, len(cmds))
	var wg sync.WaitGroup
	wg.Add(len(idx))
	replyNow := e.cfg.Ack == AckApplied
	p.mu.RLock()
	for _, ix := range idx {
		pid := p.residents[cmds[ix[0]].AccountID].pid
		e.system.Root.Send(pid, &actors.Apply{Cmds: cmds, Outs: outs, Idx: ix, Done: &wg, Reply: replyNow})
	}
	p.mu.RUnlock()
	wg.Wait()
	for i := range outs {
		if outs[i].Err != nil {
			return // only when the engine stops mid-lookup; replay redoes the batch
		}
	}

	if e.client.BufferedProduceRecords() >= int64(e.cfg.MaxBufferedRecords) {
		e.m.bufferFull.Inc() // the produces below will wait for room
	}
	now := time.Now()
	p.mu.Lock()
	b := p.buf
	for i := range outs {
		o := &outs[i]
		c := cmds[i]
		res := &o.Effect.Result
		switch {
		case res.Replayed:
		case !res.Unrecorded:
			b.rows = append(b.rows, storage.TxRow{Cmd: c, Result: *res, Partition: p.id, Offset: offs[i]})
		case res.Tombstone:
			b.tombstones = append(b.tombstones, storage.TxRow{Cmd: c, Result: *res, Partition: p.id, Offset: offs[i]})
		}
		if o.Account != nil {
			b.accounts[c.AccountID] = o.Account
		}
		if o.Effect.Emit != nil {
			p.emit(b, o.Effect.Emit)
		}
		if !e.cfg.DisableEvents {
			p.emitEvents(b, c, res, offs[i])
		}
		if !replyNow && c.ReplyNode != "" && actors.Answers(c, res) {
			b.replies = append(b.replies, reply{node: c.ReplyNode, seq: c.ReplySeq, result: *res})
		}
		e.m.applied.WithLabelValues(c.Kind.String(), res.Status.String()).Inc()
	}
	for _, ix := range idx { // each actor's newest command
		k := ix[len(ix)-1]
		r := p.residents[cmds[k].AccountID]
		r.lastOffset, r.lastUsed = offs[k], now
	}
	for i, r := range dead {
		p.deadLetter(b, r, deadWhy[i])
	}
	b.next = last + 1
	p.applied = last + 1
	if !p.ready.Load() && p.applied >= p.end {
		p.ready.Store(true)
		e.log.Info("partition recovered", "partition", p.id, "offset", p.applied)
	}
	if b.size() >= e.cfg.FlushRows {
		e.kickFlush()
	}
	for p.buf.size() >= e.cfg.MaxUnflushedRows && e.ctx.Err() == nil && !p.stopped.Load() {
		e.m.backpressure.Inc()
		e.kickFlush()
		p.space.Wait()
	}
	p.mu.Unlock()
	e.m.batchSeconds.Observe(time.Since(start).Seconds())
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

// load reads accounts from storage, retrying until it succeeds or the
// engine stops: the partition must not skip commands.
func (p *partition) load(ids []uuid.UUID, nowUs int64) (map[uuid.UUID]*ledger.Account, bool) {
	e := p.e
	backoff := 10 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		// Keys as far back as the index counts them as needed: the window
		// plus the clock skew a later command's timestamp may step back by.
		accs, err := e.store.LoadAccounts(ctx, ids, nowUs-ledger.IdempotencyWindowUs-ledger.ClockSkewUs, e.cfg.KeysPerAccount)
		cancel()
		if err == nil {
			e.m.loaded.Add(float64(len(ids)))
			return accs, true
		}
		e.m.storageErrors.Inc()
		e.log.Warn("loading accounts failed; retrying", "partition", p.id, "err", err)
		select {
		case <-e.ctx.Done():
			return nil, false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// emit produces a record an effect caused (a credit leg or a refund) to the
// partition of its account. The buffer's flush waits for its acknowledgement
// (rule 3: an offset commits only after every record it caused is durable).
func (p *partition) emit(b *buffer, c *ledger.Command) {
	rec := &kgo.Record{
		Topic:     kafkalog.TopicCommands,
		Partition: p.e.slots.PartitionOfAccount(c.AccountID),
		Key:       c.AccountID[:],
		Value:     c.AppendBinary(nil),
		Timestamp: time.UnixMicro(c.TimestampUs),
	}
	p.produce(b, rec)
	p.e.m.emitted.Inc()
}

// deadLetter sends an undecodable or misrouted record to the dead-letter
// topic with the reason, and moves on: one bad record must not stop its
// partition.
func (p *partition) deadLetter(b *buffer, r *kgo.Record, why string) {
	p.e.m.deadLetters.Inc()
	p.e.log.Warn("dead-lettering record", "partition", p.id, "offset", r.Offset, "reason", why)
	rec := &kgo.Record{
		Topic: kafkalog.TopicDLQ, Partition: 0, Key: r.Key, Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "reason", Value: []byte(why)},
			{Key: "source_partition", Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
			{Key: "source_offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
	p.produce(b, rec)
}

func (p *partition) produce(b *buffer, rec *kgo.Record) {
	b.emits.Add(1)
	// Not the engine context: records an applied batch caused must reach
	// Kafka even while the node shuts down, or the batch cannot commit.
	p.e.client.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			b.setEmitErr(err)
		}
		b.emits.Done()
	})
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
