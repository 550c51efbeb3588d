package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Moving slots between partitions under load (issue 13): the rules a
// partition's engine follows while a migration from one slot map to the
// next is in flight. They are pure: what a partition does with a record
// depends only on the two maps, the barriers its own log holds before the
// record, and which groups PostgreSQL says were handed over.
//
// A migration from map prev to map next moves prev.Moves(next), group by
// group; group g moves slots S from partition A to partition B:
//
//  1. A barrier for g is appended to A's log.
//  2. A applies its records for S up to the barrier. After it, A applies
//     none: it forwards each of them to B (appended to B's log, the same
//     command with its transaction ID and reply address, so a forward
//     replayed after a crash is deduplicated by B's account like any
//     duplicate record).
//  3. Once A's flush has committed past the barrier, every effect of its
//     records for S is in PostgreSQL: A records g as handed over.
//  4. B applies none of its records for S until g is handed over; it then
//     loads those accounts from PostgreSQL and applies them in its log
//     order.
//
// An account's commands therefore run in one order: A's before the
// barrier, then B's (which include the forwarded ones after it). A client
// that waits for an answer before its next command sees them in the order
// it sent them, whichever map its ingress routed by: a command forwarded
// by A is answered only once B applied it, so the next one is appended to
// B after it. Ingresses may switch to next at any time once it is stored.

// Route is what a partition does with one record.
type Route uint8

const (
	RouteApply   Route = iota + 1 // apply it here
	RouteForward                  // append it to Migration.Target's partition, apply nothing
	RouteHold                     // stop here until a group is handed over
)

// Migration is a migration in flight from Prev to Next, as one partition
// sees it.
type Migration struct {
	Prev, Next *SlotMap
	groups     []SlotMove
	groupOf    []int16 // per slot: index into groups, -1 if the slot stays
}

// NewMigration returns the migration from prev to next.
func NewMigration(prev, next *SlotMap) *Migration {
	m := &Migration{Prev: prev, Next: next, groups: prev.Moves(next), groupOf: make([]int16, SlotCount)}
	for s := range m.groupOf {
		m.groupOf[s] = -1
	}
	for g, mv := range m.groups {
		for _, s := range mv.Slots {
			m.groupOf[s] = int16(g)
		}
	}
	return m
}

// Groups returns the migration's groups, in the order they move.
func (m *Migration) Groups() []SlotMove { return m.groups }

// GroupOf returns the group that moves slot, or -1.
func (m *Migration) GroupOf(slot int) int { return int(m.groupOf[slot]) }

// Target is the partition a record of slot belongs to once the migration
// is done.
func (m *Migration) Target(slot int) int32 { return m.Next.PartitionOf(slot) }

// RouteOf decides what partition p does with a record of slot. barrier
// reports whether p's log holds group g's barrier before the record;
// handedOver whether PostgreSQL records group g as handed over.
//
// A record of a slot that stays is applied where both maps put it and
// forwarded from anywhere else (an ingress on a map older than prev). A
// record of a moving slot is applied by its old partition until that
// partition's barrier, by its new one once the group is handed over (held
// before), and forwarded from anywhere else.
func (m *Migration) RouteOf(p int32, slot int, barrier, handedOver func(g int) bool) Route {
	g := m.GroupOf(slot)
	if g < 0 {
		if m.Next.PartitionOf(slot) == p {
			return RouteApply
		}
		return RouteForward
	}
	mv := m.groups[g]
	switch p {
	case mv.From:
		if barrier(g) {
			return RouteForward
		}
		return RouteApply
	case mv.To:
		if handedOver(g) {
			return RouteApply
		}
		return RouteHold
	}
	return RouteForward
}

// Validate refuses a migration the engines could not run: a partition
// that both gives and takes slots could hold (waiting for a group it
// takes) before the barrier of a group it gives, and two such partitions
// could wait on each other. Scale never builds one (a partition over its
// share only gives, one under it only takes), nor does a single MoveSlot.
func (m *Migration) Validate() error {
	gives := map[int32]bool{}
	for _, g := range m.groups {
		gives[g.From] = true
	}
	for _, g := range m.groups {
		if gives[g.To] {
			return fmt.Errorf("ledger: migration to slot map version %d moves slots both out of and into partition %d; finish it in two steps", m.Next.Version, g.To)
		}
	}
	return nil
}

// PartitionOf is where the newest state of an account in slot lives:
// its old partition until its group is handed over, then its new one.
func (m *Migration) PartitionOf(slot int, handedOver func(g int) bool) int32 {
	if g := m.GroupOf(slot); g >= 0 && !handedOver(g) {
		return m.groups[g].From
	}
	return m.Next.PartitionOf(slot)
}

// Barrier is the record the driver of a migration appends to a group's
// old partition: that partition applies none of the group's records after
// it. It names the migration by the version of the map it moves to.
type Barrier struct {
	Version int64 // the slot map the migration moves to
	Group   int   // index into Migration.Groups
}

// barrierMagic starts a barrier record; command records start with their
// version (1..RecordVersionMax), so the two never mix.
const barrierMagic = 0xB1

// IsBarrier reports whether a bursar.commands record is a barrier.
func IsBarrier(b []byte) bool { return len(b) > 0 && b[0] == barrierMagic }

// ErrBadBarrier is DecodeBarrier's error for anything AppendBarrier did
// not write.
var ErrBadBarrier = errors.New("ledger: malformed barrier record")

// AppendBinary appends b's record encoding to dst.
func (b Barrier) AppendBinary(dst []byte) []byte {
	dst = append(dst, barrierMagic)
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.Version))
	return binary.BigEndian.AppendUint16(dst, uint16(b.Group))
}

// DecodeBarrier decodes a record written by Barrier.AppendBinary.
func DecodeBarrier(rec []byte) (Barrier, error) {
	if len(rec) != 11 || rec[0] != barrierMagic {
		return Barrier{}, ErrBadBarrier
	}
	v := int64(binary.BigEndian.Uint64(rec[1:]))
	g := int(binary.BigEndian.Uint16(rec[9:]))
	if v <= 0 || g >= SlotCount { // a migration has at most one group per slot
		return Barrier{}, ErrBadBarrier
	}
	return Barrier{Version: v, Group: g}, nil
}
