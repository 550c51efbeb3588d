package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// emitter produces the records applied batches caused: credit legs,
// refunds, events and dead letters.
//
// With a log that acknowledges before it is on disk (Config.LogDurable:
// the embedded broker's group sync), a caused record must not reach the
// log before the command that caused it is durable. Page write-back keeps
// no order across files, so after a machine crash a credit leg could be on
// disk without its debit, and a replay would create money. The emitter
// therefore takes everything queued, waits for one durability round that
// covers the commands behind all of it, and only then produces it: one
// round for every batch that arrived meanwhile, in arrival order, off the
// partition workers (they go on applying).
//
// The queue needs no bound of its own: each entry's records belong to a
// partition buffer whose flush waits for them, and a partition stops
// consuming at MaxUnflushedRows, so at most about two buffers per
// partition are ever queued.
type emitter struct {
	e    *Engine
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	queue []emission
}

// emission is the records one batch caused and the buffer that waits for
// them.
type emission struct {
	b    *buffer
	recs []*kgo.Record
}

func newEmitter(e *Engine) *emitter {
	return &emitter{e: e, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// send hands on the records a batch caused; b.emits already counts them.
// Without LogDurable the broker's acknowledgement of the cause was its
// durability, so they are produced at once.
func (em *emitter) send(b *buffer, recs []*kgo.Record) {
	if em.e.cfg.LogDurable == nil {
		em.produce(b, recs)
		return
	}
	em.mu.Lock()
	em.queue = append(em.queue, emission{b, recs})
	em.mu.Unlock()
	select {
	case em.wake <- struct{}{}:
	default:
	}
}

// run is the emitter's loop when LogDurable is set. It ends once close is
// called and the queue is empty.
func (em *emitter) run() {
	defer close(em.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-em.stop; cancel() }()
	for {
		select {
		case <-em.wake:
		case <-em.stop:
			em.round(ctx) // whatever a last batch queued
			return
		}
		em.round(ctx)
	}
}

func (em *emitter) round(ctx context.Context) {
	em.mu.Lock()
	q := em.queue
	em.queue = nil
	em.mu.Unlock()
	if len(q) == 0 {
		return
	}
	// Every command behind q was fetched, and reported written, before it
	// was queued: a round that starts now covers them.
	durable := em.e.cfg.CommandsDurable
	if durable == nil {
		durable = em.e.cfg.LogDurable
	}
	if err := durable(ctx); err != nil {
		err = fmt.Errorf("engine: making the log durable before producing caused records: %w", err)
		if ctx.Err() == nil {
			em.e.fail(err)
		}
		for _, m := range q {
			m.b.setEmitErr(err)
			m.b.emits.Add(-len(m.recs))
		}
		return
	}
	for _, m := range q {
		em.produce(m.b, m.recs)
	}
}

// produce sends the records; b's flush waits for their acknowledgements
// (rule 3: an offset commits only after every record it caused is in the
// log).
func (em *emitter) produce(b *buffer, recs []*kgo.Record) {
	e := em.e
	for _, rec := range recs {
		cl := e.client
		if rec.Topic == kafkalog.TopicEvents && e.cfg.EventsProducer != nil {
			cl = e.cfg.EventsProducer
		}
		// Not the engine context: records an applied batch caused must reach
		// Kafka even while the node shuts down, or the batch cannot commit.
		cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
			if err != nil {
				b.setEmitErr(err)
			} else {
				e.logWritten(r.Topic, r.Partition)
				if r.Topic == kafkalog.TopicCommands {
					e.cfg.Stages.Since(StageLegProduced, r.Timestamp.UnixMicro(), time.Now())
				}
			}
			b.emits.Done()
		})
	}
}

// close ends run once the queue is drained (after the final flush).
func (em *emitter) close() {
	select {
	case <-em.stop:
	default:
		close(em.stop)
	}
	if em.e.cfg.LogDurable != nil {
		<-em.done
	}
}
