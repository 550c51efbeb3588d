package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestJoinRefusesANodeIDInUse: a process that joins with the ID of a live
// member at another address is refused by name; one with its own ID joins.
func TestJoinRefusesANodeIDInUse(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := freeAddr(t)
	first, err := Join(MembershipConfig{Meta: Meta{ID: "n1"}, BindAddr: seed}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Leave(0)
	for _, tc := range []struct {
		id      string
		refused bool
	}{
		{"n1", true},
		{"n2", false},
	} {
		m, err := Join(MembershipConfig{Meta: Meta{ID: tc.id}, BindAddr: freeAddr(t), Join: []string{seed}}, log)
		if refused := errors.Is(err, ErrNodeIDInUse); refused != tc.refused || (err != nil && !tc.refused) {
			t.Fatalf("join as %s: %v, want refused %v", tc.id, err, tc.refused)
		}
		if m != nil {
			m.Leave(0)
		}
	}
}

// TestGossipKeyKeepsStrangersOut: with a gossip key, a node with the same
// key joins; one with another key, or none, cannot, the refusal is
// counted, and the keyed node goes on with its membership unchanged. A
// second key accepted beside the primary one lets a key rotate.
func TestGossipKeyKeepsStrangersOut(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{9}, 32)
	seed := freeAddr(t)
	first, err := Join(MembershipConfig{Meta: Meta{ID: "n1"}, BindAddr: seed, Keys: [][]byte{key}, ProbeInterval: 200 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Leave(0)
	for _, tc := range []struct {
		name  string
		keys  [][]byte
		joins bool
	}{
		{"no key", nil, false},
		{"another key", [][]byte{other}, false},
		{"the same key", [][]byte{key}, true},
		{"a new primary key before the cluster holds it", [][]byte{other, key}, false},
		{"the primary key with the next one beside it", [][]byte{key, other}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := first.Rejected()
			m, err := Join(MembershipConfig{Meta: Meta{ID: "n-" + tc.name}, BindAddr: freeAddr(t), Join: []string{seed}, Keys: tc.keys}, log)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Leave(0)
			joined := func() bool {
				return slices.ContainsFunc(first.Members(), func(x Member) bool { return x.ID == "n-"+tc.name })
			}
			if tc.joins {
				waitMembers(t, first, 5*time.Second, joined, "the member joined")
				return
			}
			// Absence takes a window: five probe intervals, woken by
			// every membership change in it (a join would be one).
			window := time.After(time.Second)
			for done := false; !done; {
				select {
				case <-first.Changed():
				case <-window:
					done = true
				}
				if joined() {
					t.Fatal("joined a keyed cluster")
				}
			}
			if first.Rejected() == before {
				t.Fatal("the refusal was not counted")
			}
		})
	}
}

// TestRecordVersionIsTheOldestEngines: the record version an ingress may
// write is the least that the engine members read; a member of a release
// before version 2 (no records field) reads 1; ingress-only members do
// not count.
func TestRecordVersionIsTheOldestEngines(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := freeAddr(t)
	first, err := Join(MembershipConfig{Meta: Meta{ID: "new", Roles: []string{"engine"}, Records: 2}, BindAddr: seed}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Leave(0)
	if v := first.RecordVersion(); v != 2 {
		t.Fatalf("alone: %d, want 2", v)
	}
	wait := func(want int, what string) {
		t.Helper()
		waitMembers(t, first, 5*time.Second, func() bool { return first.RecordVersion() == want }, what)
	}
	ingress, err := Join(MembershipConfig{Meta: Meta{ID: "old-ingress", Roles: []string{"ingress"}}, BindAddr: freeAddr(t), Join: []string{seed}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ingress.Leave(0)
	waitMembers(t, first, 5*time.Second, func() bool { return len(first.Members()) >= 2 }, "the ingress joined")
	wait(2, "with an old ingress-only member")
	old, err := Join(MembershipConfig{Meta: Meta{ID: "old-engine", Roles: []string{"engine"}}, BindAddr: freeAddr(t), Join: []string{seed}}, log)
	if err != nil {
		t.Fatal(err)
	}
	wait(1, "with an engine of an older release")
	old.Leave(time.Second)
	waitMembers(t, first, 5*time.Second, func() bool { return len(first.Members()) <= 2 }, "the old engine left")
	// Held: an old node that restarts must not come back to records it
	// cannot read.
	if v := first.RecordVersion(); v != 1 {
		t.Fatalf("just after the old engine left: %d, want 1 for recordVersionHold", v)
	}
	// No engine in view at all (an ingress before gossip converged): 1.
	lone, err := Join(MembershipConfig{Meta: Meta{ID: "lone-ingress", Roles: []string{"ingress"}, Records: 2}, BindAddr: freeAddr(t)}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer lone.Leave(0)
	if v := lone.RecordVersion(); v != 1 {
		t.Fatalf("an ingress with no engine in view: %d, want 1", v)
	}
}

// waitMembers waits until ok holds, looking again at each change of m's
// membership (Changed) rather than on a clock, for at most d.
func waitMembers(t *testing.T, m *Membership, d time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.After(d)
	for !ok() {
		select {
		case <-m.Changed():
		case <-deadline:
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}
