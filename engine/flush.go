package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bursar/bursar/engine/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

var errMisrouted = errors.New("engine: record's account hashes to another partition")

// taken is a buffer a flush took from its partition.
type taken struct {
	p *partition
	b *buffer
}

// flushAll takes every partition's buffer and writes them in one
// transaction, retrying what may succeed later. While it runs, partitions
// fill fresh buffers (so each holds at most twice MaxUnflushedRows).
func (e *Engine) flushAll(ctx context.Context, final bool) error {
	e.mu.RLock()
	parts := make([]*partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.RUnlock()

	var work []taken
	for _, p := range parts {
		if p.stopped.Load() {
			continue
		}
		p.mu.Lock()
		b := p.buf
		if b.size() > 0 || b.next > p.committed {
			p.buf = newBuffer(b.next)
			work = append(work, taken{p, b})
		}
		p.space.Broadcast()
		p.mu.Unlock()
	}
	if len(work) == 0 {
		return nil
	}
	start := time.Now()

	// Rule 3: every record these effects caused must be durable before
	// their offsets commit.
	for _, t := range work {
		done := make(chan struct{})
		go func() { t.b.emits.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("engine: waiting for produced records: %w", ctx.Err())
		}
		if t.b.emitErr != nil {
			err := fmt.Errorf("engine: partition %d: producing caused records: %w", t.p.id, t.b.emitErr)
			e.fail(err)
			return err
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
			return err
		}
		e.log.Warn("flush failed; retrying", "err", err, "final", final)
		select {
		case <-ctx.Done():
			return fmt.Errorf("engine: flush: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}

	for _, t := range work {
		t.p.mu.Lock()
		t.p.committed = t.b.next
		t.p.mu.Unlock()
		for i := range t.b.replies {
			r := &t.b.replies[i]
			e.replies.Deliver(r.node, r.seq, &r.result)
		}
	}
	return nil
}

func buildBatch(work []taken) *storage.Batch {
	n := 0
	for _, t := range work {
		n += len(t.b.rows)
	}
	b := &storage.Batch{Rows: make([]storage.TxRow, 0, n), Accounts: make(map[uuid.UUID]*ledger.Account)}
	for _, t := range work {
		b.Rows = append(b.Rows, t.b.rows...)
		b.Tombstones = append(b.Tombstones, t.b.tombstones...)
		for id, a := range t.b.accounts {
			b.Accounts[id] = a
		}
		b.Marks = append(b.Marks, storage.PartitionMark{Partition: t.p.id, Epoch: t.p.epoch, NextOffset: t.b.next})
	}
	return b
}

// fence drops a partition another node has acquired: stop its worker and
// actors, stop fetching it, forget its unflushed effects (the new owner
// replays them from the log).
func (e *Engine) fence(p *partition) {
	e.m.fenced.Inc()
	e.log.Warn("fenced out of partition; stopping it", "partition", p.id, "epoch", p.epoch)
	e.mu.Lock()
	if e.parts[p.id] == p {
		delete(e.parts, p.id)
	}
	e.mu.Unlock()
	e.client.RemoveConsumePartitions(map[string][]int32{"bursar.commands": {p.id}})
	p.stop()
}
