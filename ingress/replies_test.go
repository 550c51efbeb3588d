package ingress

import (
	"sync"
	"testing"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// resultFor is a result that names its sequence number, so a waiter can tell
// its own answer from anyone else's.
func resultFor(seq uint64) ledger.Result {
	var id uuid.UUID
	for i := 0; i < 8; i++ {
		id[i] = byte(seq >> (8 * i))
	}
	return ledger.Result{TxID: id, Status: ledger.StatusCompleted, Amount: int64(seq), Seq: int64(seq), Currency: "USD"}
}

// assertEmpty checks that nothing is waiting on ch.
func assertEmpty(t *testing.T, ch chan ledger.Result) {
	t.Helper()
	select {
	case res := <-ch:
		t.Fatalf("unexpected answer %+v", res)
	default:
	}
}

func TestRepliesRegisterDeliver(t *testing.T) {
	r := NewReplies("n/1", 4)
	if r.Node() != "n/1" {
		t.Fatalf("Node() = %q", r.Node())
	}
	seq, ch, ok := r.Register()
	if !ok || ch == nil || seq == 0 {
		t.Fatalf("Register() = %d, %v, %v", seq, ch, ok)
	}
	if r.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", r.Len())
	}
	want := resultFor(seq)
	r.Deliver("n/1", seq, &want)
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	default:
		t.Fatal("Deliver did not hand the result to the waiter")
	}
	if r.Len() != 0 {
		t.Fatalf("Len() after Deliver = %d, want 0", r.Len())
	}
	if d, f := r.Dropped.Load(), r.Foreign.Load(); d != 0 || f != 0 {
		t.Fatalf("Dropped %d Foreign %d, want 0 0", d, f)
	}

	// A second answer for the same request (a replay) is dropped, not
	// delivered, and never blocks.
	r.Deliver("n/1", seq, &want)
	assertEmpty(t, ch)
	if r.Dropped.Load() != 1 || r.Len() != 0 {
		t.Fatalf("after duplicate: Dropped %d Len %d, want 1 0", r.Dropped.Load(), r.Len())
	}

	// Forgetting an answered request changes nothing.
	r.Forget(seq)
	if r.Len() != 0 {
		t.Fatalf("Len() after Forget of answered = %d", r.Len())
	}
}

func TestRepliesSequencesUnique(t *testing.T) {
	r := NewReplies("n/1", 1000)
	seen := make(map[uint64]bool)
	for i := 0; i < 1000; i++ {
		seq, _, ok := r.Register()
		if !ok {
			t.Fatalf("Register %d refused under the limit", i)
		}
		if seq == 0 || seen[seq] {
			t.Fatalf("sequence %d reused or zero", seq)
		}
		seen[seq] = true
	}
}

func TestRepliesLimit(t *testing.T) {
	const limit = 3
	r := NewReplies("n/1", limit)
	var seqs []uint64
	for i := 0; i < limit; i++ {
		seq, _, ok := r.Register()
		if !ok {
			t.Fatalf("Register %d refused under the limit", i)
		}
		seqs = append(seqs, seq)
	}
	refuse := func(when string) {
		t.Helper()
		for i := 0; i < 3; i++ {
			if seq, ch, ok := r.Register(); ok || ch != nil || seq != 0 {
				t.Fatalf("%s: Register() = %d, %v, %v beyond the limit", when, seq, ch, ok)
			}
		}
		// Refusals must not leak capacity.
		if r.Len() != limit {
			t.Fatalf("%s: Len() = %d, want %d", when, r.Len(), limit)
		}
	}
	refuse("full")

	// Deliver frees a slot.
	res := resultFor(seqs[0])
	r.Deliver("n/1", seqs[0], &res)
	if r.Len() != limit-1 {
		t.Fatalf("Len() after Deliver = %d", r.Len())
	}
	seq, _, ok := r.Register()
	if !ok {
		t.Fatal("Register refused after Deliver freed a slot")
	}
	seqs[0] = seq
	refuse("full again after Deliver")

	// Forget frees a slot, once.
	r.Forget(seqs[1])
	r.Forget(seqs[1])
	if r.Len() != limit-1 {
		t.Fatalf("Len() after double Forget = %d, want %d", r.Len(), limit-1)
	}
	seq, _, ok = r.Register()
	if !ok {
		t.Fatal("Register refused after Forget freed a slot")
	}
	seqs[1] = seq
	refuse("full again after Forget")

	// Forgetting or delivering what was never registered frees nothing.
	r.Forget(1 << 40)
	res = resultFor(1 << 40)
	r.Deliver("n/1", 1<<40, &res)
	r.Deliver("other/2", seqs[2], &res)
	refuse("after unknown Forget/Deliver")

	for _, s := range seqs {
		r.Forget(s)
	}
	if r.Len() != 0 {
		t.Fatalf("Len() after forgetting all = %d", r.Len())
	}
	for i := 0; i < limit; i++ {
		if _, _, ok := r.Register(); !ok {
			t.Fatalf("Register %d refused after the registry emptied", i)
		}
	}
}

func TestRepliesZeroLimitRefusesAll(t *testing.T) {
	r := NewReplies("n/1", 0)
	if _, _, ok := r.Register(); ok {
		t.Fatal("Register accepted with limit 0")
	}
	if r.Len() != 0 {
		t.Fatalf("Len() = %d", r.Len())
	}
}

