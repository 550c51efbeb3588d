package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// MigrationStore is what a Migrator needs from PostgreSQL.
type MigrationStore interface {
	RouteState(ctx context.Context) (*storage.RouteState, error)
	AddSlotMap(ctx context.Context, m *ledger.SlotMap) error
	// LockMigrations takes the cluster's one driver lock (released by
	// unlock, or when the process dies); storage.ErrLocked when another
	// driver holds it.
	LockMigrations(ctx context.Context) (unlock func(), err error)
}

// Migrator drives slot migrations (ledger.Migration): it grows
// bursar.commands, stores the next slot map, and moves its groups one at
// a time, appending each group's barrier to the old partition and waiting
// until that partition's owner records the handover. Its only state is
// PostgreSQL's (the maps and the handovers), so any run resumes what an
// earlier one left, and running it again for the same target does
// nothing.
type Migrator struct {
	Store  MigrationStore
	Client *kgo.Client // produces the barriers and grows the topic
	Log    *slog.Logger
	// Poll is how often a handover is looked for. Default 10ms.
	Poll time.Duration
	// Routing, if set, is refreshed after each step (this node then routes
	// by the new map at once instead of at its next poll).
	Routing *Routing

	mu   sync.Mutex
	last MigrationStatus
}

// MigrationStatus is a migration's progress, as `bursar partitions scale`
// and the admin API show it.
type MigrationStatus struct {
	Running     bool   `json:"running"`
	FromVersion int64  `json:"from_version"`
	ToVersion   int64  `json:"to_version"`
	Partitions  int32  `json:"partitions"`
	Groups      int    `json:"groups"`
	HandedOver  int    `json:"handed_over"`
	SlotsMoved  int    `json:"slots_moved"`
	SlotsTotal  int    `json:"slots_to_move"`
	Step        string `json:"step"`
	// Steps are the run's steps so far, oldest first, each with its time
	// since the start (the first stepsMax; StepsDropped counts the rest).
	Steps        []string  `json:"steps"`
	StepsDropped int       `json:"steps_dropped,omitempty"`
	Started      time.Time `json:"started,omitzero"`
	Finished     time.Time `json:"finished,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// Status returns the progress of the last run.
func (m *Migrator) Status() MigrationStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.last
	st.Steps = slices.Clone(st.Steps)
	return st
}

// stepsMax bounds MigrationStatus.Steps.
const stepsMax = 512

func (m *Migrator) update(f func(*MigrationStatus)) {
	m.mu.Lock()
	prev := m.last.Step
	f(&m.last)
	if m.last.Step != prev && m.last.Step != "" {
		if len(m.last.Steps) < stepsMax {
			m.last.Steps = append(m.last.Steps, fmt.Sprintf("%8s  %s", time.Since(m.last.Started).Round(time.Millisecond), m.last.Step))
		} else {
			m.last.StepsDropped++
		}
	}
	st := m.last
	st.Steps = nil
	m.mu.Unlock()
	if st.Step != "" {
		m.Log.Info("slot migration", "step", st.Step, "to_version", st.ToVersion, "handed_over", st.HandedOver, "groups", st.Groups)
	}
}

// Errors of a migration request.
var (
	ErrShrink      = errors.New("engine: the partition count only grows (a slot map never routes to fewer partitions)")
	ErrMigrating   = errors.New("engine: a migration is already running on this node")
	ErrNoSuchSlot  = errors.New("engine: no such slot")
	ErrNoPartition = errors.New("engine: the slot map does not route to that partition")
	// ErrDrivenElsewhere: another node drives a migration now (it holds
	// the driver lock in PostgreSQL).
	ErrDrivenElsewhere = errors.New("engine: another node drives a slot migration now; follow it with bursar partitions ls")
)

// CheckScale refuses a scale to n partitions from a map routing to cur:
// out of range, or fewer (ErrShrink). The driver and the admin API (which
// answers at once, before it starts the driver) both ask it.
func CheckScale(cur, n int32) error {
	switch {
	case n <= 0 || n > ledger.PartitionsMax:
		return fmt.Errorf("engine: partition count %d outside 1..%d", n, ledger.PartitionsMax)
	case n < cur:
		return fmt.Errorf("%w: the slot map routes to %d partitions", ErrShrink, cur)
	}
	return nil
}

// CheckMoveSlot refuses moving slot to partition to of a map routing to
// partitions: an unknown slot (ErrNoSuchSlot) or partition (ErrNoPartition).
func CheckMoveSlot(partitions int32, slot int, to int32) error {
	switch {
	case slot < 0 || slot >= ledger.SlotCount:
		return fmt.Errorf("%w: %d (slots are 0..%d)", ErrNoSuchSlot, slot, ledger.SlotCount-1)
	case to < 0 || to >= partitions:
		return fmt.Errorf("%w: %d (it routes to 0..%d; scale first)", ErrNoPartition, to, partitions-1)
	}
	return nil
}

// inFlight reports whether st has a migration whose groups are not all
// handed over, and returns it.
func inFlight(st *storage.RouteState) (*ledger.Migration, bool) {
	if st.Prev == nil {
		return nil, false
	}
	mig := ledger.NewMigration(st.Prev.Map, st.Slots.Map)
	return mig, len(st.Handed) < len(mig.Groups())
}

// Scale grows the command topic to n partitions and moves about 1 − old/n
// of the slots to the new ones. A migration in flight is finished first;
// at n already, it does nothing.
func (m *Migrator) Scale(ctx context.Context, n int32) error {
	if err := CheckScale(0, n); err != nil {
		return err
	}
	return m.run(ctx, func(cur *ledger.SlotMap) (*ledger.SlotMap, error) {
		if err := CheckScale(cur.Partitions, n); err != nil || n == cur.Partitions {
			return nil, err
		}
		if err := m.growTopic(ctx, n); err != nil {
			return nil, err
		}
		return cur.Scale(n)
	})
}

// MoveSlot moves one slot to partition to (a hot account's slot to a
// partition of its own). A migration in flight is finished first; a slot
// already there is left alone.
func (m *Migrator) MoveSlot(ctx context.Context, slot int, to int32) error {
	if err := CheckMoveSlot(ledger.PartitionsMax, slot, to); err != nil {
		return err
	}
	return m.run(ctx, func(cur *ledger.SlotMap) (*ledger.SlotMap, error) {
		if err := CheckMoveSlot(cur.Partitions, slot, to); err != nil {
			return nil, err
		}
		if cur.PartitionOf(slot) == to {
			return nil, nil
		}
		return cur.MoveSlot(slot, to)
	})
}

// Resume finishes the migration in flight, if any.
func (m *Migrator) Resume(ctx context.Context) error {
	return m.run(ctx, func(*ledger.SlotMap) (*ledger.SlotMap, error) { return nil, nil })
}

// run finishes the migration in flight, then stores plan's next map (nil:
// nothing to do) and moves it.
func (m *Migrator) run(ctx context.Context, plan func(cur *ledger.SlotMap) (*ledger.SlotMap, error)) error {
	m.mu.Lock()
	if m.last.Running {
		m.mu.Unlock()
		return ErrMigrating
	}
	m.last = MigrationStatus{Running: true, Started: time.Now()}
	m.mu.Unlock()
	unlock, err := m.Store.LockMigrations(ctx)
	if errors.Is(err, storage.ErrLocked) {
		err = ErrDrivenElsewhere
	}
	if err == nil {
		err = m.runLocked(ctx, plan)
		unlock()
	}
	m.update(func(s *MigrationStatus) {
		s.Running, s.Finished = false, time.Now()
		if err != nil {
			s.Error, s.Step = err.Error(), "failed: "+err.Error()
		} else {
			s.Step = "done"
		}
	})
	return err
}

func (m *Migrator) runLocked(ctx context.Context, plan func(cur *ledger.SlotMap) (*ledger.SlotMap, error)) error {
	planned := false
	for {
		st, err := m.Store.RouteState(ctx)
		if err != nil {
			return err
		}
		if mig, ok := inFlight(st); ok {
			if err := m.finish(ctx, mig, st.Handed); err != nil {
				return err
			}
			continue
		}
		if planned {
			return nil
		}
		cur := st.Slots.Map
		next, err := plan(cur)
		if err != nil {
			return err
		}
		if next == nil {
			m.update(func(s *MigrationStatus) {
				s.FromVersion, s.ToVersion, s.Partitions = cur.Version, cur.Version, cur.Partitions
				s.Step = fmt.Sprintf("nothing to move: slot map version %d already routes so (%d partitions)", cur.Version, cur.Partitions)
			})
			return nil
		}
		if err := ledger.NewMigration(cur, next).Validate(); err != nil {
			return err
		}
		switch err := m.Store.AddSlotMap(ctx, next); {
		case errors.Is(err, storage.ErrSlotMapConflict):
			continue // another driver stored a map first: finish that one, then plan again
		case err != nil:
			return err
		}
		planned = true
		m.refresh(ctx)
	}
}

func (m *Migrator) refresh(ctx context.Context) {
	if m.Routing != nil {
		if err := m.Routing.Refresh(ctx); err != nil {
			m.Log.Warn("refreshing the slot map after a migration step", "err", err)
		}
	}
}

// finish moves every group of mig not handed over yet, in order.
func (m *Migrator) finish(ctx context.Context, mig *ledger.Migration, handed map[int]storage.HandoverRow) error {
	groups := mig.Groups()
	total, moved := 0, 0
	for g, mv := range groups {
		total += len(mv.Slots)
		if _, ok := handed[g]; ok {
			moved += len(mv.Slots)
		}
	}
	m.update(func(s *MigrationStatus) {
		s.FromVersion, s.ToVersion, s.Partitions = mig.Prev.Version, mig.Next.Version, mig.Next.Partitions
		s.Groups, s.HandedOver, s.SlotsTotal, s.SlotsMoved = len(groups), len(handed), total, moved
		s.Step = fmt.Sprintf("moving %d slots in %d groups (%d handed over already)", total, len(groups), len(handed))
	})
	for g, mv := range groups {
		if _, ok := handed[g]; ok {
			continue
		}
		start := time.Now()
		b := ledger.Barrier{Version: mig.Next.Version, Group: g}
		rec := &kgo.Record{Topic: kafkalog.TopicCommands, Partition: mv.From, Value: b.AppendBinary(nil),
			Headers: []kgo.RecordHeader{kafkalog.SlotMapHeader(mig.Next.Version)}}
		if err := m.Client.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("engine: appending the barrier of group %d to partition %d: %w", g, mv.From, err)
		}
		m.update(func(s *MigrationStatus) {
			s.Step = fmt.Sprintf("group %d/%d: %d slots from partition %d to %d: barrier at offset %d, waiting for the handover", g+1, len(groups), len(mv.Slots), mv.From, mv.To, rec.Offset)
		})
		if err := m.awaitHandover(ctx, mig.Next.Version, g, mv); err != nil {
			return err
		}
		moved += len(mv.Slots)
		m.update(func(s *MigrationStatus) {
			s.HandedOver++
			s.SlotsMoved = moved
			s.Step = fmt.Sprintf("group %d/%d: %d slots from partition %d to %d handed over in %v", g+1, len(groups), len(mv.Slots), mv.From, mv.To, time.Since(start).Round(time.Millisecond))
		})
		m.refresh(ctx)
	}
	return nil
}

// awaitHandover polls PostgreSQL until group g of the migration to version
// is handed over: the old partition's owner applied the barrier and its
// flush past it committed.
func (m *Migrator) awaitHandover(ctx context.Context, version int64, g int, mv ledger.SlotMove) error {
	poll := m.Poll
	if poll <= 0 {
		poll = 10 * time.Millisecond
	}
	start, warned := time.Now(), time.Now()
	for {
		st, err := m.Store.RouteState(ctx)
		switch {
		case err != nil:
			m.Log.Warn("slot migration: reading the handovers failed; retrying", "err", err)
		case st.Slots.Map.Version != version:
			return fmt.Errorf("engine: slot map version %d replaced by %d during its migration", version, st.Slots.Map.Version)
		default:
			if _, ok := st.Handed[g]; ok {
				return nil
			}
		}
		if time.Since(warned) > 5*time.Second {
			warned = time.Now()
			m.Log.Warn("slot migration: still waiting for a handover: is partition's owner running and consuming?", "partition", mv.From, "group", g, "waited", time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("engine: waiting for partition %d to hand over group %d: %w (run the command again to resume)", mv.From, g, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// growTopic makes bursar.commands have at least n partitions.
func (m *Migrator) growTopic(ctx context.Context, n int32) error {
	adm := kadm.NewClient(m.Client)
	topics, err := adm.ListTopics(ctx, kafkalog.TopicCommands)
	if err != nil {
		return fmt.Errorf("engine: reading %s: %w", kafkalog.TopicCommands, err)
	}
	td, ok := topics[kafkalog.TopicCommands]
	if !ok || td.Err != nil {
		return fmt.Errorf("engine: reading %s: %v", kafkalog.TopicCommands, td.Err)
	}
	if int32(len(td.Partitions)) >= n {
		return nil
	}
	m.update(func(s *MigrationStatus) {
		s.Step = fmt.Sprintf("growing %s from %d to %d partitions", kafkalog.TopicCommands, len(td.Partitions), n)
	})
	resp, err := adm.UpdatePartitions(ctx, int(n), kafkalog.TopicCommands)
	if err != nil {
		return fmt.Errorf("engine: growing %s to %d partitions: %w", kafkalog.TopicCommands, n, err)
	}
	if r, ok := resp[kafkalog.TopicCommands]; ok && r.Err != nil {
		return fmt.Errorf("engine: growing %s to %d partitions: %w", kafkalog.TopicCommands, n, r.Err)
	}
	m.Client.ForceMetadataRefresh()
	return nil
}
