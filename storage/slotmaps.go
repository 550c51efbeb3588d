package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrSlotMapConflict is AddSlotMap's error when the map is not the
// successor of the newest one stored (another writer got there first).
var ErrSlotMapConflict = errors.New("storage: the slot map is not the successor of the newest one stored")

// SlotMap returns the newest slot map, or ErrNotFound if none is stored.
func (s *Store) SlotMap(ctx context.Context) (*ledger.SlotMap, error) {
	var enc []byte
	err := s.pool.QueryRow(ctx, `SELECT encoding FROM slot_maps ORDER BY version DESC LIMIT 1`).Scan(&enc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: slot map: %w", err)
	}
	m, err := ledger.DecodeSlotMap(enc)
	if err != nil {
		return nil, fmt.Errorf("storage: slot map: %w", err)
	}
	return m, nil
}

// AddSlotMap stores m as the newest map: version 0 when none is stored,
// else exactly one past the newest (ErrSlotMapConflict otherwise, also
// when a concurrent writer stored that version first).
func (s *Store) AddSlotMap(ctx context.Context, m *ledger.SlotMap) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO slot_maps (version, partitions, encoding)
SELECT $1, $2, $3
WHERE $1 = coalesce((SELECT max(version) + 1 FROM slot_maps), 0)`, m.Version, m.Partitions, m.AppendBinary(nil))
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "23505":
		return ErrSlotMapConflict
	case err != nil:
		return fmt.Errorf("storage: add slot map: %w", err)
	case tag.RowsAffected() == 0:
		return ErrSlotMapConflict
	}
	return nil
}

// InitSlotMap returns the newest slot map, storing version 0 for
// partitions when none is stored (a cluster's first start, or its first
// start on this release). Two nodes starting at once agree: one stores
// it, the other reads it.
func (s *Store) InitSlotMap(ctx context.Context, partitions int32) (*ledger.SlotMap, error) {
	m, err := s.SlotMap(ctx)
	if !errors.Is(err, ErrNotFound) {
		return m, err
	}
	if err := s.AddSlotMap(ctx, ledger.NewSlotMap(partitions)); err != nil && !errors.Is(err, ErrSlotMapConflict) {
		return nil, err
	}
	return s.SlotMap(ctx)
}

// RouteState is what routes records while slots move: the newest slot
// map, the one before it (nil at version 0) and the groups of the
// migration between them that are handed over.
type RouteState struct {
	Slots  *SlotMapRow
	Prev   *SlotMapRow
	Handed map[int]HandoverRow
}

// SlotMapRow is a stored slot map.
type SlotMapRow struct {
	Map     *ledger.SlotMap
	Created time.Time
}

// HandoverRow is a row of slot_handovers.
type HandoverRow struct {
	Group         int       `json:"group"`
	From          int32     `json:"from"`
	To            int32     `json:"to"`
	Slots         int       `json:"slots"`
	BarrierOffset int64     `json:"barrier_offset"`
	HandedAt      time.Time `json:"handed_at"`
}

// SlotMapVersion returns the newest slot map's version (-1 when none is
// stored): the cheap query a node polls to see a new map.
func (s *Store) SlotMapVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), -1) FROM slot_maps`).Scan(&v); err != nil {
		return 0, fmt.Errorf("storage: slot map version: %w", err)
	}
	return v, nil
}

// RouteState reads the newest two slot maps and the handovers of the
// migration between them (ErrNotFound when no map is stored).
func (s *Store) RouteState(ctx context.Context) (*RouteState, error) {
	rows, err := s.pool.Query(ctx, `SELECT encoding, created_at FROM slot_maps ORDER BY version DESC LIMIT 2`)
	if err != nil {
		return nil, fmt.Errorf("storage: route state: %w", err)
	}
	var maps []*SlotMapRow
	for rows.Next() {
		var enc []byte
		var at time.Time
		if err := rows.Scan(&enc, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: route state: %w", err)
		}
		m, err := ledger.DecodeSlotMap(enc)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: route state: %w", err)
		}
		maps = append(maps, &SlotMapRow{Map: m, Created: at})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: route state: %w", err)
	}
	if len(maps) == 0 {
		return nil, ErrNotFound
	}
	st := &RouteState{Slots: maps[0], Handed: map[int]HandoverRow{}}
	if len(maps) < 2 {
		return st, nil
	}
	st.Prev = maps[1]
	hs, err := s.Handovers(ctx, st.Slots.Map.Version)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		st.Handed[h.Group] = h
	}
	return st, nil
}

// Handovers returns the handed-over groups of the migration to slot map
// version, by group.
func (s *Store) Handovers(ctx context.Context, version int64) ([]HandoverRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT grp, from_partition, to_partition, slots, barrier_offset, handed_at
FROM slot_handovers WHERE version = $1 ORDER BY grp`, version)
	if err != nil {
		return nil, fmt.Errorf("storage: handovers: %w", err)
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HandoverRow, error) {
		var h HandoverRow
		err := r.Scan(&h.Group, &h.From, &h.To, &h.Slots, &h.BarrierOffset, &h.HandedAt)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: handovers: %w", err)
	}
	return hs, nil
}

// ErrLocked is LockMigrations' error when another session holds the lock.
var ErrLocked = errors.New("storage: the lock is held by another session")

// migrationLock is the advisory lock key of the slot migration driver.
const migrationLock = 0x6275727361720d01

// LockMigrations takes the session-level advisory lock that lets one
// slot migration driver run at a time in the cluster. It holds one
// pooled connection until unlock; a driver that dies loses it with its
// session.
func (s *Store) LockMigrations(ctx context.Context) (unlock func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: migration lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(migrationLock)).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("storage: migration lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, ErrLocked
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(migrationLock)); err != nil {
			conn.Conn().Close(ctx) //nolint:errcheck // closing the session releases the lock
		}
		conn.Release()
	}, nil
}
