package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Routes is one immutable view of how accounts route to partitions: the
// newest slot map and, while slots move, the migration to it from the map
// before, with the groups PostgreSQL records as handed over.
type Routes struct {
	// Slots is the newest slot map: ingresses route by it.
	Slots *ledger.SlotMap
	// Mig is the migration to Slots in flight; nil when every group is
	// handed over (or Slots is version 0).
	Mig    *ledger.Migration
	handed []bool // per group of Mig
}

// NewRoutes returns the routes of a slot map with no migration in flight.
func NewRoutes(m *ledger.SlotMap) *Routes { return &Routes{Slots: m} }

// Handed reports whether group g of the migration in flight is handed
// over (true without one).
func (r *Routes) Handed(g int) bool { return r.Mig == nil || r.handed[g] }

// Partitions is the number of partitions the newest map routes to.
func (r *Routes) Partitions() int32 { return r.Slots.Partitions }

// PartitionOf is the partition holding the newest state of an account,
// where its reads go and where new commands are best appended: its old
// one while its group is not handed over, else the newest map's. An
// ingress routing a moving slot to the new partition at once would have
// it wait there (held) until the driver reaches its group; routed to the
// old one, it is applied there until the barrier and forwarded after it,
// and only the few between barrier and handover wait.
func (r *Routes) PartitionOf(id uuid.UUID) int32 {
	if r.Mig == nil {
		return r.Slots.PartitionOfAccount(id)
	}
	return r.Mig.PartitionOf(ledger.SlotOf(id), r.Handed)
}

// Progress counts the groups of the migration in flight that are handed
// over, of all of them (0, 0 without one).
func (r *Routes) Progress() (handed, groups int) {
	if r.Mig == nil {
		return 0, 0
	}
	for _, h := range r.handed {
		if h {
			handed++
		}
	}
	return handed, len(r.handed)
}

// withHanded returns r with group g handed over (the migration ends with
// its last group).
func (r *Routes) withHanded(g int) *Routes {
	if r.Mig == nil || r.handed[g] {
		return r
	}
	h := append([]bool(nil), r.handed...)
	h[g] = true
	return buildRoutes(r.Slots, r.Mig, h)
}

func buildRoutes(slots *ledger.SlotMap, mig *ledger.Migration, handed []bool) *Routes {
	r := &Routes{Slots: slots, Mig: mig, handed: handed}
	if mig != nil {
		all := true
		for _, h := range handed {
			all = all && h
		}
		if all {
			r.Mig, r.handed = nil, nil
		}
	}
	return r
}

// RoutesFrom returns the routes PostgreSQL's state gives.
func RoutesFrom(st *storage.RouteState) *Routes {
	if st.Prev == nil {
		return NewRoutes(st.Slots.Map)
	}
	mig := ledger.NewMigration(st.Prev.Map, st.Slots.Map)
	handed := make([]bool, len(mig.Groups()))
	for g := range handed {
		_, handed[g] = st.Handed[g]
	}
	return buildRoutes(st.Slots.Map, mig, handed)
}

// RouteStore is where Routing reads the slot maps and handovers.
type RouteStore interface {
	SlotMapVersion(ctx context.Context) (int64, error)
	RouteState(ctx context.Context) (*storage.RouteState, error)
	Handovers(ctx context.Context, version int64) ([]storage.HandoverRow, error)
}

// Routing is a node's current Routes, shared by its ingress, engine,
// router and coordinator, refreshed from PostgreSQL: every PollInterval,
// every FastInterval while a migration is in flight, and when kicked (a
// peer gossips a newer map, a record carries one).
type Routing struct {
	cur   atomic.Pointer[Routes]
	store RouteStore
	log   *slog.Logger
	// clients produce or consume bursar.commands: a map routing to more
	// partitions is published only once each of them knows the topic has
	// them (a produce to a partition a client does not know fails).
	clients []*kgo.Client
	known   atomic.Int32 // partitions every client knows of

	ioMu    sync.Mutex // serializes Refresh
	mu      sync.Mutex // guards publishing: cur's stores and changed
	changed chan struct{}
	kick    chan struct{}

	// PollInterval and FastInterval: see Routing. Defaults 1s and 20ms.
	PollInterval, FastInterval time.Duration
	// OnChange, if set, is called after a new Routes is published.
	OnChange func(*Routes)
}

// NewRouting returns a Routing starting at initial.
func NewRouting(initial *Routes, store RouteStore, log *slog.Logger, clients ...*kgo.Client) *Routing {
	r := &Routing{store: store, log: log, clients: clients, changed: make(chan struct{}), kick: make(chan struct{}, 1),
		PollInterval: time.Second, FastInterval: 20 * time.Millisecond}
	r.cur.Store(initial)
	r.known.Store(initial.Slots.Partitions)
	return r
}

// Load returns the current routes.
func (r *Routing) Load() *Routes { return r.cur.Load() }

