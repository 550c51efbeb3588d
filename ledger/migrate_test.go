package ledger

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The migration model: partitions with logs, engines that apply, forward
// and hold by Migration.RouteOf, flush, crash and replay; a driver that
// appends barriers and hands groups over; ingresses that learn new maps
// late; clients that send each account's operations one after another.
// Whatever the interleaving, every account's stored history must be its
// operations in the order they were sent, each once.

type mRec struct {
	mig, group int // a barrier of migration mig's group; mig < 0 for a command
	acct, seq  int
}

type mPart struct {
	log                []mRec
	applied, committed int
	mem                map[int][]int // account → applied operations, since loaded
	dirty              map[int]bool
	reloaded           map[int]bool // incoming groups whose accounts were dropped from mem
}

type mWorld struct {
	t         *testing.T
	rng       *rand.Rand
	maps      []*SlotMap
	cur       int // migration in flight: maps[cur] → maps[cur+1]; cur == len(maps)-1: none
	mig       *Migration
	barriered map[int]bool // groups of the current migration whose barrier is appended
	handed    map[int]bool // groups handed over (in PostgreSQL)
	parts     []*mPart
	slotOf    []int   // per account
	durable   [][]int // per account: the stored history
	ingresses []int   // the map version each ingress routes by
	known     int     // the newest map stored: ingresses learn it at random
	next      []int   // per account: the next operation to send (1-based)
	waiting   []bool  // per account: an operation sent and not answered
	ops       int     // operations per account
}

func (w *mWorld) part(p int32) *mPart {
	for int(p) >= len(w.parts) {
		w.parts = append(w.parts, &mPart{mem: map[int][]int{}, dirty: map[int]bool{}, reloaded: map[int]bool{}})
	}
	return w.parts[p]
}

// seen reports whether p's log holds the barrier of the current
// migration's group g before offset off.
func (w *mWorld) seen(pp *mPart, off, g int) bool {
	for _, r := range pp.log[:off] {
		if r.mig == w.cur && r.group == g {
			return true
		}
	}
	return false
}

func (w *mWorld) send(a int) {
	ver := w.ingresses[w.rng.IntN(len(w.ingresses))]
	p := w.maps[ver].PartitionOf(w.slotOf[a])
	if ver == w.cur+1 && w.mig != nil && w.rng.IntN(2) == 0 {
		// As the ingress does: the old partition until handed over.
		p = w.mig.PartitionOf(w.slotOf[a], func(g int) bool { return w.handed[g] })
	}
	pp := w.part(p)
	pp.log = append(pp.log, mRec{mig: -1, acct: a, seq: w.next[a]})
	w.waiting[a] = true
}

// step processes one record of partition p; it reports whether p moved.
func (w *mWorld) step(p int32) bool {
	pp := w.part(p)
	if pp.applied >= len(pp.log) {
		return false
	}
	r := pp.log[pp.applied]
	if r.mig >= 0 {
		pp.applied++
		return true
	}
	off := pp.applied
	route := w.mig.RouteOf(p, w.slotOf[r.acct], func(g int) bool { return w.seen(pp, off, g) }, func(g int) bool { return w.handed[g] })
	switch route {
	case RouteHold:
		return false
	case RouteForward:
		to := w.part(w.mig.Target(w.slotOf[r.acct]))
		to.log = append(to.log, r)
	case RouteApply:
		if g := w.mig.GroupOf(w.slotOf[r.acct]); g >= 0 && w.mig.Groups()[g].To == p && !pp.reloaded[g] {
			// Handed over: what this partition held of the group's
			// accounts (from an earlier time) is stale; load them again.
			for a, s := range w.slotOf {
				if w.mig.GroupOf(s) == g {
					delete(pp.mem, a)
				}
			}
			pp.reloaded[g] = true
		}
		h, ok := pp.mem[r.acct]
		if !ok {
			h = slices.Clone(w.durable[r.acct])
		}
		if !slices.Contains(h, r.seq) { // a duplicate (a forward replayed) is answered, not applied
			h = append(h, r.seq)
			pp.dirty[r.acct] = true
		}
		pp.mem[r.acct] = h
		if w.waiting[r.acct] && r.seq == w.next[r.acct] {
			w.waiting[r.acct] = false
			w.next[r.acct]++
		}
	}
	pp.applied++
	return true
}

func (w *mWorld) flush(pp *mPart) {
	for a := range pp.dirty {
		w.durable[a] = slices.Clone(pp.mem[a])
	}
	clear(pp.dirty)
	pp.committed = pp.applied
}

func (w *mWorld) crash(pp *mPart) {
	clear(pp.mem)
	clear(pp.dirty)
	clear(pp.reloaded)
	pp.applied = pp.committed
}