func TestRepliesDropped(t *testing.T) {
	r := NewReplies("n/1", 10)
	res := resultFor(99)

	// Never registered.
	r.Deliver("n/1", 99, &res)
	if r.Dropped.Load() != 1 {
		t.Fatalf("Dropped = %d, want 1", r.Dropped.Load())
	}

	// Registered, then given up (timeout) before the answer came.
	seq, ch, _ := r.Register()
	r.Forget(seq)
	res = resultFor(seq)
	r.Deliver("n/1", seq, &res)
	assertEmpty(t, ch)
	if r.Dropped.Load() != 2 || r.Len() != 0 {
		t.Fatalf("Dropped %d Len %d, want 2 0", r.Dropped.Load(), r.Len())
	}

	// Sequence 0 is never handed out.
	r.Deliver("n/1", 0, &res)
	if r.Dropped.Load() != 3 {
		t.Fatalf("Dropped = %d, want 3", r.Dropped.Load())
	}
	if r.Foreign.Load() != 0 {
		t.Fatalf("Foreign = %d, want 0", r.Foreign.Load())
	}
}

func TestRepliesForeign(t *testing.T) {
	r := NewReplies("n/1", 10)
	seq, ch, _ := r.Register()
	res := resultFor(seq)

	// Another node, or this node's previous boot: not ours, even though
	// the sequence number matches a waiter.
	for _, node := range []string{"n/2", "n/0", "", "n/1 ", "N/1"} {
		r.Deliver(node, seq, &res)
	}
	if r.Foreign.Load() != 5 || r.Dropped.Load() != 0 {
		t.Fatalf("Foreign %d Dropped %d, want 5 0", r.Foreign.Load(), r.Dropped.Load())
	}
	assertEmpty(t, ch)
	if r.Len() != 1 {
		t.Fatalf("Len() = %d; a foreign answer must not consume the waiter", r.Len())
	}

	// The waiter still gets its own answer.
	r.Deliver("n/1", seq, &res)
	if got := <-ch; got != res {
		t.Fatalf("got %+v, want %+v", got, res)
	}
}

// TestRepliesConcurrent runs many waiters against many deliverers; under
// -race it checks the locking, and every waiter must get exactly its own
// answer, once.
func TestRepliesConcurrent(t *testing.T) {
	const (
		waiters     = 32
		perWaiter   = 200
		deliverers  = 8
		registryCap = waiters // every waiter holds at most one slot
	)
	r := NewReplies("n/1", registryCap)
	work := make(chan uint64, waiters)

	var dwg sync.WaitGroup
	for d := 0; d < deliverers; d++ {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for seq := range work {
				res := resultFor(seq)
				// A foreign copy first: it must neither be delivered nor
				// consume the waiter.
				r.Deliver("n/2", seq, &res)
				r.Deliver("n/1", seq, &res)
			}
		}()
	}

	var wwg sync.WaitGroup
	errs := make(chan string, waiters)
	for w := 0; w < waiters; w++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := 0; i < perWaiter; i++ {
				seq, ch, ok := r.Register()
				if !ok {
					errs <- "Register refused below the limit"
					return
				}
				work <- seq
				got := <-ch
				if want := resultFor(seq); got != want {
					errs <- "waiter got another request's answer"
					return
				}
				select {
				case extra := <-ch:
					_ = extra
					errs <- "waiter got a second answer"
					return
				default:
				}
			}
		}()
	}
	wwg.Wait()
	close(work)
	dwg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if r.Len() != 0 {
		t.Fatalf("Len() = %d after all answers", r.Len())
	}
	if got, want := r.Foreign.Load(), int64(waiters*perWaiter); got != want {
		t.Fatalf("Foreign = %d, want %d", got, want)
	}
	if r.Dropped.Load() != 0 {
		t.Fatalf("Dropped = %d, want 0", r.Dropped.Load())
	}
}

// TestRepliesConcurrentForget races a waiter giving up against its answer
// arriving: exactly one of them wins, the slot is freed exactly once, and an
// answer that lost the race is counted as dropped.
func TestRepliesConcurrentForget(t *testing.T) {
	const (
		workers = 16
		rounds  = 300
	)
	r := NewReplies("n/1", workers)
	var delivered, forgotten sync.Map
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				seq, ch, ok := r.Register()
				if !ok {
					t.Error("Register refused below the limit")
					return
				}
				res := resultFor(seq)
				done := make(chan struct{})
				go func() {
					r.Deliver("n/1", seq, &res)
					close(done)
				}()
				r.Forget(seq)
				<-done
				select {
				case got := <-ch:
					if got != res {
						t.Errorf("got %+v, want %+v", got, res)
					}
					delivered.Store(seq, true)
				default:
					forgotten.Store(seq, true)
				}
			}
		}()
	}
	wg.Wait()
	if r.Len() != 0 {
		t.Fatalf("Len() = %d after every waiter finished", r.Len())
	}
	n := 0
	forgotten.Range(func(_, _ any) bool { n++; return true })
	if got := r.Dropped.Load(); got != int64(n) {
		t.Fatalf("Dropped = %d, want %d (answers that lost to Forget)", got, n)
	}
}
