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
	moved, err := m.MoveSlot(65, 7)
	if err != nil || moved.Version != 1 || moved.PartitionOf(65) != 7 || moved.PartitionOf(64) != 0 || moved.PartitionOf(66) != 2 {
		t.Errorf("moved slot: %v %d %d %d", err, moved.PartitionOf(64), moved.PartitionOf(65), moved.PartitionOf(66))
	}
	if m.PartitionOf(65) != 1 {
		t.Error("MoveSlot changed the map it was called on")
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
	for _, n := range []int32{0, -1, PartitionsMax + 1} {
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

// share is partition p's share of the slots among n partitions.
func share(p, n int) int {
	s := SlotCount / n
	if p < SlotCount%n {
		s++
	}
	return s
}

// TestScaleProperties drives random sequences of scale steps and slot
// moves and checks every Scale against its definition: the new map gives
// each partition exactly its share; only the slots beyond a partition's
// share in the old map move (the fewest possible), off partitions that
// had too many and onto ones that had too few; a slot that does not move
// keeps its partition; the version goes up by one; the same step from the
// same map gives the same map; and Moves lists exactly the moved slots.
func TestScaleProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for run := range 40 {
		m := NewSlotMap(int32(1 + rng.IntN(16)))
		for step := range 6 {
			if rng.IntN(3) == 0 {
				slot, p := rng.IntN(SlotCount), int32(rng.IntN(int(m.Partitions)))
				next, err := m.MoveSlot(slot, p)
				if err != nil || next.PartitionOf(slot) != p {
					t.Fatalf("run %d step %d: MoveSlot(%d, %d): %v", run, step, slot, p, err)
				}
				checkMoves(t, m, next)
				m = next
				continue
			}
			n := m.Partitions + int32(rng.IntN(int(m.Partitions)+1))
			if n > 256 {
				n = 256
			}
			next, err := m.Scale(n)
			if err != nil {
				t.Fatalf("Scale(%d): %v", n, err)
			}
			if n == m.Partitions {
				if next != m {
					t.Fatal("scaling to the same count made a new map")
				}
				continue
			}
			again, _ := m.Scale(n)
			if string(again.AppendBinary(nil)) != string(next.AppendBinary(nil)) {
				t.Fatal("Scale is not deterministic")
			}
			if next.Version != m.Version+1 || next.Partitions != n {
				t.Fatalf("version %d partitions %d after scaling v%d to %d", next.Version, next.Partitions, m.Version, n)
			}
			oldCounts, newCounts := m.Counts(), next.Counts()
			for p, c := range newCounts {
				if c != share(p, int(n)) {
					t.Fatalf("run %d: partition %d has %d slots of %d, share %d", run, p, c, n, share(p, int(n)))
				}
			}
			surplus := 0
			for p, c := range oldCounts {
				surplus += max(0, c-share(p, int(n)))
			}
			moved := 0
			for s := range SlotCount {
				from, to := m.PartitionOf(s), next.PartitionOf(s)
				if from == to {
					continue
				}
				moved++
				if oldCounts[from] <= share(int(from), int(n)) {
					t.Fatalf("slot %d left partition %d, which was not above its share", s, from)
				}
				if int(to) < len(oldCounts) && oldCounts[to] >= share(int(to), int(n)) {
					t.Fatalf("slot %d joined partition %d, which was not below its share", s, to)
				}
			}
			if moved != surplus {
				t.Fatalf("%d slots moved; the surplus was %d", moved, surplus)
			}
			checkMoves(t, m, next)
			m = next
		}
	}
}

// checkMoves: Moves lists every moved slot once, in groups of one
// (from, to) pair each, ordered.
func checkMoves(t *testing.T, m, next *SlotMap) {
	t.Helper()
	seen := map[int]bool{}
	for i, g := range m.Moves(next) {
		if i > 0 {
			prev := m.Moves(next)[i-1]
			if prev.From > g.From || (prev.From == g.From && prev.To >= g.To) {
				t.Fatalf("groups out of order: %d→%d then %d→%d", prev.From, prev.To, g.From, g.To)
			}
		}
		for _, s := range g.Slots {
			if m.PartitionOf(s) != g.From || next.PartitionOf(s) != g.To || seen[s] {
				t.Fatalf("slot %d in group %d→%d: was %d, is %d (seen %v)", s, g.From, g.To, m.PartitionOf(s), next.PartitionOf(s), seen[s])
			}
			seen[s] = true
		}
	}
	for s := range SlotCount {
		if (m.PartitionOf(s) != next.PartitionOf(s)) != seen[s] {
			t.Fatalf("slot %d moved %v but listed %v", s, m.PartitionOf(s) != next.PartitionOf(s), seen[s])
		}
	}
}

// TestScaleDoublingMovesOneGroupPerPartition: doubling a balanced map
// moves half of each partition's slots, all of them to one new partition.
func TestScaleDoublingMovesOneGroupPerPartition(t *testing.T) {
	m := NewSlotMap(8)
	for _, n := range []int32{16, 32} {
		next, err := m.Scale(n)
		if err != nil {
			t.Fatal(err)
		}
		moves := m.Moves(next)
		if len(moves) != int(m.Partitions) {
			t.Fatalf("%d→%d: %d groups, want %d", m.Partitions, n, len(moves), m.Partitions)
		}
		for _, g := range moves {
			if g.To < m.Partitions || len(g.Slots) != SlotCount/int(n) {
				t.Fatalf("%d→%d: group %d→%d with %d slots", m.Partitions, n, g.From, g.To, len(g.Slots))
			}
		}
		m = next
	}
	if _, err := m.Scale(16); err != ErrScaleDown {
		t.Fatalf("scaling down: %v", err)
	}
	if _, err := m.Scale(PartitionsMax + 1); err != ErrPartitionsMax {
		t.Fatalf("past the limit: %v", err)
	}
	for _, bad := range []struct {
		slot int
		p    int32
	}{{-1, 0}, {SlotCount, 0}, {0, -1}, {0, 32}} {
		if _, err := m.MoveSlot(bad.slot, bad.p); err != ErrBadSlot {
			t.Errorf("MoveSlot(%d, %d): %v", bad.slot, bad.p, err)
		}
	}
}

// TestSlotMapEncoding: a map decodes to itself; malformed encodings are
// refused.
func TestSlotMapEncoding(t *testing.T) {
	m0 := NewSlotMap(8)
	m1, _ := m0.Scale(12)
	m2, _ := m1.MoveSlot(77, 11)
	for _, m := range []*SlotMap{m0, m1, m2} {
		got, err := DecodeSlotMap(m.AppendBinary(nil))
		if err != nil || got.Version != m.Version || got.Partitions != m.Partitions {
			t.Fatalf("v%d: %v %+v", m.Version, err, got)
		}
		for s := range SlotCount {
			if got.PartitionOf(s) != m.PartitionOf(s) {
				t.Fatalf("v%d slot %d: %d, want %d", m.Version, s, got.PartitionOf(s), m.PartitionOf(s))
			}
		}
	}
	enc := m2.AppendBinary(nil)
	beyond := append([]byte(nil), enc...)
	beyond[10], beyond[11] = 0, 12 // slot 0 on partition 12 of 12
	identityLater := m0.AppendBinary(nil)
	identityLater[7] = 1
	explicitZero := append([]byte(nil), enc...)
	explicitZero[7] = 0
	for name, b := range map[string][]byte{
		"empty": nil, "short": enc[:9], "truncated": enc[:len(enc)-1], "trailing": append(append([]byte(nil), enc...), 0),
		"partition beyond the count": beyond, "identity past version 0": identityLater, "explicit at version 0": explicitZero,
		"zero partitions": {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := DecodeSlotMap(b); err != ErrBadSlotMap {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeSlotMap(f *testing.F) {
	m1, _ := NewSlotMap(8).Scale(12)
	f.Add(NewSlotMap(8).AppendBinary(nil))
	f.Add(m1.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeSlotMap(b)
		if err != nil {
			return
		}
		if string(m.AppendBinary(nil)) != string(b) {
			t.Fatal("a decoded map re-encodes to other bytes")
		}
		for s := range SlotCount {
			if p := m.PartitionOf(s); p < 0 || p >= m.Partitions {
				t.Fatalf("slot %d on partition %d of %d", s, p, m.Partitions)
			}
		}
	})
}
