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

// emission is what one applied batch caused: the records to produce, the
// buffer whose flush waits for them, and the answers to deliver (ack =
// applied); partition and last say which commands must be durable first.
type emission struct {
	b         *buffer
	recs      []*kgo.Record
	answers   []reply
	partition int32
	last      int64
}

func newEmitter(e *Engine) *emitter {
	return &emitter{e: e, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// send hands on what a batch caused; m.b.emits already counts its records.
// Without LogDurable the broker's acknowledgement of the cause was its
// durability, so they are produced, and the answers delivered, at once.
func (em *emitter) send(m emission) {
	if em.e.cfg.LogDurable == nil {
		em.produce(m.b, m.recs)
		em.deliver(m.answers)
		return
	}
	em.mu.Lock()
	em.queue = append(em.queue, m)
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
	// was queued: a round that starts now covers them, and with DurableAt
	// a round that started when they were appended may have already.
	if err := em.durable(ctx, q); err != nil {
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
		em.deliver(m.answers)
	}
}

// durable waits until the commands behind q are on disk.
func (em *emitter) durable(ctx context.Context, q []emission) error {
	cfg := &em.e.cfg
	if cfg.CommandsDurableAt == nil {
		return cfg.LogDurable(ctx)
	}
	// The last offset per partition: the log is durable in order.
	var last map[int32]int64
	for _, m := range q {
		if last == nil {
			last = make(map[int32]int64, len(q))
		}
		if o, ok := last[m.partition]; !ok || m.last > o {
			last[m.partition] = m.last
		}
	}
	for p, off := range last {
		if err := cfg.CommandsDurableAt(ctx, p, off); err != nil {
			return err
		}
	}
	return nil
}

// deliver answers the clients waiting for the commands of a batch.
func (em *emitter) deliver(answers []reply) {
	for i := range answers {
		r := &answers[i]
		em.e.replies.Deliver(r.node, r.seq, &r.result)
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
			switch {
			case err != nil && reemittable(err):
				e.reemit.add(reemit{rec: r, cl: cl, b: b}) // it calls b.emits.Done
				return
			case err != nil:
				b.setEmitErr(err)
			default:
				e.logWritten(r)
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
