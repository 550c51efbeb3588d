package engine

import (
	"context"
	"errors"
	"fmt"
	"github.com/bursar/bursar/retry"
	"slices"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

// taken is what a flush took from one partition: its buffers in log order.
// Work that failed to commit is kept (Engine.unflushed) and goes first into
// the next flush; it is never dropped, or the next mark would skip its rows.
type taken struct {
	p    *partition
	bufs []*buffer
	// committed counts the leading bufs PostgreSQL already holds: a commit
	// whose answer was lost (the connection died in COMMIT) did land. Their
	// rows are left out of the batch; the rest goes as usual.
	committed int
}

func (t *taken) next() int64 { return t.bufs[len(t.bufs)-1].next }

// flushAll takes every partition's buffer, adds it to the work earlier
// flushes could not commit, and writes it all in one transaction, retrying
// what may succeed later. While it runs, partitions fill fresh buffers. Only
// the flusher goroutine calls it (and Stop, once the flusher has ended).
// The steps: take the buffers, wait until what they caused is in the log
// and the log is durable, commit, then advance the partitions.
func (e *Engine) flushAll(ctx context.Context, final bool) error {
	// Work an earlier flush could not commit may have committed after all
	// (an error in COMMIT tells nothing): commit checks before writing it.
	carried := len(e.unflushed) > 0
	work := e.take()
	if len(work) == 0 {
		return nil
	}
	start := time.Now()
	work, held, err := e.awaitLog(ctx, work)
	if err != nil {
		e.unflushed = append(work, held...)
		return err
	}
	if len(work) == 0 {
		e.unflushed = held
		return nil // every partition in it was restarted or is held
	}
	work, err = e.commit(ctx, work, final, carried)
	e.commitFailing.Store(err != nil)
	if err != nil {
		e.unflushed = append(work, held...)
		return err
	}
	e.unflushed = held
	e.m.flushSeconds.Observe(time.Since(start).Seconds())
	e.afterCommit(work)
	return nil
}

// take swaps every live partition's buffer for a fresh one and returns
// them after the work earlier flushes could not commit, per partition in
// log order.
func (e *Engine) take() []taken {
	e.mu.RLock()
	parts := make([]*partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.RUnlock()

	work := e.unflushed
	e.unflushed = nil
	work = slices.DeleteFunc(work, func(t taken) bool { return t.p.stopped.Load() })
	for _, p := range parts {
		if p.stopped.Load() {
			continue
		}
		p.mu.Lock()
		b := p.buf
		if b.size() > 0 || b.next > p.committed {
			p.buf = newBuffer(b.next)
			p.flushing = append(p.flushing, b)
			k := slices.IndexFunc(work, func(t taken) bool { return t.p == p })
			if k < 0 {
				work = append(work, taken{p: p})
				k = len(work) - 1
			}
			work[k].bufs = append(work[k].bufs, b)
		}
		p.space.Broadcast()
		p.mu.Unlock()
	}
	return work
}

// awaitLog returns once every record the work's commands caused is
// acknowledged and, with LogDurable, the log holding them and the commands
// is on disk (rule 3), with the work that may commit. A partition whose
// caused records wait in the reemitter (the log refused them for now) is
// held: it goes back for a later flush and the others commit without it.
// A partition whose caused records the log refused for good leaves the
// work and is restarted (restartPartition): its offset must not pass
// those commands, and a replay from it produces the records again. A
// failed sync stops the engine: acknowledged records may be lost.
func (e *Engine) awaitLog(ctx context.Context, work []taken) (ready, held []taken, err error) {
	for _, t := range work {
		hold := false
		for _, b := range t.bufs {
			if hold, err = e.awaitEmits(ctx, b); err != nil {
				return work, nil, err
			}
			if hold {
				break
			}
			if b.emitErr != nil {
				err := fmt.Errorf("engine: partition %d: producing caused records: %w", t.p.id, b.emitErr)
				if e.failed.Load() || e.ctx.Err() != nil {
					// The log's durability failed (emitter.round), or the
					// engine is stopping: the flush fails, and the next
					// start replays.
					return work, nil, err
				}
				e.restartPartition(t.p, err)
				break
			}
		}
		switch {
		case t.p.stopped.Load():
		case hold:
			held = append(held, t)
		default:
			ready = append(ready, t)
		}
	}
	// The applied commands themselves, too, when the broker acknowledges
	// before they are on disk.
	if e.cfg.LogDurable != nil && len(ready) > 0 {
		if err := e.cfg.LogDurable(ctx); err != nil {
			err = fmt.Errorf("engine: making the log durable: %w", err)
			if ctx.Err() == nil {
				e.fail(err)
			}
			return append(ready, held...), nil, err
		}
	}
	return ready, held, nil
}

// awaitEmits waits until every record b caused is acknowledged or given
// up, and reports hold when some wait in the reemitter instead.
func (e *Engine) awaitEmits(ctx context.Context, b *buffer) (hold bool, err error) {
	done := b.emitsDone()
	select {
	case <-done:
		return false, nil
	case <-ctx.Done():
		return false, fmt.Errorf("engine: waiting for produced records: %w", ctx.Err())
	case <-b.stuck:
		if b.reemitting.Load() > 0 {
			return true, nil
		}
	}
	// Produced again meanwhile: the rest is on its way.
	select {
	case <-done:
		return false, nil
	case <-ctx.Done():
		return false, fmt.Errorf("engine: waiting for produced records: %w", ctx.Err())
	}
}

// commit writes the work in one fenced PostgreSQL transaction, retrying
// what may succeed later. Partitions found fenced are dropped from the
// work (and stopped); the work that remains is returned, committed when
// the error is nil.
func (e *Engine) commit(ctx context.Context, work []taken, final, carried bool) ([]taken, error) {
	uncertain := carried
	err := retry.Do(ctx, retry.Policy{Min: 20 * time.Millisecond, Fatal: fatalStorageError, OnRetry: func(err error, _ time.Duration) {
		e.commitFailing.Store(true) // cleared by the commit that lands (flushAll)
		e.m.storageErrors.Inc()
		e.log.Warn("flush failed; retrying", "err", err, "final", final)
	}}, func(ctx context.Context) error {
		if uncertain {
			if err := e.findCommitted(ctx, work); err != nil {
				return err
			}
		}
		uncertain = true // a failure from here on may be a lost COMMIT answer
		for {
			batch := buildBatch(work)
			err := e.store.Flush(ctx, batch)
			if err == nil {
				e.m.flushedRows.Add(float64(batch.Len()))
				return nil
			}
			var fe *storage.FencedError
			if !errors.As(err, &fe) {
				return err
			}
			// Fenced partitions leave the work; the rest is tried again at
			// once.
			work = slices.DeleteFunc(work, func(t taken) bool {
				if slices.Contains(fe.Partitions, t.p.id) {
					e.fence(t.p)
					return true
				}
				return false
			})
			if len(work) == 0 {
				return nil
			}
		}
	})
	switch {
	case err == nil:
		return work, nil
	case ctx.Err() != nil:
		return work, fmt.Errorf("engine: flush: %w (last error: %v)", ctx.Err(), err)
	default:
		e.m.storageErrors.Inc()
		e.fail(err)
		return work, err
	}
}

// findCommitted sets each work item's committed count from the offsets
// PostgreSQL holds: a buffer whose next offset the partition's committed
// offset has reached (under the same epoch) is in PostgreSQL already.
func (e *Engine) findCommitted(ctx context.Context, work []taken) error {
	rows, err := e.store.Partitions(ctx)
	if err != nil {
		return err
	}
	stored := make(map[int32]storage.PartitionRow, len(rows))
	for _, r := range rows {
		stored[r.Partition] = r
	}
	for i := range work {
		t := &work[i]
		r, ok := stored[t.p.id]
		t.committed = 0
		if !ok || r.Epoch != t.p.epoch {
			continue
		}
		for t.committed < len(t.bufs) && t.bufs[t.committed].next <= r.NextOffset {
			t.committed++
		}
	}
	return nil
}

// fatalStorageError is the one place the engine decides that a PostgreSQL
// error will not go away by retrying (storage.Retriable: a fenced flush,
// a broken invariant, an integrity violation): the engine stops rather
// than loop on it. Everything else (PostgreSQL down, timeouts) is waited
// out, the commands staying in Kafka.
func fatalStorageError(err error) bool { return !storage.Retriable(err) }

// afterCommit moves each committed partition's offset and delivers the answers
// held back for the commit (ack=flushed).
func (e *Engine) afterCommit(work []taken) {
	at := time.Now()
	for _, t := range work {
		t.p.mu.Lock()
		t.p.committed = t.next()
		// Every buffer taken so far is in this commit (work keeps them all).
		t.p.flushing = nil
		t.p.notifyLocked()
		t.p.mu.Unlock()
		for _, b := range t.bufs {
			if e.cfg.AccountsCommitted != nil && len(b.accounts) > 0 {
				e.cfg.AccountsCommitted(b.accounts, at)
			}
			for i := range b.replies {
				r := &b.replies[i]
				e.replies.Deliver(r.node, r.seq, &r.result)
			}
			for _, h := range b.handovers {
				// PostgreSQL has the group's accounts as this partition
				// left them: the new partition may apply from here on, so
				// this node reads them there, and their actors here go.
				e.routing.MarkHanded(h.Version, h.Group)
				e.m.slotsMoved.Add(float64(len(h.Slots)))
				t.p.dropResidents(h.Slots)
				e.log.Info("slots handed over", "partition", t.p.id, "to", h.To, "slots", len(h.Slots), "slot_map_version", h.Version, "group", h.Group, "barrier_offset", h.BarrierOffset)
			}
		}
	}
}

func buildBatch(work []taken) *storage.Batch {
	n := 0
	for _, t := range work {
		for _, b := range t.bufs[t.committed:] {
			n += len(b.rows)
		}
	}
	batch := &storage.Batch{Rows: make([]storage.TxRow, 0, n), Accounts: make(map[uuid.UUID]*ledger.Account)}
	for _, t := range work {
		for _, b := range t.bufs[t.committed:] { // in log order: later account states win
			batch.Rows = append(batch.Rows, b.rows...)
			batch.Tombstones = append(batch.Tombstones, b.tombstones...)
			for id, a := range b.accounts {
				batch.Accounts[id] = a
			}
			batch.Handovers = append(batch.Handovers, b.handovers...)
		}
		batch.Marks = append(batch.Marks, storage.PartitionMark{Partition: t.p.id, Epoch: t.p.epoch, NextOffset: t.next()})
	}
	return batch
}

// fence drops a partition another node has acquired: stop its worker and
// actors, stop fetching it, forget its unflushed effects (the new owner
// replays them from the log).
func (e *Engine) fence(p *partition) {
	if p.stopped.Load() {
		return // already dropped (the coordinator and a flush can both see it)
	}
	e.m.fenced.Inc()
	e.log.Warn("fenced out of partition; stopping it", "partition", p.id, "epoch", p.epoch)
	e.drop(p)
}

// restartPartition drops a partition whose caused records (credit legs,
// refunds, events) the log refused, for example because the broker's disk
// is full: its unflushed effects are forgotten and its offset stays before
// the commands that caused them. The coordinator acquires it again (a new
// epoch, a replay from the committed offset, which produces the records
// again; their consumers dedupe them, rule 4) once restartBackoff has
// passed, so a log that keeps refusing costs one attempt per backoff, not
// a spinning loop, and the node goes on serving its other partitions.
func (e *Engine) restartPartition(p *partition, err error) {
	if p.stopped.Load() {
		return
	}
	e.m.restarts.Inc()
	e.mu.Lock()
	r := e.restarts[p.id]
	if time.Since(r.at) > restartForget {
		r.n = 0
	}
	r.at, r.wait = time.Now(), min(restartBackoffMin<<min(r.n, 8), restartBackoffMax)
	r.n++
	e.restarts[p.id] = r
	e.mu.Unlock()
	if r.n > restartsMax {
		// A replay produces the same records byte for byte: one the log
		// rejects for good (too large, not authorized) is rejected every
		// time. Restarting for ever would hide it; stop loudly instead.
		e.fail(fmt.Errorf("engine: partition %d restarted %d times in a row, each time because the log refused records its commands caused; the last: %w", p.id, restartsMax, err))
		e.drop(p) // its work must not commit either way
		return
	}
	e.log.Error("the log refused records this partition's commands caused; restarting the partition from its committed offset",
		"partition", p.id, "epoch", p.epoch, "err", err, "retry_in", r.wait)
	e.drop(p)
}

// restart is the backoff state of a partition restartPartition dropped.
type restart struct {
	at   time.Time
	wait time.Duration
	n    int // restarts in a row, each less than restartForget after the last
}

const (
	restartBackoffMin = 250 * time.Millisecond
	restartBackoffMax = 10 * time.Second
	restartForget     = time.Minute
	// restartsMax is how many restarts in a row (each less than
	// restartForget after the last) a partition gets before the engine
	// stops on it.
	restartsMax = 5
)

// restartDue reports whether partition id may be acquired now: it was not
// restarted, or its backoff has passed.
func (e *Engine) restartDue(id int32) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r, ok := e.restarts[id]
	return !ok || time.Since(r.at) >= r.wait
}

// drop stops partition p, stops fetching it and forgets its unflushed
// effects.
func (e *Engine) drop(p *partition) {
	e.mu.Lock()
	current := e.parts[p.id] == p
	if current {
		delete(e.parts, p.id)
		// Only while this object is the partition's current one: once the
		// partition is acquired again, removing it would stop the new
		// consumption, and its replay would never finish.
		e.client.RemoveConsumePartitions(map[string][]int32{kafkalog.TopicCommands: {p.id}})
	}
	e.mu.Unlock()
	p.stop()
}
