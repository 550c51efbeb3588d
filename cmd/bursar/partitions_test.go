package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
)

// TestSlotMapIsTheRoutingAuthority: a cluster's first node stores slot
// map version 0 for the command topic's partitions and gossips the version
// it routes by; partitions ls shows each partition's slots and the map's
// version, and partitions plan what a scale would move (changing
// nothing); a database whose map routes to more partitions than the topic
// has is refused at start.
func TestSlotMapIsTheRoutingAuthority(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	broker := startBroker(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--kafka-brokers", broker, "--partitions", "8")
	var members []map[string]any
	if err := getJSON(context.Background(), "http://"+n.admin+"/internal/members", keyFor(n.admin), &members); err != nil || len(members) != 1 {
		t.Fatalf("members: %v %v", members, err)
	}
	if v, present := members[0]["slot_map"]; !present || v != float64(0) {
		t.Fatalf("a node on map version 0 gossips slot_map %v", v)
	}
	c := newClient(n.addr)
	c.openAccount(t, "slot-map")

	cli := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(binPath, append(args, "--database-url", dbURL)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := cli("partitions", "ls", "--format", "json")
	var ls struct {
		SlotMap    *struct{ Version, Partitions int64 } `json:"slot_map"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Slots     int   `json:"slots"`
		} `json:"partitions"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || ls.SlotMap == nil || ls.SlotMap.Version != 0 || ls.SlotMap.Partitions != 8 || len(ls.Partitions) != 8 {
		t.Fatalf("partitions ls: exit %d: %s", code, out)
	}
	for _, p := range ls.Partitions {
		if p.Slots != ledger.SlotCount/8 {
			t.Fatalf("partition %d has %d slots: %s", p.Partition, p.Slots, out)
		}
	}
	out, code = cli("partitions", "plan", "--to", "16", "--format", "json")
	var plan scalePlan
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || plan.Moved != ledger.SlotCount/2 || len(plan.Groups) != 8 || plan.ToVersion != 1 {
		t.Fatalf("partitions plan --to 16: exit %d: %s", code, out)
	}
	if out, code := cli("partitions", "plan", "--to", "12"); code != 0 || !strings.Contains(out, "5460 of 16384 slots move (33.3%), in 11 groups") {
		t.Fatalf("partitions plan --to 12: exit %d: %s", code, out)
	}
	for _, bad := range [][]string{{"--to", "4"}, {"--to", "0"}, {"--to", "5000"}, {}} {
		if out, code := cli(append([]string{"partitions", "plan"}, bad...)...); code != 2 {
			t.Errorf("partitions plan %v: exit %d: %s", bad, code, out)
		}
	}
	if out, _ := cli("partitions", "ls", "--format", "json"); !strings.Contains(out, `"version": 0`) {
		t.Fatalf("plan changed the map: %s", out)
	}
	n.stop()

	// A map routing to 16 partitions over a topic of 8: refused.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := storage.Open(ctx, storage.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	m0, err := store.SlotMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := m0.Scale(16)
	if err := store.AddSlotMap(ctx, m1); err != nil {
		t.Fatal(err)
	}
	store.Close()
	cmd := exec.Command(binPath, "serve", "--http-addr", freePort(t), "--admin-addr", freePort(t), "--gossip-addr", freePort(t), "--remote-addr", freePort(t),
		"--database-url", dbURL, "--kafka-brokers", broker, "--partitions", "8")
	out2, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out2), "routes to 16 partitions") {
		t.Fatalf("a node under a map wider than its topic: %v\n%s", err, out2)
	}
}