// Changed returns a channel closed when the routes change next.
func (r *Routing) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Kick asks Run to refresh now.
func (r *Routing) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// publishLocked makes next current; callers hold r.mu.
func (r *Routing) publishLocked(next *Routes) {
	r.cur.Store(next)
	close(r.changed)
	r.changed = make(chan struct{})
}

// notify tells OnChange, outside r.mu (it may gossip, which can wait).
func (r *Routing) notify(next *Routes) {
	if r.OnChange != nil {
		r.OnChange(next)
	}
}

// MarkHanded records that this node committed the handover of group g of
// the migration to version (the flush that passed the barrier).
func (r *Routing) MarkHanded(version int64, g int) {
	r.mu.Lock()
	cur := r.cur.Load()
	if cur.Mig == nil || cur.Slots.Version != version {
		r.mu.Unlock()
		return
	}
	next := cur.withHanded(g)
	if next != cur {
		r.publishLocked(next)
	}
	r.mu.Unlock()
	if next != cur {
		r.notify(next)
	}
}

// refreshTimeout bounds one Refresh.
const refreshTimeout = 10 * time.Second

// Refresh reads the routes from PostgreSQL and publishes them when they
// changed. Refreshes run one at a time, and the I/O runs outside the lock
// every reader of Changed and MarkHanded takes. A map never goes back,
// and a handover this node knows of is never forgotten.
func (r *Routing) Refresh(ctx context.Context) error {
	if r.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	r.ioMu.Lock()
	defer r.ioMu.Unlock()
	cur := r.cur.Load()
	v, err := r.store.SlotMapVersion(ctx)
	if err != nil {
		return err
	}
	var routes *Routes
	switch {
	case v < cur.Slots.Version, v == cur.Slots.Version && cur.Mig == nil:
		return nil
	case v == cur.Slots.Version:
		// The same migration: only its handovers can have changed.
		hs, err := r.store.Handovers(ctx, v)
		if err != nil {
			return err
		}
		handed := make([]bool, len(cur.Mig.Groups()))
		for _, h := range hs {
			if h.Group < len(handed) {
				handed[h.Group] = true
			}
		}
		routes = buildRoutes(cur.Slots, cur.Mig, handed)
	default:
		st, err := r.store.RouteState(ctx)
		if err != nil {
			return err
		}
		if st.Slots.Map.Version <= cur.Slots.Version {
			return nil
		}
		if n := st.Slots.Map.Partitions; n > r.known.Load() {
			if err := r.awaitPartitions(ctx, n); err != nil {
				return err
			}
		}
		routes = RoutesFrom(st)
	}
	r.mu.Lock()
	now := r.cur.Load() // MarkHanded may have moved it meanwhile
	if routes.Slots.Version == now.Slots.Version && now.Mig == nil {
		r.mu.Unlock()
		return nil
	}
	if routes.Slots.Version == now.Slots.Version && routes.Mig != nil {
		h := slices.Clone(routes.handed)
		for g := range h {
			h[g] = h[g] || now.Handed(g) // committed here; the read may predate it
		}
		routes = buildRoutes(routes.Slots, routes.Mig, h)
		if sameHanded(now, routes) {
			r.mu.Unlock()
			return nil
		}
	}
	r.publishLocked(routes)
	r.mu.Unlock()
	r.notify(routes)
	if routes.Slots.Version != cur.Slots.Version {
		hd, n := routes.Progress()
		r.log.Info("slot map loaded", "version", routes.Slots.Version, "partitions", routes.Slots.Partitions, "groups", n, "handed_over", hd)
	}
	return nil
}

func sameHanded(a, b *Routes) bool {
	if (a.Mig == nil) != (b.Mig == nil) {
		return false
	}
	for g := range a.handed {
		if a.handed[g] != b.handed[g] {
			return false
		}
	}
	return true
}

// awaitPartitions returns once every client knows bursar.commands has n
// partitions (the driver grows the topic before it stores a wider map).
func (r *Routing) awaitPartitions(ctx context.Context, n int32) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, cl := range r.clients {
		cl.ForceMetadataRefresh()
	}
	for {
		missing := false
		for _, cl := range r.clients {
			if leader, _, _ := cl.PartitionLeader(kafkalog.TopicCommands, 0); leader < 0 {
				continue // it has not loaded the topic yet: its first produce loads it whole
			}
			if leader, _, _ := cl.PartitionLeader(kafkalog.TopicCommands, n-1); leader < 0 {
				missing = true
				cl.ForceMetadataRefresh()
			}
		}
		if !missing {
			r.known.Store(n)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("engine: the Kafka clients do not see partition %d of %s yet: %w", n-1, kafkalog.TopicCommands, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Run refreshes until ctx ends, at most once per FastInterval however
// often it is kicked.
func (r *Routing) Run(ctx context.Context) {
	last := time.Now()
	for {
		wait := r.PollInterval
		if r.Load().Mig != nil {
			wait = r.FastInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			if d := r.FastInterval - time.Since(last); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		case <-time.After(wait):
		}
		last = time.Now()
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, storage.ErrNotFound) {
			r.log.Warn("refreshing the slot map", "err", err)
		}
	}
}
