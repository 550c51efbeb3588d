package ledger

import (
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
)

// fnv1a32 is FNV-1a written out from its definition, to check SlotOf
// against something other than hash/fnv.
func fnv1a32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

func TestSlotOf(t *testing.T) {
	// Pinned values, computed outside Go: the slot of an account must
	// never change for a deployed cluster, or its commands would go to
	// another partition.
	pinned := map[uuid.UUID]int{uuid.Nil: 6405, uuid.Max: 14837, acctA: 4821}
	for id, want := range pinned {
		if got := SlotOf(id); got != want {
			t.Errorf("SlotOf(%v) = %d; want %d", id, got, want)
		}
	}
	// And for random IDs, agreement with FNV-1a from its definition.
	rng := rand.New(rand.NewPCG(5, 6))
	for range 10_000 {
		var id uuid.UUID
		for i := range id {
			id[i] = byte(rng.UintN(256))
		}
		if s := SlotOf(id); s < 0 || s >= SlotCount || s != int(fnv1a32(id[:])%SlotCount) {
			t.Fatalf("SlotOf(%v) = %d", id, s)
		}
	}
}

func TestSlotMap(t *testing.T) {
	m := NewSlotMap(64)
	for _, slot := range []int{0, 1, 63, 64, 65, SlotCount - 1} {
		if got := m.PartitionOf(slot); got != int32(slot%64) {
			t.Errorf("PartitionOf(%d) = %d; want %d", slot, got, slot%64)
		}
	}
	// A moved slot goes to its new partition; its neighbours stay.
	m.moved = map[int]int32{65: 7}
	if m.PartitionOf(65) != 7 || m.PartitionOf(64) != 0 || m.PartitionOf(66) != 2 {
		t.Errorf("moved slot: %d %d %d", m.PartitionOf(64), m.PartitionOf(65), m.PartitionOf(66))
	}
	if got, want := m.PartitionOfAccount(acctA), m.PartitionOf(SlotOf(acctA)); got != want {
		t.Errorf("PartitionOfAccount = %d; want %d", got, want)
	}

	// Random account IDs spread evenly: no partition gets more than 20%
	// above or below its share.
	m = NewSlotMap(64)
	counts := make([]int, 64)
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 64_000
	for range n {
		var id uuid.UUID
		for i := range id {
			id[i] = byte(rng.UintN(256))
		}
		counts[m.PartitionOfAccount(id)]++
	}
	for p, c := range counts {
		if c < n/64*8/10 || c > n/64*12/10 {
			t.Errorf("partition %d has %d of %d accounts", p, c, n)
		}
	}
}

func TestNewSlotMapRejectsNoPartitions(t *testing.T) {
	for _, n := range []int32{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewSlotMap(%d) did not panic", n)
				}
			}()
			NewSlotMap(n)
		}()
	}
}
