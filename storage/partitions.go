package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Acquire takes partition p for node: it bumps the epoch, which fences every
// earlier owner's flushes, and returns the new epoch and the offset to
// resume consuming from.
func (s *Store) Acquire(ctx context.Context, p int32, node string) (epoch, nextOffset int64, err error) {
	err = s.pool.QueryRow(ctx, `
INSERT INTO partitions (partition, epoch, owner) VALUES ($1, 1, $2)
ON CONFLICT (partition) DO UPDATE SET epoch = partitions.epoch + 1, owner = EXCLUDED.owner, updated_at = now()
RETURNING epoch, next_offset`, p, node).Scan(&epoch, &nextOffset)
	if err != nil {
		return 0, 0, fmt.Errorf("storage: acquire partition %d: %w", p, err)
	}
	return epoch, nextOffset, nil
}

// Release gives up partition p if node still holds it under epoch. The
// epoch stays, so the next owner's acquisition still bumps past it.
func (s *Store) Release(ctx context.Context, p int32, node string, epoch int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE partitions SET owner = '', updated_at = now()
WHERE partition = $1 AND owner = $2 AND epoch = $3`, p, node, epoch)
	if err != nil {
		return fmt.Errorf("storage: release partition %d: %w", p, err)
	}
	return nil
}

// PartitionRow is one row of the partitions table.
type PartitionRow struct {
	Partition  int32     `json:"partition"`
	Epoch      int64     `json:"epoch"`
	NextOffset int64     `json:"next_offset"`
	Owner      string    `json:"owner"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Partitions lists every partition row in order.
func (s *Store) Partitions(ctx context.Context) ([]PartitionRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT partition, epoch, next_offset, owner, updated_at FROM partitions ORDER BY partition`)
	if err != nil {
		return nil, fmt.Errorf("storage: partitions: %w", err)
	}
	defer rows.Close()
	var out []PartitionRow
	for rows.Next() {
		var r PartitionRow
		if err := rows.Scan(&r.Partition, &r.Epoch, &r.NextOffset, &r.Owner, &r.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ErrOtherLog is CheckLogIdentity's error for a log that is not the one
// the database was built from.
var ErrOtherLog = errors.New("storage: the log is not the one this database was built from")

// CheckLogIdentity records the log's identity (the broker cluster's ID and
// the command topic's ID) on first use and afterwards checks that the log
// is still that one. It returns whether this call recorded it. ends are
// the log's end offsets per command partition: a database that has
// applied a partition beyond its end (one upgraded from a release that
// recorded no identity, started against a new log) is not this log's,
// and its identity is not recorded.
func (s *Store) CheckLogIdentity(ctx context.Context, clusterID, topicID string, ends map[int32]int64) (recorded bool, err error) {
	var known bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM log_identity)`).Scan(&known); err != nil {
		return false, fmt.Errorf("storage: log identity: %w", err)
	}
	if !known {
		rows, err := s.Partitions(ctx)
		if err != nil {
			return false, err
		}
		for _, r := range rows {
			if r.NextOffset > ends[r.Partition] {
				return false, fmt.Errorf("%w: the database has applied partition %d up to offset %d, but this log ends at %d", ErrOtherLog, r.Partition, r.NextOffset, ends[r.Partition])
			}
		}
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO log_identity (cluster_id, topic_id) VALUES ($1, $2) ON CONFLICT (only_row) DO NOTHING`, clusterID, topicID)
	if err != nil {
		return false, fmt.Errorf("storage: log identity: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var c, t string
	if err := s.pool.QueryRow(ctx, `SELECT cluster_id, topic_id FROM log_identity`).Scan(&c, &t); err != nil {
		return false, fmt.Errorf("storage: log identity: %w", err)
	}
	if c != clusterID || t != topicID {
		return false, fmt.Errorf("%w: the database records cluster %s, topic %s; this log is cluster %s, topic %s", ErrOtherLog, c, t, clusterID, topicID)
	}
	return false, nil
}