// drive moves the migration on: a barrier appended, a group handed over
// once its old partition committed past its barrier, or, all handed
// over, the next migration begun.
func (w *mWorld) drive() {
	if w.cur == len(w.maps)-1 {
		return
	}
	groups := w.mig.Groups()
	for g, mv := range groups {
		if !w.barriered[g] {
			if w.rng.IntN(2) == 0 {
				pp := w.part(mv.From)
				pp.log = append(pp.log, mRec{mig: w.cur, group: g})
				w.barriered[g] = true
			}
			return
		}
		if !w.handed[g] {
			pp := w.part(mv.From)
			if w.seen(pp, pp.committed, g) {
				w.handed[g] = true
				// The engine stops the group's actors on the old partition
				// once its handover commits (Engine.afterCommit): should
				// the slots come back, it must load them again, not
				// apply on what it held (it may never hold in between,
				// so the new partition's reload cannot cover it).
				for a, s := range w.slotOf {
					if w.mig.GroupOf(s) == g {
						delete(pp.mem, a)
					}
				}
			}
			return
		}
	}
	w.begin(w.cur + 1)
}

// begin starts the migration from maps[i] (none past the last map).
func (w *mWorld) begin(i int) {
	w.cur = i
	next := w.maps[min(i+1, len(w.maps)-1)]
	w.mig = NewMigration(w.maps[i], next)
	w.barriered, w.handed = map[int]bool{}, map[int]bool{}
	for _, pp := range w.parts {
		clear(pp.reloaded)
	}
	w.known = min(i+1, len(w.maps)-1)
}

func (w *mWorld) done() bool {
	for a := range w.next {
		if w.next[a] <= w.ops {
			return false
		}
	}
	return true
}

func TestMigrationModel(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 99))
		m0 := NewSlotMap(int32(1 + rng.IntN(4)))
		maps := []*SlotMap{m0}
		type move struct {
			slot int
			from int32
		}
		var moved []move // slots a MoveSlot moved, and where from
		for len(maps) < 5 {
			last := maps[len(maps)-1]
			var next *SlotMap
			var err error
			switch x := rng.IntN(8); {
			case x < 2 && len(moved) > 0:
				// Back where it was: its old partition must not apply
				// from what it held of the accounts before (rule 4).
				mv := moved[rng.IntN(len(moved))]
				next, err = last.MoveSlot(mv.slot, mv.from)
			case x < 4:
				slot := rng.IntN(SlotCount)
				moved = append(moved, move{slot, last.PartitionOf(slot)})
				next, err = last.MoveSlot(slot, int32(rng.IntN(int(last.Partitions))))
			default:
				next, err = last.Scale(last.Partitions + int32(1+rng.IntN(int(last.Partitions)+1)))
			}
			if err != nil {
				t.Fatal(err)
			}
			if next != last {
				maps = append(maps, next)
			}
		}
		w := &mWorld{t: t, rng: rng, maps: maps, ingresses: make([]int, 3), ops: 12}
		const accounts = 24
		for a := range accounts {
			// Half the accounts on slots that move in some step, a
			// quarter on slots moved one by one (and maybe back).
			slot := rng.IntN(SlotCount)
			if a%4 == 1 && len(moved) > 0 {
				slot = moved[rng.IntN(len(moved))].slot
			} else if a%2 == 0 {
				for i := 0; i+1 < len(maps); i++ {
					if mv := maps[i].Moves(maps[i+1]); len(mv) > 0 {
						g := mv[rng.IntN(len(mv))]
						slot = g.Slots[rng.IntN(len(g.Slots))]
						break
					}
				}
			}
			w.slotOf = append(w.slotOf, slot)
		}
		w.durable = make([][]int, accounts)
		w.next = make([]int, accounts)
		for a := range w.next {
			w.next[a] = 1
		}
		w.waiting = make([]bool, accounts)
		w.begin(0)
		for i := 0; !w.done(); i++ {
			if i > 2_000_000 {
				t.Fatalf("seed %d: no progress (migration %d of %d, handed %v)", seed, w.cur, len(maps)-1, w.handed)
			}
			switch x := rng.IntN(100); {
			case x < 25:
				a := rng.IntN(accounts)
				if !w.waiting[a] && w.next[a] <= w.ops {
					w.send(a)
				}
			case x < 70:
				w.step(int32(rng.IntN(len(w.parts) + 1)))
			case x < 80:
				if len(w.parts) > 0 {
					w.flush(w.parts[rng.IntN(len(w.parts))])
				}
			case x < 83:
				if len(w.parts) > 0 {
					w.crash(w.parts[rng.IntN(len(w.parts))])
				}
			case x < 93:
				w.drive()
			default:
				in := rng.IntN(len(w.ingresses))
				w.ingresses[in] = max(w.ingresses[in], min(w.known, w.ingresses[in]+1))
			}
		}
		// Drain: finish the migrations, apply and flush everything.
		for range 10_000 {
			w.drive()
			for p := range w.parts {
				for w.step(int32(p)) {
				}
				w.flush(w.parts[p])
			}
		}
		if w.cur != len(maps)-1 {
			t.Fatalf("seed %d: migrations did not finish: %d of %d", seed, w.cur, len(maps)-1)
		}
		for a, h := range w.durable {
			want := make([]int, w.ops)
			for i := range want {
				want[i] = i + 1
			}
			if !slices.Equal(h, want) {
				for i, m := range maps {
					t.Logf("map %d: %d partitions, slot on %d", i, m.Partitions, m.PartitionOf(w.slotOf[a]))
				}
				t.Fatalf("seed %d: account %d (slot %d) stored %v, want %v", seed, a, w.slotOf[a], h, want)
			}
		}
	}
}

