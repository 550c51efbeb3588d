package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// mailboxThroughput is how many messages a mailbox run processes before it
// yields its goroutine, as protoactor-go's default dispatcher.
const mailboxThroughput = 300

// pool runs account actors' mailboxes on long-lived goroutines.
//
// protoactor-go's default dispatcher starts a goroutine for every mailbox
// run. An account actor runs once per fetch batch, and its call chain
// (ledger.Apply and the effect it returns) outgrows a new goroutine's first
// stack, so each run also paid for a stack copy: together about a tenth of
// the engine's CPU in profiles. Pool workers keep their grown stacks.
//
// A run that is about to block (an account waiting on a PostgreSQL key
// lookup) calls blocking first, which starts a replacement worker, so runs
// queued behind it are not held up; once it is done blocking, the pool
// shrinks back by one worker after a later run. Schedule never blocks: with the queue full, a run gets
// its own goroutine, as with the default dispatcher.
type pool struct {
	work   chan func()
	excess atomic.Int64 // workers to retire: replacements started by blocking
	live   atomic.Int64 // running workers
}

var (
	sharedPool     *pool
	sharedPoolOnce sync.Once
)

// dispatcher returns the process-wide pool, started on first use. It is
// never stopped: its idle workers cost a few goroutines.
func dispatcher() *pool {
	sharedPoolOnce.Do(func() { sharedPool = newPool(max(4, 2*runtime.GOMAXPROCS(0)), 4096) })
	return sharedPool
}

func newPool(workers, queue int) *pool {
	p := &pool{work: make(chan func(), queue)}
	for range workers {
		p.start()
	}
	return p
}

func (p *pool) start() {
	p.live.Add(1)
	go p.run()
}

func (p *pool) run() {
	defer p.live.Add(-1)
	for fn := range p.work {
		fn()
		for {
			n := p.excess.Load()
			if n <= 0 {
				break
			}
			if p.excess.CompareAndSwap(n, n-1) {
				return
			}
		}
	}
}

// blocking is called by a run about to block for a while; it starts a
// replacement worker at once. The returned func ends the blocking part:
// from then on the pool has one worker too many, and one retires after its
// next run.
func (p *pool) blocking() (done func()) {
	p.start()
	return func() { p.excess.Add(1) }
}

// Schedule implements actor.Dispatcher.
func (p *pool) Schedule(fn func()) {
	select {
	case p.work <- fn:
	default:
		go fn()
	}
}

var _ actor.Dispatcher = (*pool)(nil)

// Throughput implements actor.Dispatcher.
func (p *pool) Throughput() int { return mailboxThroughput }
