package ledger

import (
	"hash/fnv"

	"github.com/google/uuid"
)

// SlotCount is the fixed number of hash slots accounts map to. Slots, not
// accounts, are assigned to partitions, so partitions can be added later by
// moving whole slots. It never changes for a deployed cluster.
const SlotCount = 16384

// SlotOf returns the slot of an account: FNV-1a of its 16 ID bytes.
func SlotOf(id uuid.UUID) int {
	h := fnv.New32a()
	h.Write(id[:])
	return int(h.Sum32() % SlotCount)
}

// SlotMap assigns slots to partitions. Version 0 is the identity modulo
// the partition count; later versions record moved slots explicitly.
type SlotMap struct {
	Version    int64
	Partitions int32
	moved      map[int]int32
}

// NewSlotMap returns the initial map for n partitions.
func NewSlotMap(n int32) *SlotMap {
	if n <= 0 {
		panic("ledger: partition count must be positive")
	}
	return &SlotMap{Partitions: n}
}

// PartitionOf returns the partition of a slot.
func (m *SlotMap) PartitionOf(slot int) int32 {
	if p, ok := m.moved[slot]; ok {
		return p
	}
	return int32(slot % int(m.Partitions))
}

// PartitionOfAccount is PartitionOf(SlotOf(id)).
func (m *SlotMap) PartitionOfAccount(id uuid.UUID) int32 {
	return m.PartitionOf(SlotOf(id))
}
