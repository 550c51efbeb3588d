package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/bursar/bursar/cluster"
	"github.com/bursar/bursar/engine"
)

// nodeMigrations runs slot migrations on this node for the admin API
// (cluster.Migrations), keeps the node's routes fresh (the routing's poll,
// kicked when a peer gossips a newer map), gossips the version it routes
// by, and resumes a migration that stopped moving: the driver that
// started it crashed or was stopped. Two drivers at once only repeat
// barriers, which the engines ignore.
type nodeMigrations struct {
	ctx      context.Context
	log      *slog.Logger
	mig      *engine.Migrator
	routing  *engine.Routing
	members  *cluster.Membership
	resumeIn time.Duration // a migration with no handover this long is resumed here

	changed chan struct{} // the routes changed (watchRoutes)

	mu       sync.Mutex
	running  bool
	progress time.Time // the last change of the routes while a migration is in flight
	lastSeen *engine.Routes
}

// errMigrationRunning is the admin API's 409.
type errMigrationRunning struct{}

func (errMigrationRunning) Error() string {
	return "a slot migration is running on this node; see GET /internal/partitions/migration"
}
func (errMigrationRunning) Conflict() bool { return true }

func (m *nodeMigrations) start(run func(ctx context.Context) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return errMigrationRunning{}
	}
	m.goLocked(run)
	return nil
}

// goLocked runs a driver in the background (callers hold m.mu and have
// checked that none runs here). Another node's driver is not a failure:
// it finishes the migration.
func (m *nodeMigrations) goLocked(run func(ctx context.Context) error) {
	m.running = true
	go func() {
		err := run(m.ctx)
		switch {
		case err == nil, m.ctx.Err() != nil:
		case errors.Is(err, engine.ErrDrivenElsewhere):
			m.log.Info("another node drives the slot migration", "err", err)
		default:
			m.log.Error("slot migration failed; run it again to resume (a node resumes it by itself after a while)", "err", err)
		}
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()
}

// Scale implements cluster.Migrations.
func (m *nodeMigrations) Scale(to int32) error {
	if err := engine.CheckScale(m.routing.Load().Partitions(), to); err != nil {
		return err
	}
	return m.start(func(ctx context.Context) error { return m.mig.Scale(ctx, to) })
}

// MoveSlot implements cluster.Migrations.
func (m *nodeMigrations) MoveSlot(slot int, to int32) error {
	if err := engine.CheckMoveSlot(m.routing.Load().Partitions(), slot, to); err != nil {
		return err
	}
	return m.start(func(ctx context.Context) error { return m.mig.MoveSlot(ctx, slot, to) })
}

// migrationView is GET /internal/partitions/migration.
type migrationView struct {
	SlotMapVersion int64                  `json:"slot_map_version"`
	Partitions     int32                  `json:"partitions"`
	InFlight       bool                   `json:"in_flight"`
	Groups         int                    `json:"groups"`
	HandedOver     int                    `json:"handed_over"`
	Driver         engine.MigrationStatus `json:"driver"` // this node's last run
}

// Status implements cluster.Migrations.
func (m *nodeMigrations) Status() any {
	rt := m.routing.Load()
	hd, groups := rt.Progress()
	v := migrationView{SlotMapVersion: rt.Slots.Version, Partitions: rt.Partitions(), InFlight: rt.Mig != nil,
		Groups: groups, HandedOver: hd, Driver: m.mig.Status()}
	m.mu.Lock()
	if m.running && !v.Driver.Running {
		// Started and not yet begun (or ending): running, with nothing to show.
		v.Driver = engine.MigrationStatus{Running: true, Step: "starting"}
	}
	m.mu.Unlock()
	return v
}

// watchRoutes makes the routing tell run about changes, which gossips
// the version: gossip may wait, and the routing's callers (the flusher
// among them) must not. Called before run and before anything refreshes.
func (m *nodeMigrations) watchRoutes() {
	m.changed = make(chan struct{}, 1)
	m.routing.OnChange = func(*engine.Routes) {
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
}

// run keeps the routes fresh, gossips their version and watches
// migrations until ctx ends.
func (m *nodeMigrations) run() {
	go m.routing.Run(m.ctx)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.changed:
			if err := m.members.SetSlotMap(m.routing.Load().Slots.Version); err != nil {
				m.log.Warn("gossiping the slot map version", "err", err)
			}
			continue
		case <-t.C:
		}
		rt := m.routing.Load()
		for _, mem := range m.members.Members() {
			if mem.SlotMap > rt.Slots.Version {
				m.routing.Kick()
				break
			}
		}
		m.watch(rt)
	}
}

// watch resumes a migration in flight that has not moved for resumeIn.
func (m *nodeMigrations) watch(rt *engine.Routes) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rt != m.lastSeen {
		m.lastSeen, m.progress = rt, time.Now()
	}
	if rt.Mig == nil || m.running || time.Since(m.progress) < m.resumeIn {
		return
	}
	m.log.Warn("a slot migration has not moved; resuming it here", "slot_map_version", rt.Slots.Version, "idle", time.Since(m.progress).Round(time.Second))
	m.progress = time.Now()
	m.goLocked(m.mig.Resume)
}
