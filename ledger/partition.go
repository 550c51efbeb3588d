package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/google/uuid"
)

// SlotCount is the fixed number of hash slots accounts map to. Slots, not
// accounts, are assigned to partitions, so partitions can be added later by
// moving whole slots. It never changes for a deployed cluster.
const SlotCount = 16384

// PartitionsMax bounds the partitions a slot map spreads slots over (and
// so the partitions of bursar.commands): a slot map stores each slot's
// partition in two bytes, and every partition needs at least one slot.
const PartitionsMax = 4096

// SlotOf returns the slot of an account: FNV-1a of its 16 ID bytes.
func SlotOf(id uuid.UUID) int {
	h := fnv.New32a()
	h.Write(id[:])
	return int(h.Sum32() % SlotCount)
}

// SlotMap assigns slots to partitions. Version 0 is the identity modulo
// the partition count (the map every cluster starts with); each later
// version comes from the one before it by Scale or MoveSlot, and records
// every slot's partition explicitly. A SlotMap is immutable: Scale and
// MoveSlot return new maps.
type SlotMap struct {
	Version    int64
	Partitions int32
	// assign is each slot's partition; nil for version 0's identity.
	assign []uint16
}

// NewSlotMap returns the initial map (version 0) for n partitions.
func NewSlotMap(n int32) *SlotMap {
	if n <= 0 || n > PartitionsMax {
		panic(fmt.Sprintf("ledger: partition count %d outside 1..%d", n, PartitionsMax))
	}
	return &SlotMap{Partitions: n}
}

// PartitionOf returns the partition of a slot.
func (m *SlotMap) PartitionOf(slot int) int32 {
	if m.assign != nil {
		return int32(m.assign[slot])
	}
	return int32(slot % int(m.Partitions))
}

// PartitionOfAccount is PartitionOf(SlotOf(id)).
func (m *SlotMap) PartitionOfAccount(id uuid.UUID) int32 {
	return m.PartitionOf(SlotOf(id))
}

// Counts returns how many slots each partition holds.
func (m *SlotMap) Counts() []int {
	counts := make([]int, m.Partitions)
	for s := range SlotCount {
		counts[m.PartitionOf(s)]++
	}
	return counts
}

// assignment returns a copy of every slot's partition.
func (m *SlotMap) assignment() []uint16 {
	a := make([]uint16, SlotCount)
	for s := range a {
		a[s] = uint16(m.PartitionOf(s))
	}
	return a
}

// Slot-map errors.
var (
	ErrScaleDown     = errors.New("ledger: a slot map only grows: partitions are never removed")
	ErrPartitionsMax = fmt.Errorf("ledger: at most %d partitions", PartitionsMax)
	ErrBadSlot       = errors.New("ledger: no such slot or partition")
	ErrBadSlotMap    = errors.New("ledger: malformed slot map encoding")
)

// Scale returns the next map with n partitions: each partition's share is
// SlotCount/n slots (the first SlotCount%n partitions one more), and only
// the slots beyond a partition's share move, to the partitions below
// theirs, so the fewest slots move: about 1 − old/new of them, all to the
// new partitions when the old ones were balanced. Which slots move is
// deterministic: a partition keeps its lowest slots and gives up its
// highest; the slots given up, partition by partition, fill the
// partitions short of their share, lowest partition first. So each new
// partition takes its slots from as few old ones as it can (doubling
// moves one group per old partition), which keeps a migration's barriers
// few. Scaling to the current count returns m itself (no new version).
func (m *SlotMap) Scale(n int32) (*SlotMap, error) {
	switch {
	case n < m.Partitions:
		return nil, ErrScaleDown
	case n > PartitionsMax:
		return nil, ErrPartitionsMax
	case n == m.Partitions:
		return m, nil
	}
	a := m.assignment()
	share := func(p int) int {
		s := SlotCount / int(n)
		if p < SlotCount%int(n) {
			s++
		}
		return s
	}
	held := make([][]int, n) // each partition's slots, ascending
	for s, p := range a {
		held[p] = append(held[p], s)
	}
	var pool []int
	for p := range held {
		if extra := len(held[p]) - share(p); extra > 0 {
			pool = append(pool, held[p][len(held[p])-extra:]...)
			held[p] = held[p][:len(held[p])-extra]
		}
	}
	for p := range held {
		for len(held[p]) < share(p) {
			a[pool[0]] = uint16(p)
			held[p] = append(held[p], pool[0])
			pool = pool[1:]
		}
	}
	return &SlotMap{Version: m.Version + 1, Partitions: n, assign: a}, nil
}

