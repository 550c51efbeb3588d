package cluster

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
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