// TestRouteOf pins the rules on one group: the old partition applies
// until its barrier and forwards after it; the new one holds until the
// group is handed over; any other forwards; a slot that stays is applied
// where it is and forwarded from elsewhere.
func TestRouteOf(t *testing.T) {
	prev := NewSlotMap(2)
	next, _ := prev.Scale(4)
	m := NewMigration(prev, next)
	g := m.Groups()[0]
	slot, stay := g.Slots[0], -1
	for s := range SlotCount {
		if m.GroupOf(s) < 0 {
			stay = s
			break
		}
	}
	yes := func(int) bool { return true }
	no := func(int) bool { return false }
	for _, tc := range []struct {
		name              string
		p                 int32
		slot              int
		barrier, handedOv func(int) bool
		want              Route
	}{
		{"old partition before its barrier", g.From, slot, no, no, RouteApply},
		{"old partition after its barrier", g.From, slot, yes, no, RouteForward},
		{"new partition before the handover", g.To, slot, yes, no, RouteHold},
		{"new partition after the handover", g.To, slot, yes, yes, RouteApply},
		{"another partition", 3 - g.From, slot, no, no, RouteForward},
		{"a slot that stays, where it is", prev.PartitionOf(stay), stay, no, no, RouteApply},
		{"a slot that stays, elsewhere", (prev.PartitionOf(stay) + 1) % 4, stay, no, no, RouteForward},
	} {
		if got := m.RouteOf(tc.p, tc.slot, tc.barrier, tc.handedOv); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestBarrierRoundTrip(t *testing.T) {
	for _, b := range []Barrier{{1, 0}, {7, 12}, {1 << 40, SlotCount - 1}} {
		enc := b.AppendBinary(nil)
		if !IsBarrier(enc) {
			t.Fatalf("%+v: not recognized as a barrier", b)
		}
		got, err := DecodeBarrier(enc)
		if err != nil || got != b {
			t.Fatalf("%+v: decoded %+v, %v", b, got, err)
		}
	}
	c := Command{Kind: KindCredit}
	if IsBarrier(c.AppendBinary(nil)) {
		t.Fatal("a command record taken for a barrier")
	}
	for _, bad := range [][]byte{nil, {barrierMagic}, append(Barrier{1, 0}.AppendBinary(nil), 0), Barrier{0, 0}.AppendBinary(nil), Barrier{1, SlotCount}.AppendBinary(nil), {1, 2, 3}} {
		if _, err := DecodeBarrier(bad); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
}

func FuzzDecodeBarrier(f *testing.F) {
	f.Add(Barrier{3, 4}.AppendBinary(nil))
	f.Add([]byte{barrierMagic, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeBarrier(b)
		if err != nil {
			return
		}
		if enc := got.AppendBinary(nil); string(enc) != string(b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, got, enc)
		}
	})
}

func TestMigrationValidate(t *testing.T) {
	m := NewSlotMap(4)
	next, err := m.Scale(8)
	if err != nil {
		t.Fatal(err)
	}
	if err := NewMigration(m, next).Validate(); err != nil {
		t.Fatalf("scale refused: %v", err)
	}
	one, _ := next.MoveSlot(0, 7)
	if err := NewMigration(next, one).Validate(); err != nil {
		t.Fatalf("move-slot refused: %v", err)
	}
	// Slot 0 from 0 to 1 and slot 1 from 1 to 0: partitions that give and take.
	swap, _ := m.MoveSlot(0, 1)
	swap, _ = swap.MoveSlot(1, 0)
	swap.Version = m.Version + 1
	if err := NewMigration(m, swap).Validate(); err == nil {
		t.Fatal("a swap was accepted")
	}
}
