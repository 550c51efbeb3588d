package bench

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// window is the timeline of the load: warmup from start to measureStart,
// measurement from measureStart to end. An answer is measured when it
// arrives inside the measurement, whenever its operation was scheduled:
// throughput is then what the target delivered in the window, and in an
// overloaded open loop the backlog left by the warmup is measured with the
// latency it really had, not skipped. Answers still in flight at the end
// are not measured (at most Concurrency of them).
type window struct {
	start, measureStart, end time.Time
}

// loadStats is what the load phase returns beside the recorder.
type loadStats struct {
	// measured is the length of the measured window actually covered
	// (shorter than Duration when interrupted).
	measured    time.Duration
	interrupted bool
	// unsent counts open-loop operations due before the end that were
	// never sent because every worker was still busy.
	unsent int64
}

// worker is one load goroutine's state.
type worker struct {
	ctx      context.Context
	id       int
	cfg      *Config
	accounts []string
	x        *exchange
	rnd      *rand.Rand
	rec      *recorder
	win      window
	o        op
	seq      uint64
	ref      []byte // reference_id / idempotency key buffer
	refLen   int    // length of the fixed prefix in ref
	answered *atomic.Int64
	failed   *atomic.Int64
	// codes is the batch workload's buffer of failed items' codes.
	codes []string
}

func newWorker(ctx context.Context, id int, cfg *Config, cl *fasthttp.Client, accounts []string, rec *recorder, win window, answered, failed *atomic.Int64) *worker {
	w := &worker{
		ctx: ctx, id: id, cfg: cfg, accounts: accounts, x: newExchange(cl, cfg.Target, cfg.APIKey),
		rnd: newRand(cfg.Seed, id), rec: rec, win: win, answered: answered, failed: failed,
	}
	w.ref = make([]byte, 0, 80)
	w.ref = append(w.ref, "b-"...)
	w.ref = append(w.ref, cfg.RunID...)
	w.ref = append(w.ref, '-')
	if cfg.keyTag != "" {
		w.ref = append(w.ref, cfg.keyTag...)
		w.ref = append(w.ref, '-')
	}
	w.ref = strconv.AppendInt(w.ref, int64(id), 36)
	w.ref = append(w.ref, '-')
	w.refLen = len(w.ref)
	return w
}

// send builds and sends w.o and returns its error code ("" on success).
func (w *worker) send() (string, error) {
	x, o, cfg := w.x, &w.o, w.cfg
	if o.retry {
		return x.do(nil, o.kind.wantStatus()) // x holds the request to retry
	}
	x.url = append(x.url[:0], cfg.Target...)
	x.body = x.body[:0]
	var key []byte
	switch o.kind {
	case opCredit, opDebit:
		if o.kind == opCredit {
			x.url = append(x.url, pathCredit...)
		} else {
			x.url = append(x.url, pathDebit...)
		}
		x.body = appendMoneyBody(x.body, w.accounts[o.account], o.amount, cfg.exponent, cfg.Currency, w.nextRef())
	case opTransfer:
		x.url = append(x.url, pathTransfer...)
		x.body = appendTransferBody(x.body, w.accounts[o.account], w.accounts[o.counterparty], o.amount, cfg.exponent, cfg.Currency, w.nextRef())
	case opBalance:
		x.url = append(x.url, pathAccounts...)
		x.url = append(x.url, w.accounts[o.account]...)
		x.url = append(x.url, "/balance"...)
		if cfg.Consistency == "eventual" {
			x.url = append(x.url, "?consistency=eventual"...)
		}
	case opOpen:
		x.url = append(x.url, pathOpen...)
		key = w.nextRef()
		x.body = appendOpenBody(x.body, openedAccountID(key), key, cfg.Currency)
	}
	return x.do(key, o.kind.wantStatus())
}

// step sends the next operation, scheduled at sched, and counts its
// answer.
func (w *worker) step(sched time.Time) {
	w.cfg.workload.next(w.rnd, &w.o)
	if w.o.kind == opBatch {
		b := w.sendBatch()
		w.finishBatch(sched, time.Now(), b)
		return
	}
	code, err := w.send()
	w.finish(sched, time.Now(), code, err)
}

// batchOutcome is what one batch request came to.
type batchOutcome struct {
	// answered is true for a 200 answer: the request as a whole is a
	// correct answer, whatever its items say, and its latency counts.
	answered bool
	ok       int      // items answered 201
	codes    []string // the codes of the other items
	err      error    // the transport error, if any
}

// sendBatch sends w.o's batch. A request that failed as a whole fails
// every item with its code.
func (w *worker) sendBatch() batchOutcome {
	x, o, cfg := w.x, &w.o, w.cfg
	x.url = append(append(x.url[:0], cfg.Target...), pathBatch...)
	x.body = appendBatchBody(x.body[:0], o.items, w.accounts, o.amount, cfg.exponent, cfg.Currency, func(int) []byte { return w.nextRef() })
	w.codes = w.codes[:0]
	code, err := x.do(nil, opBatch.wantStatus())
	if code != "" {
		w.codes = appendN(w.codes, code, len(o.items))
		return batchOutcome{codes: w.codes, err: err}
	}
	ok, codes := parseBatchAnswer(x.resp.Body(), len(o.items), w.codes)
	w.codes = codes
	return batchOutcome{answered: true, ok: ok, codes: codes}
}

