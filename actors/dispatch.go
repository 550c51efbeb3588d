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
// A run goes to an idle worker or, when none is idle, gets its own
// goroutine as with the default dispatcher: there is no queue, so a run
// never waits behind workers that are blocked (an account waiting on a
// PostgreSQL key lookup holds its worker), and Schedule never blocks.
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
	sharedPoolOnce.Do(func() { sharedPool = newPool(max(8, 4*runtime.GOMAXPROCS(0))) })
	return sharedPool
}

func newPool(workers int) *pool {
	p := &pool{work: make(chan func())}
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
