package cluster

import (
	"context"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/bursar/bursar/storage"
)

// Owner returns the rendezvous (highest random weight) owner of partition p
// among nodes: the node whose hash of (node, p) is highest. A join or leave
// moves only the partitions the joining or leaving node wins or held.
// Empty when nodes is empty.
func Owner(p int32, nodes []string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(int(p))))
		// FNV's low bits mix poorly for short inputs; finish with a
		// splitmix64 step so scores spread evenly.
		s := mix(h.Sum64())
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// EngineNodes returns the IDs of the members that should own partitions:
// engine role, not draining.
func EngineNodes(members []Member) []string {
	var out []string
	for _, m := range members {
		if m.HasRole("engine") && !m.Draining {
			out = append(out, m.ID)
		}
	}
	return out
}

// LocalEngine is the engine as the coordinator drives it.
type LocalEngine interface {
	Acquire(ctx context.Context, partitions ...int32) error
	Release(ctx context.Context, p int32) error
	// OwnedEpochs returns the owned partitions and the epoch each was
	// acquired under.
	OwnedEpochs() map[int32]int64
	// Drop stops a partition at once, without flushing or releasing: used
	// when PostgreSQL shows another node acquired it (this node is a
	// zombie for it).
	Drop(p int32)
}

// PartitionTable reads partition ownership from PostgreSQL.
type PartitionTable interface {
	Partitions(ctx context.Context) ([]storage.PartitionRow, error)
}

// Coordinator moves partitions to and from this node's engine as
// membership changes. Gossip proposes, PostgreSQL disposes: a node acquires
// a partition only when its owner in PostgreSQL released it, is this node,
// or is no longer a live member; the acquisition bumps the epoch, which
// fences any owner that is still running.
type Coordinator struct {
	self       string
	partitions func() int32
	members    *Membership
	engine     LocalEngine
	table      PartitionTable
	log        *slog.Logger
	interval   time.Duration

	started time.Time
	// TakeoverGrace is how long after start this node waits before taking a
	// partition from an owner it does not see: gossip needs a few rounds to
	// show every live node, and a takeover of a live owner only causes churn
	// (it is fenced, never wrong). Default 3s.
	TakeoverGrace time.Duration
}

// NewCoordinator returns a coordinator for this node's engine.
//
// partitions is the partition count to own, asked at every reconcile
// (it grows when the slot map routes to more partitions).
func NewCoordinator(self string, partitions func() int32, members *Membership, eng LocalEngine, table PartitionTable, log *slog.Logger) *Coordinator {
	return &Coordinator{
		self: self, partitions: partitions, members: members, engine: eng, table: table, log: log,
		interval: 250 * time.Millisecond,
		started:  time.Now(), TakeoverGrace: 3 * time.Second,
	}
}

// Run reconciles until ctx ends: at every membership change and every
// interval (ownership in PostgreSQL changes without gossip).
func (c *Coordinator) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconciling partition ownership", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.members.Changed():
		case <-t.C:
		}
	}
}

// Desired returns the partitions' owners by rendezvous over the live engine
// nodes this node sees.
func (c *Coordinator) Desired() []string {
	nodes := EngineNodes(c.members.Members())
	out := make([]string, c.partitions())
	for p := range out {
		out[p] = Owner(int32(p), nodes)
	}
	return out
}

func (c *Coordinator) reconcile(ctx context.Context) error {
	members := c.members.Members()
	desired := make([]string, c.partitions())
	nodes := EngineNodes(members)
	for p := range desired {
		desired[p] = Owner(int32(p), nodes)
	}
	rows, err := c.table.Partitions(ctx)
	if err != nil {
		return err
	}
	holder := make(map[int32]storage.PartitionRow, len(rows))
	for _, r := range rows {
		holder[r.Partition] = r
	}
	// Fencing first: a partition another node acquired since (this node
	// was paused or cut off) is dropped now rather than at its next flush.
	epochs := c.engine.OwnedEpochs()
	for p, epoch := range epochs {
		if r, ok := holder[p]; ok && r.Epoch != epoch {
			c.log.Warn("partition acquired by another node; dropping it", "partition", p, "epoch", epoch, "owner", r.Owner, "owner_epoch", r.Epoch)
			c.engine.Drop(p)
			delete(epochs, p)
		}
	}
	var owned []int32
	for p := range epochs {
		owned = append(owned, p)
	}
	for _, p := range owned {
		if desired[p] == c.self {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.engine.Release(rctx, p)
		cancel()
		if err != nil {
			return err
		}
	}
	var want []int32
	for p, o := range desired {
		if o == c.self && !slices.Contains(owned, int32(p)) {
			want = append(want, int32(p))
		}
	}
	if len(want) == 0 {
		return nil
	}
	alive := make(map[string]bool, len(members))
	for _, m := range members {
		alive[m.ID] = true
	}
	var take []int32
	for _, p := range want {
		h := holder[p].Owner
		if h == "" || h == c.self || (!alive[h] && time.Since(c.started) >= c.TakeoverGrace) {
			take = append(take, p)
		}
	}
	if len(take) == 0 {
		return nil
	}
	if err := c.engine.Acquire(ctx, take...); err != nil {
		return err
	}
	// The engine skips a partition it restarted until its backoff ends.
	now := c.engine.OwnedEpochs()
	take = slices.DeleteFunc(take, func(p int32) bool { _, ok := now[p]; return !ok })
	if len(take) > 0 {
		c.log.Info("partitions acquired", "partitions", take)
	}
	return nil
}

// Settled reports whether this node owns every partition the rendezvous
// assigns it, as it sees the cluster now: the readiness of a node's
// ownership.
func (c *Coordinator) Settled() bool {
	owned := c.engine.OwnedEpochs()
	for p, o := range c.Desired() {
		if _, ok := owned[int32(p)]; (o == c.self) != ok {
			return false
		}
	}
	return true
}
