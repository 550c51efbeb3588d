package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolNeverBlocksTheSender: with every worker busy and the queue
// full, Schedule still returns at once (the run gets its own goroutine),
// and every scheduled run happens.
func TestPoolNeverBlocksTheSender(t *testing.T) {
	p := newPool(2, 4)
	release := make(chan struct{})
	var ran atomic.Int64
	var wg sync.WaitGroup
	const runs = 50
	wg.Add(runs)
	done := make(chan struct{})
	go func() {
		for range runs {
			p.Schedule(func() {
				defer wg.Done()
				<-release // every run blocks until released
				ran.Add(1)
			})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Schedule blocked with the workers busy and the queue full")
	}
	close(release)
	wg.Wait()
	if ran.Load() != runs {
		t.Fatalf("%d of %d runs happened", ran.Load(), runs)
	}
}
