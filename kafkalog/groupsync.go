package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrBrokerClosed is returned by Broker.Durable once the broker is closed.
var ErrBrokerClosed = errors.New("kafkalog: embedded broker closed")

// groupSync is a group commit for the embedded broker's files: the broker
// writes without fsync, and Durable waits for one sync of the whole file
// system that starts after the call, so a single sync covers every
// partition and every caller that arrived meanwhile, instead of kfake's
// two fsyncs per partition per produce request.
type groupSync struct {
	dir    *os.File
	sync   func(*os.File) error // syncFS, or a test's
	onSync func(time.Duration, error)
	kick   chan struct{}
	stop   chan struct{}
	ended  chan struct{} // closed when run has returned

	mu     sync.Mutex
	next   *syncRound // the round that starts next
	failed error      // sticky: a failed sync may have lost written pages
}

// syncRound is one sync; done is closed when it has finished, with err.
type syncRound struct {
	done chan struct{}
	err  error
}

func newGroupSync(dir string, syncFn func(*os.File) error, onSync func(time.Duration, error)) (*groupSync, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: open data dir for syncing: %w", err)
	}
	g := &groupSync{
		dir: f, sync: syncFn, onSync: onSync,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{}),
		next: &syncRound{done: make(chan struct{})},
	}
	go g.run()
	return g, nil
}

// wait returns once a sync that started after the call has finished: what
// was written before the call is then on disk.
func (g *groupSync) wait(ctx context.Context) error {
	g.mu.Lock()
	r := g.next
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default: // a round is already asked for; r is at the latest that one
	}
	select {
	case <-r.done:
		return r.err
	case <-g.ended:
		// The last round ran before r was taken, or r was its round.
		select {
		case <-r.done:
			return r.err
		default:
			return ErrBrokerClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *groupSync) run() {
	defer close(g.ended)
	for {
		select {
		case <-g.kick:
			g.round()
		case <-g.stop:
			g.round() // for whoever waits, and the broker's last writes
			return
		}
	}
}

func (g *groupSync) round() {
	g.mu.Lock()
	r := g.next
	g.next = &syncRound{done: make(chan struct{})}
	failed := g.failed
	g.mu.Unlock()
	start := time.Now()
	err := g.sync(g.dir)
	if g.onSync != nil {
		g.onSync(time.Since(start), err)
	}
	if err != nil {
		err = fmt.Errorf("kafkalog: syncing the broker's files: %w", err)
		g.mu.Lock()
		if g.failed == nil {
			g.failed = err
		}
		g.mu.Unlock()
	}
	if failed != nil {
		err = failed
	}
	r.err = err
	close(r.done)
}

func (g *groupSync) close() {
	close(g.stop)
	<-g.ended
	g.dir.Close()
}
