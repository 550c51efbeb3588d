package storage

import (
	"context"
	"errors"
	"fmt"

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
