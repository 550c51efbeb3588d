package actors

import (
	"sync"
	"testing"
	"time"
)

// TestPoolRunsDoNotWaitBehindBlockedWorkers: with every worker blocked in
// a run that said so (as on a slow key lookup), a run scheduled next still
// happens at once; with the queue full, Schedule does not block; and once
// the blocked runs end, the pool shrinks back to its size.
func TestPoolRunsDoNotWaitBehindBlockedWorkers(t *testing.T) {
	p := newPool(2, 4)
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(2)
	for range 2 {
		p.Schedule(func() {
			defer blocked.Done()
			done := p.blocking()
			defer done()
			<-release
		})
	}
	free := make(chan struct{})
	p.Schedule(func() { close(free) })
	select {
	case <-free:
	case <-time.After(5 * time.Second):
		t.Fatal("a run waited behind blocked workers")
	}

	// Occupy every worker without saying so, fill the queue, and schedule
	// more: Schedule must still return.
	hold := make(chan struct{})
	var held sync.WaitGroup
	const more = 40
	held.Add(more)
	done := make(chan struct{})
	go func() {
		for range more {
			p.Schedule(func() { defer held.Done(); <-hold })
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Schedule blocked with the workers busy and the queue full")
	}
	close(hold)
	held.Wait()
	close(release)
	blocked.Wait()

	deadline := time.Now().Add(5 * time.Second)
	for p.live.Load() != 2 || p.excess.Load() != 0 {
		// Retirement happens after a run: give the extra workers runs.
		p.Schedule(func() {})
		if time.Now().After(deadline) {
			t.Fatalf("%d workers live, %d to retire; want 2 and 0", p.live.Load(), p.excess.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
