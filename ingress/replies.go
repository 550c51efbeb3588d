package ingress

import (
	"sync"
	"sync/atomic"

	"github.com/bursar/bursar/ledger"
)

const replyShards = 64

// Replies is the registry of requests waiting for their answer. The owner
// of the command's partition delivers the result; the waiting handler
// picks it up. It is bounded: Register refuses beyond its limit.
type Replies struct {
	node   string // this ingress instance: node ID + boot, as written in ReplyNode
	limit  int64
	n      atomic.Int64
	seq    atomic.Uint64
	shards [replyShards]replyShard

	// Dropped counts answers nobody waited for any more (timed out, or a
	// replay after a restart).
	Dropped atomic.Int64
	// Foreign counts answers addressed to another node; forwarding them is
	// the cluster's job.
	Foreign atomic.Int64
}

type replyShard struct {
	mu sync.Mutex
	m  map[uint64]replyWaiter
}

// replyWaiter is where one answer goes: a request's own channel, or the
// channel a whole batch shares (with the sequence number, to tell its
// items apart). One of the two is set.
type replyWaiter struct {
	ch    chan ledger.Result
	batch chan batchReply
}

// batchReply is one answer to an item of a batch.
type batchReply struct {
	seq uint64
	res ledger.Result
}

// NewReplies returns a registry for instance node holding at most limit
// waiters.
func NewReplies(node string, limit int) *Replies {
	r := &Replies{node: node, limit: int64(limit)}
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]replyWaiter)
	}
	return r
}

// Node is the instance name commands carry in ReplyNode.
func (r *Replies) Node() string { return r.node }

// Register reserves a sequence number and the channel its answer arrives
// on. ok is false when the registry is full.
func (r *Replies) Register() (seq uint64, ch chan ledger.Result, ok bool) {
	if r.n.Add(1) > r.limit {
		r.n.Add(-1)
		return 0, nil, false
	}
	seq = r.seq.Add(1)
	ch = make(chan ledger.Result, 1)
	s := &r.shards[seq%replyShards]
	s.mu.Lock()
	s.m[seq] = replyWaiter{ch: ch}
	s.mu.Unlock()
	return seq, ch, true
}

// RegisterBatch reserves n consecutive sequence numbers, first to
// first+n-1, whose answers all arrive on ch, each with its sequence
// number. It takes all n places or none: ok is false when the registry
// cannot hold them all. ch has room for every answer, so Deliver never
// blocks on it.
func (r *Replies) RegisterBatch(n int) (first uint64, ch chan batchReply, ok bool) {
	if n < 1 {
		panic("ingress: RegisterBatch of no items")
	}
	if r.n.Add(int64(n)) > r.limit {
		r.n.Add(-int64(n))
		return 0, nil, false
	}
	last := r.seq.Add(uint64(n))
	first = last - uint64(n) + 1
	ch = make(chan batchReply, n)
	for seq := first; seq <= last; seq++ {
		s := &r.shards[seq%replyShards]
		s.mu.Lock()
		s.m[seq] = replyWaiter{batch: ch}
		s.mu.Unlock()
	}
	return first, ch, true
}

// Forget drops a waiter (answered, or given up).
func (r *Replies) Forget(seq uint64) {
	s := &r.shards[seq%replyShards]
	s.mu.Lock()
	if _, ok := s.m[seq]; ok {
		delete(s.m, seq)
		r.n.Add(-1)
	}
	s.mu.Unlock()
}

// Deliver hands a result to its waiter. It never blocks.
func (r *Replies) Deliver(node string, seq uint64, res *ledger.Result) {
	if node != r.node {
		r.Foreign.Add(1)
		return
	}
	s := &r.shards[seq%replyShards]
	s.mu.Lock()
	w, ok := s.m[seq]
	if ok {
		delete(s.m, seq)
		r.n.Add(-1)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		r.Dropped.Add(1)
	case w.batch != nil:
		w.batch <- batchReply{seq: seq, res: *res}
	default:
		w.ch <- *res
	}
}

// Len is the number of waiters.
func (r *Replies) Len() int64 { return r.n.Load() }