// MoveSlot returns the next map with slot on partition p (hot-spot
// relief: a hot account's slot on a partition of its own). Moving a slot
// to the partition it is on returns m itself.
func (m *SlotMap) MoveSlot(slot int, p int32) (*SlotMap, error) {
	if slot < 0 || slot >= SlotCount || p < 0 || p >= m.Partitions {
		return nil, ErrBadSlot
	}
	if m.PartitionOf(slot) == p {
		return m, nil
	}
	a := m.assignment()
	a[slot] = uint16(p)
	return &SlotMap{Version: m.Version + 1, Partitions: m.Partitions, assign: a}, nil
}

// SlotMove is a group of slots that move between the same two partitions.
type SlotMove struct {
	From, To int32
	Slots    []int // ascending
}

// Moves returns the slots whose partition differs from m to next, grouped
// by (from, to), groups ordered by from then to: the groups a migration
// moves one at a time.
func (m *SlotMap) Moves(next *SlotMap) []SlotMove {
	type pair struct{ from, to int32 }
	by := map[pair][]int{}
	var pairs []pair
	for s := range SlotCount {
		f, t := m.PartitionOf(s), next.PartitionOf(s)
		if f == t {
			continue
		}
		k := pair{f, t}
		if _, ok := by[k]; !ok {
			pairs = append(pairs, k)
		}
		by[k] = append(by[k], s)
	}
	slices.SortFunc(pairs, func(x, y pair) int {
		if x.from != y.from {
			return int(x.from - y.from)
		}
		return int(x.to - y.to)
	})
	out := make([]SlotMove, len(pairs))
	for i, k := range pairs {
		out[i] = SlotMove{From: k.from, To: k.to, Slots: by[k]}
	}
	return out
}

// AppendBinary encodes m: version (8 bytes), partitions (2), then for a
// map with explicit slots every slot's partition (2 bytes each, SlotCount
// of them); version 0's identity has none.
func (m *SlotMap) AppendBinary(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Version))
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Partitions))
	if m.assign == nil {
		return dst
	}
	for _, p := range m.assign {
		dst = binary.BigEndian.AppendUint16(dst, p)
	}
	return dst
}

// DecodeSlotMap decodes AppendBinary's output, refusing any map a Scale
// or MoveSlot could not have produced: a slot on a partition beyond the
// count, an identity map past version 0 or an explicit one at version 0.
func DecodeSlotMap(b []byte) (*SlotMap, error) {
	if len(b) < 10 {
		return nil, ErrBadSlotMap
	}
	m := &SlotMap{Version: int64(binary.BigEndian.Uint64(b)), Partitions: int32(binary.BigEndian.Uint16(b[8:]))}
	if m.Version < 0 || m.Partitions <= 0 || m.Partitions > PartitionsMax {
		return nil, ErrBadSlotMap
	}
	rest := b[10:]
	switch {
	case len(rest) == 0 && m.Version == 0:
		return m, nil
	case len(rest) != 2*SlotCount || m.Version == 0:
		return nil, ErrBadSlotMap
	}
	m.assign = make([]uint16, SlotCount)
	for s := range m.assign {
		p := binary.BigEndian.Uint16(rest[2*s:])
		if int32(p) >= m.Partitions {
			return nil, ErrBadSlotMap
		}
		m.assign[s] = p
	}
	return m, nil
}
