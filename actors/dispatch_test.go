package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolNeverBlocksTheSender: with every worker busy (blocked, as on a
// slow key lookup), Schedule still returns at once, and a run scheduled
// then does not wait for the blocked ones: it gets its own goroutine.
func TestPoolNeverBlocksTheSender(t *testing.T) {
	p := newPool(2)
	release := make(chan struct{})
	var blocked sync.WaitGroup
	var ran atomic.Int64
	const runs = 50
	blocked.Add(runs)
	for range runs {
		p.Schedule(func() {
			defer blocked.Done()
			<-release // every run blocks until released
			ran.Add(1)
		})
	}
	free := make(chan struct{})
	p.Schedule(func() { close(free) })
	select {
	case <-free:
	case <-time.After(5 * time.Second):
		t.Fatal("a run waited behind blocked workers")
	}
	close(release)
	blocked.Wait()
	if ran.Load() != runs {
		t.Fatalf("%d of %d runs happened", ran.Load(), runs)
	}
	// Idle workers take runs again.
	done := make(chan struct{})
	time.Sleep(10 * time.Millisecond) // let the workers return to waiting
	p.Schedule(func() { close(done) })
	<-done
}
