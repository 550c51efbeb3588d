package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

var errMisrouted = errors.New("engine: record's account hashes to another partition")

// taken is what a flush took from one partition: its buffers in log order.
// Work that failed to commit is kept (Engine.unflushed) and goes first into
// the next flush; it is never dropped, or the next mark would skip its rows.
type taken struct {
	p    *partition
	bufs []*buffer
}

func (t *taken) next() int64 { return t.bufs[len(t.bufs)-1].next }

// flushAll takes every partition's buffer, adds it to the work earlier
// flushes could not commit, and writes it all in one transaction, retrying
// what may succeed later. While it runs, partitions fill fresh buffers. Only
// the flusher goroutine calls it (and Stop, once the flusher has ended).
func (e *Engine) flushAll(ctx context.Context, final bool) error {
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
	if len(work) == 0 {
		return nil
	}
	start := time.Now()
	keep := func(err error) error {
		e.unflushed = work
		return err
	}

	// Rule 3: every record these effects caused must be durable before
	// their offsets commit.
	for _, t := range work {
		for _, b := range t.bufs {
			done := make(chan struct{})
			go func() { b.emits.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				return keep(fmt.Errorf("engine: waiting for produced records: %w", ctx.Err()))
			}
			if b.emitErr != nil {
				err := fmt.Errorf("engine: partition %d: producing caused records: %w", t.p.id, b.emitErr)
				e.fail(err)
				return keep(err)
			}
		}
	}

	// The applied commands themselves, too, when the broker acknowledges
	// before they are on disk.
	if e.cfg.LogDurable != nil {
		if err := e.cfg.LogDurable(ctx); err != nil {
			err = fmt.Errorf("engine: making the log durable: %w", err)
			if ctx.Err() == nil {
				e.fail(err)
			}
			return keep(err)
		}
	}

	backoff := 20 * time.Millisecond
	for {
		batch := buildBatch(work)
		err := e.store.Flush(ctx, batch)
		if err == nil {
			e.m.flushSeconds.Observe(time.Since(start).Seconds())
			e.m.flushedRows.Add(float64(batch.Len()))
			break
		}
		var fe *storage.FencedError
		if errors.As(err, &fe) {
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
			continue
		}
		e.m.storageErrors.Inc()
		if !storage.Retriable(err) {
			e.fail(err)
			return keep(err)
		}
		e.log.Warn("flush failed; retrying", "err", err, "final", final)
		select {
		case <-ctx.Done():
			return keep(fmt.Errorf("engine: flush: %w (last error: %v)", ctx.Err(), err))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}

	for _, t := range work {
		t.p.mu.Lock()
		t.p.committed = t.next()
		t.p.notifyLocked()
		t.p.mu.Unlock()
		for _, b := range t.bufs {
			for i := range b.replies {
				r := &b.replies[i]
				e.replies.Deliver(r.node, r.seq, &r.result)
			}
		}
	}
	return nil
}

func buildBatch(work []taken) *storage.Batch {
	n := 0
	for _, t := range work {
		for _, b := range t.bufs {
			n += len(b.rows)
		}
	}
	batch := &storage.Batch{Rows: make([]storage.TxRow, 0, n), Accounts: make(map[uuid.UUID]*ledger.Account)}
	for _, t := range work {
		for _, b := range t.bufs { // in log order: later account states win
			batch.Rows = append(batch.Rows, b.rows...)
			batch.Tombstones = append(batch.Tombstones, b.tombstones...)
			for id, a := range b.accounts {
				batch.Accounts[id] = a
			}
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
