package actors

import (
	"runtime"
	"sync"

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
// Schedule never blocks: when every worker is busy and the queue is full
// (workers may wait on a PostgreSQL key lookup), the run gets its own
// goroutine, as with the default dispatcher.
type pool struct {
	work chan func()
}

var (
	sharedPool     *pool
	sharedPoolOnce sync.Once
)

// dispatcher returns the process-wide pool, started on first use. It is
// never stopped: its idle workers cost a few goroutines.
func dispatcher() actor.Dispatcher {
	sharedPoolOnce.Do(func() { sharedPool = newPool(max(4, 2*runtime.GOMAXPROCS(0)), 4096) })
	return sharedPool
}

func newPool(workers, queue int) *pool {
	p := &pool{work: make(chan func(), queue)}
	for range workers {
		go p.run()
	}
	return p
}

func (p *pool) run() {
	for fn := range p.work {
		fn()
	}
}

// Schedule implements actor.Dispatcher.
func (p *pool) Schedule(fn func()) {
	select {
	case p.work <- fn:
	default:
		go fn()
	}
}

// Throughput implements actor.Dispatcher.
func (p *pool) Throughput() int { return mailboxThroughput }