// finishBatch counts a batch answered at end: its items as transfers and
// errors, its latency once if the request was answered.
func (w *worker) finishBatch(sched, end time.Time, b batchOutcome) {
	w.answered.Add(1)
	w.failed.Add(int64(len(b.codes)))
	if end.Before(w.win.measureStart) || !end.Before(w.win.end) || w.ctx.Err() != nil {
		return
	}
	if b.err != nil {
		w.rec.noteTransport(b.err)
	}
	sec := int(end.Sub(w.win.measureStart) / time.Second)
	w.rec.recordBatch(sec, int64(b.ok), b.codes, b.answered, end.Sub(sched).Microseconds())
}

// nextRef returns a key unique to this run, worker and operation.
func (w *worker) nextRef() []byte {
	w.seq++
	w.ref = strconv.AppendUint(w.ref[:w.refLen], w.seq, 36)
	return w.ref
}

// finish counts the answer to w.o scheduled at sched and answered at end.
func (w *worker) finish(sched, end time.Time, code string, err error) {
	w.answered.Add(1)
	out := outcomeOK
	if code != "" {
		out = outcomeError
		if w.cfg.workload.expectedRefusal(w.o.kind, code) {
			out = outcomeRefused
		} else {
			w.failed.Add(1)
		}
	}
	// After an interrupt the window ends at the interrupt.
	if end.Before(w.win.measureStart) || !end.Before(w.win.end) || w.ctx.Err() != nil {
		return
	}
	if err != nil {
		w.rec.noteTransport(err)
	}
	sec := int(end.Sub(w.win.measureStart) / time.Second)
	w.rec.record(sec, w.o.kind, out, code, end.Sub(sched).Microseconds())
}

// runClosed sends one operation after another until the window ends.
func (w *worker) runClosed() {
	for w.ctx.Err() == nil {
		start := time.Now()
		if !start.Before(w.win.end) {
			return
		}
		w.step(start)
	}
}

// runOpen takes the next due operation of the schedule, waits for its due
// time, sends it, and measures from the due time.
func (w *worker) runOpen(s schedule, tickets *atomic.Int64) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due := s.at(tickets.Add(1) - 1)
		if !due.Before(w.win.end) {
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-w.ctx.Done():
				return
			case <-timer.C:
			}
		}
		// An operation still waiting for a worker when the window ends is
		// not sent (the backlog could take far longer than the window to
		// drain); it is reported as unsent.
		if w.ctx.Err() != nil || !time.Now().Before(w.win.end) {
			return
		}
		w.step(due)
	}
}

// runLoad runs warmup and measurement with cfg.Concurrency workers and
// waits for every answer in flight.
func runLoad(ctx context.Context, cfg *Config, cl *fasthttp.Client, accounts []string) (*recorder, loadStats) {
	now := time.Now()
	win := window{start: now, measureStart: now.Add(cfg.Warmup), end: now.Add(cfg.Warmup + cfg.Duration)}
	rec := newRecorder(cfg.Duration)

	var stoppedAt atomic.Int64 // unix nanoseconds when ctx was cancelled
	stop := context.AfterFunc(ctx, func() { stoppedAt.Store(time.Now().UnixNano()) })
	defer stop()

	var answered, failed atomic.Int64
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() { logProgress(cfg, win, &answered, &failed, progressDone) })

	var marksWG sync.WaitGroup
	if cfg.marks != nil {
		marksWG.Go(func() { cfg.marks.follow(ctx, win) })
	}

	sched := schedule{start: win.start, rate: cfg.Rate}
	var tickets atomic.Int64
	var wg sync.WaitGroup
	for id := range cfg.Concurrency {
		w := newWorker(ctx, id, cfg, cl, accounts, rec, win, &answered, &failed)
		wg.Go(func() {
			defer w.x.release()
			if cfg.Rate > 0 {
				w.runOpen(sched, &tickets)
			} else {
				w.runClosed()
			}
		})
	}
	wg.Wait()
	marksWG.Wait()
	close(progressDone)
	progressWG.Wait()

	st := loadStats{measured: cfg.Duration}
	if ns := stoppedAt.Load(); ns != 0 && time.Unix(0, ns).Before(win.end) {
		st.interrupted = true
		st.measured = max(0, time.Unix(0, ns).Sub(win.measureStart))
	}
	if cfg.Rate > 0 && !st.interrupted {
		// Every operation due before the end was either answered (at any
		// time, warmup included) or never sent.
		st.unsent = max(0, sched.dueBefore(win.end)-answered.Load())
	}
	return rec, st
}

// logProgress logs the answer rate once a second, to stderr by way of
// cfg.Log, so a long run shows it is alive.
func logProgress(cfg *Config, win window, answered, failed *atomic.Int64, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastAnswered, lastFailed int64
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			a, f := answered.Load(), failed.Load()
			phase := "measure" // of the second that just ended
			if last.Before(win.measureStart) {
				phase = "warmup"
			}
			cfg.Log.Info("load", "phase", phase, "elapsed_s", int(now.Sub(win.start).Seconds()),
				"answers_per_sec", int64(float64(a-lastAnswered)/now.Sub(last).Seconds()),
				"errors", f-lastFailed)
			lastAnswered, lastFailed, last = a, f, now
		}
	}
}

// windowMarks are called at the edges of the measured window, so that a
// sweep can read CPU counters and scrape metrics over exactly the window
// its answers are counted in.
type windowMarks struct {
	// start is called when the measured window begins.
	start func()
	// end is called when it ends, or at an interrupt inside it; never
	// without start before it.
	end func()
}

// follow calls m.start and m.end at the window's edges; an interrupt
// before the window calls neither.
func (m *windowMarks) follow(ctx context.Context, win window) {
	t := time.NewTimer(time.Until(win.measureStart))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	m.start()
	t.Reset(time.Until(win.end))
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	m.end()
}
