package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bursar/bursar/retry"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// reemitter produces again the caused records (credit legs, refunds,
// events) the log refused with an error that may pass: the broker's disk
// full (the embedded broker answers UNKNOWN_SERVER_ERROR), a storage error,
// a delivery timeout. The partition keeps its state and goes on serving
// reads; its flush waits for the records (rule 3), so it stops consuming
// at MaxUnflushedRows, and once the log takes them again everything goes
// on where it stood, without a restart. One loop retries every pending
// record with one backoff, so a long outage costs one attempt per backoff
// interval, not one per record.
//
// The pending records are bounded by what the partitions' buffers hold
// (a partition stops consuming at MaxUnflushedRows) and are held by the
// buffers anyway. Their order in the log may differ from the order they
// were caused in: legs are independent of one another, and events carry
// their account's version (consumers dedupe and order on it, as after a
// replay).
type reemitter struct {
	e    *Engine
	wake chan struct{}

	mu      sync.Mutex
	pending []reemit
	closed  bool // run has ended: add gives up at once
}

// reemit is one refused record, the client that produces it and the buffer
// whose flush waits for it.
type reemit struct {
	rec *kgo.Record
	cl  *kgo.Client
	b   *buffer
}

func newReemitter(e *Engine) *reemitter {
	return &reemitter{e: e, wake: make(chan struct{}, 1)}
}

// reemittable reports whether a produce error may go away by producing the
// record again. franz-go has already retried what Kafka calls retriable;
// what reaches a promise is either an error the broker gave up on
// (UNKNOWN_SERVER_ERROR, which is how kfake reports a failed write of its
// files; a storage error; a delivery timeout) or one that will not change
// (a record too large, an authorization failure, a closed client), which
// restarts the partition instead (restartPartition).
func reemittable(err error) bool {
	switch {
	case errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable || ke == kerr.UnknownServerError || ke == kerr.KafkaStorageError
	}
	return false
}

// add queues a refused record; its buffer's emits count stays taken until
// the record is produced or given up.
func (r *reemitter) add(m reemit) {
	m.b.markStuck()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.giveUp([]reemit{m}, kgo.ErrClientClosed)
		return
	}
	r.pending = append(r.pending, m)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reemitter) take() []reemit {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pending
	r.pending = nil
	return out
}

// run retries the pending records until the engine stops; what is pending
// then is given up (its buffers' flushes fail: the offsets stay before the
// commands, and a replay produces the records again).
func (r *reemitter) run() {
	e := r.e
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			r.mu.Lock()
			r.closed = true
			r.mu.Unlock()
			r.giveUp(r.take(), e.ctx.Err())
			return
		case <-r.wake:
		}
		var todo []reemit
		var lastLog time.Time
		err := retry.Do(e.ctx, retry.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second,
			OnRetry: func(err error, wait time.Duration) {
				if time.Since(lastLog) >= 5*time.Second {
					lastLog = time.Now()
					e.log.Warn("the log refuses records applied commands caused; producing them again",
						"records", len(todo), "err", err, "retry_in", wait)
				}
			}}, func(context.Context) error {
			todo = append(todo, r.take()...)
			var err error
			todo, err = r.produce(todo)
			return err
		})
		if err != nil {
			r.giveUp(todo, err) // the engine stops
		}
	}
}

// produce produces todo again and returns what the log refused with an
// error that may pass, with the first such error. A record refused for
// good (reemittable false) is given up on its own: its partition restarts
// (restartPartition), the others' records go on. Records go out with no
// context of their own, as the emitter's do: franz-go ends a batch on its
// first record's context, and a stopping engine must not cancel the
// batch-mates the final flush waits for.
func (r *reemitter) produce(todo []reemit) ([]reemit, error) {
	e := r.e
	outcome := make([]error, len(todo))
	var wg sync.WaitGroup
	wg.Add(len(todo))
	for i := range todo {
		e.m.reemitted.Inc()
		todo[i].cl.Produce(context.Background(), todo[i].rec, func(rec *kgo.Record, err error) {
			defer wg.Done()
			outcome[i] = err
			if err == nil {
				e.logWritten(rec)
			}
		})
	}
	wg.Wait()
	left := todo[:0]
	var first error
	for i, m := range todo {
		switch err := outcome[i]; {
		case err == nil:
			m.b.reemitting.Add(-1)
			m.b.emits.Done()
		case reemittable(err):
			left = append(left, m)
			if first == nil {
				first = err
			}
		default:
			r.giveUp([]reemit{m}, err)
		}
	}
	return left, first
}

// giveUp fails the records' buffers with err and releases their counts.
func (r *reemitter) giveUp(todo []reemit, err error) {
	for _, m := range todo {
		m.b.setEmitErr(err)
		m.b.reemitting.Add(-1)
		m.b.emits.Done()
	}
}
