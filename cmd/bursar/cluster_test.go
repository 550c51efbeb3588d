package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
)

// testCluster is a set of `bursar serve` processes sharing one development
// broker and one database.
type testCluster struct {
	t      *testing.T
	broker string
	dbURL  string
	seed   string // gossip address of the first node
	nodes  map[string]*node
	gossip map[string]string
	parts  int
	extra  []string // more flags for every node
}

// start starts node id with the cluster's flags, then extra.
func (tc *testCluster) start(id string, extra ...string) *node {
	tc.t.Helper()
	addr, gossip := freePort(tc.t), freePort(tc.t)
	if tc.seed == "" {
		tc.seed = gossip
	}
	n := startNode(tc.t, addr, append([]string{"--node-id", id, "--database-url", tc.dbURL, "--kafka-brokers", tc.broker,
		"--partitions", fmt.Sprint(tc.parts), "--gossip-addr", gossip, "--remote-addr", freePort(tc.t),
		"--join", tc.seed, "--probe-interval", "200ms", "--flush-interval", "20ms", "--wait-timeout", "3s",
		// Trim the command log every second while partitions move: a new
		// owner must find everything after the committed offset.
		"--commands-retention", "1s"}, append(slices.Clone(tc.extra), extra...)...)...)
	tc.nodes[id] = n
	tc.gossip[id] = gossip
	return n
}

// liveIDs returns the IDs of the nodes still running, sorted.
func (tc *testCluster) liveIDs() []string {
	var out []string
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if _, ok := tc.nodes[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// live returns the HTTP addresses of the nodes still running, sorted by ID.
func (tc *testCluster) live() []string {
	var out []string
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if n, ok := tc.nodes[id]; ok {
			out = append(out, n.addr)
		}
	}
	return out
}

// status runs `bursar cluster status --format json` against a live node.
func (tc *testCluster) status() (*clusterView, int) {
	tc.t.Helper()
	first := tc.nodes[tc.liveIDs()[0]]
	cmd := exec.Command(binPath, "cluster", "status", "--addr", first.admin, "--api-key", keyFor(first.admin), "--kafka-brokers", tc.broker, "--format", "json")
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tc.t.Fatal(err)
	}
	var v clusterView
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, code
	}
	return &v, code
}

// waitOwned waits until every partition has exactly one owner among the
// given nodes, each ready, and returns how long it took.
func (tc *testCluster) waitOwned(ids ...string) time.Duration {
	tc.t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		v, code := tc.status()
		if v != nil && code == 0 && tc.ownedOnce(v, ids) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("partitions not owned exactly once by %v after 60s: %+v", ids, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tc *testCluster) ownedOnce(v *clusterView, ids []string) bool {
	count := map[int32]int{}
	for _, p := range v.Partitions {
		if !p.Ready || !strings.Contains(","+strings.Join(ids, ",")+",", ","+p.Owner+",") {
			return false
		}
		count[p.Partition]++
	}
	if len(count) != tc.parts {
		return false
	}
	for _, c := range count {
		if c != 1 {
			return false
		}
	}
	return true
}

// TestClusterMembershipAndFailover runs three nodes on loopback with one
// development broker and the shared PostgreSQL, and a transfer workload
// through every ingress while it adds a fourth node, drains and stops one,
// kills an owner with SIGKILL, and pauses an owner with SIGSTOP long enough
// to be declared dead. After each step the money audit is clean, every
// acknowledged operation is applied exactly once and every partition has
// exactly one owner.
func TestClusterMembershipAndFailover(t *testing.T) {
	tc := &testCluster{t: t, broker: startBroker(t), dbURL: pgtest.NewDatabase(t), nodes: map[string]*node{}, gossip: map[string]string{}, parts: 16}
	for _, id := range []string{"n1", "n2", "n3"} {
		tc.start(id)
	}
	tc.waitOwned("n1", "n2", "n3")

	const accounts = 60
	const fundCents = 100_000
	c0 := newClient(tc.live()[0])
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = c0.openAccount(t, fmt.Sprintf("cl-open-%d", i))
		fund := &bankOp{key: fmt.Sprintf("cl-fund-%d", i), kind: "credit", src: ids[i], cents: fundCents}
		if fund.send(context.Background(), t, c0); fund.outcome != "completed" {
			t.Fatalf("funding: %+v", fund)
		}
	}
	ghost := uuid.NewString()

	var (
		log opLog
		seq atomic.Int64
	)
	// load runs transfers (and some credits) round-robin over the given
	// nodes until stop is closed.
	load := func(addrs []string, stop chan struct{}) *sync.WaitGroup {
		clients := make([]*apiClient, 9)
		for w := range clients {
			clients[w] = newClient(addrs[w%len(addrs)])
		}
		return runWorkers(len(clients), uint64(seq.Load()), stop, func(w int, rng *rand.Rand) {
			o := &bankOp{key: fmt.Sprintf("cl-%d", seq.Add(1)), kind: "transfer",
				src: ids[rng.IntN(accounts)], dst: ids[rng.IntN(accounts)], cents: 1 + rng.Int64N(5_000)}
			switch x := rng.IntN(100); {
			case x < 10:
				o.kind, o.dst = "credit", ""
			case x < 13:
				o.dst = ghost
			case x < 15:
				o.dst = o.src
			}
			log.send(t, clients[w], o, 5*time.Second, 50*time.Millisecond)
		})
	}
	// checkpoint stops the load, resolves every lost answer through a live
	// node, and checks ownership, the audit and exactly-once.
	checkpoint := func(step string, owners ...string) {
		t.Helper()
		tc.waitOwned(owners...)
		snapshot := log.snapshot()
		resolveAll(t, newClient(tc.live()[0]), snapshot, tc.dbURL)
		code, out := auditProcess(t, tc.dbURL, "--kafka-brokers", tc.broker, "--wait", "60s")
		if code != 0 {
			t.Fatalf("%s: audit exit %d:\n%s", step, code, out)
		}
		checkBank(t, tc.dbURL, ids, fundCents, snapshot)
		t.Logf("%s: %d operations so far, audit clean, every partition owned once by %v", step, len(snapshot), owners)
	}
	run := func(d time.Duration, during func()) {
		stop := make(chan struct{})
		wg := load(tc.live(), stop)
		time.Sleep(d / 2)
		if during != nil {
			during()
		}
		time.Sleep(d / 2)
		close(stop)
		wg.Wait()
	}

	// Step 1: add a fourth node, then drain and stop one.
	run(4*time.Second, func() { tc.start("n4") })
	checkpoint("after adding n4", "n1", "n2", "n3", "n4")
	run(4*time.Second, func() {
		out, err := exec.Command(binPath, "node", "drain", "n2", "--addr", tc.nodes["n1"].admin, "--api-key", keyFor(tc.nodes["n1"].admin), "--wait", "60s").CombinedOutput()
		if err != nil {
			t.Errorf("node drain: %v\n%s", err, out)
		}
	})
	tc.nodes["n2"].stop()
	delete(tc.nodes, "n2")
	checkpoint("after draining and stopping n2", "n1", "n3", "n4")

	// Step 2: kill an owner with SIGKILL and measure how long its
	// partitions have no owner.
	var failover time.Duration
	run(4*time.Second, func() {
		tc.nodes["n3"].kill()
		delete(tc.nodes, "n3")
		failover = tc.waitOwned("n1", "n4")
	})
	checkpoint("after SIGKILL of n3", "n1", "n4")
	t.Logf("partitions unowned for at most %s after SIGKILL (probe interval 200ms)", failover.Round(10*time.Millisecond))

	// Step 3: pause an owner long enough to be declared dead, then resume
	// it: it must be fenced (drop its partitions, write nothing under its
	// old epoch) and then take its share back through a fresh acquisition.
	zombie := tc.nodes["n4"]
	run(6*time.Second, func() {
		zombie.cmd.Process.Signal(syscall.SIGSTOP) //nolint:errcheck // checked by the takeover below
		tc.nodes["n4"] = nil
		delete(tc.nodes, "n4")
		tc.waitOwned("n1")
		zombie.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // checked below
		tc.nodes["n4"] = zombie
	})
	checkpoint("after SIGSTOP/SIGCONT of n4", "n1", "n4")
	if !strings.Contains(zombie.log.String(), "dropping it") && !strings.Contains(zombie.log.String(), "fenced out of partition") {
		t.Fatalf("the paused node was never fenced:\n%s", zombie.log.String())
	}
	if !strings.Contains(zombie.log.String(), "level=WARN") {
		t.Fatal("no warning logged by the fenced node")
	}

	counts := map[string]int{}
	for _, o := range log.ops {
		counts[o.kind+"/"+o.outcome+"/"+o.code]++
	}
	t.Logf("cluster workload: %d operations: %v", len(log.ops), counts)
	if counts["transfer/completed/"] == 0 {
		t.Fatal("no transfer completed")
	}
}

// TestGroupSyncNodeStopsWhenAnotherJoins: a node whose embedded broker runs
// --broker-sync=journal (the default; group alike) stops with a clear error
// when another node joins and uses that broker: only the broker's own
// process waits for the journal,
// so the other node would commit and answer before its records are on disk.
func TestGroupSyncNodeStopsWhenAnotherJoins(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	brokerAddr, gossip := freePort(t), freePort(t)
	n1 := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--broker-listen", brokerAddr,
		"--gossip-addr", gossip, "--remote-addr", freePort(t), "--partitions", "4", "--probe-interval", "200ms")
	n2 := exec.Command(binPath, "serve", "--node-id", "second", "--http-addr", freePort(t), "--database-url", dbURL,
		"--kafka-brokers", brokerAddr, "--join", gossip, "--gossip-addr", freePort(t), "--remote-addr", freePort(t),
		"--partitions", "4", "--probe-interval", "200ms", "--log-level", "warn")
	if err := n2.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		n2.Process.Kill() //nolint:errcheck // cleanup
		n2.Wait()         //nolint:errcheck // killed
	}()
	select {
	case err := <-n1.done:
		n1.done <- err
		if err == nil {
			t.Fatalf("the group-sync node exited 0 after another joined:\n%s", n1.log.String())
		}
		if !strings.Contains(n1.log.String(), "--broker-sync=journal") {
			t.Fatalf("exit %v without naming --broker-sync=journal:\n%s", err, n1.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the group-sync node kept running with another node in the cluster:\n%s", n1.log.String())
	}
}

// TestSecondNodeOnADataDirIsRefused: a second `bursar serve` on a data
// directory a running node holds exits with an error naming --data-dir,
// and the first node keeps serving (its log is not touched).
func TestSecondNodeOnADataDirIsRefused(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	dir := t.TempDir()
	first := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", dir, "--partitions", "4")
	second := exec.Command(binPath, "serve", "--http-addr", freePort(t), "--gossip-addr", freePort(t), "--remote-addr", freePort(t),
		"--node-id", "second", "--database-url", dbURL, "--data-dir", dir, "--partitions", "4", "--log-level", "warn")
	out, err := second.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second node on the same data dir: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "--data-dir") || !strings.Contains(string(out), "in use") {
		t.Fatalf("the refusal does not name --data-dir and the lock:\n%s", out)
	}
	resp, err := http.Get("http://" + first.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first node after the refusal: /readyz %d", resp.StatusCode)
	}
}

// TestTakenPortIsACleanError: each address flag pointing at a port
// another process holds stops serve with exit status 1 and an error naming
// the flag, never a panic.
func TestTakenPortIsACleanError(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().String()
	for _, flag := range []string{"--http-addr", "--remote-addr", "--gossip-addr", "--broker-listen"} {
		t.Run(flag, func(t *testing.T) {
			addrs := map[string]string{"--http-addr": freePort(t), "--remote-addr": freePort(t), "--gossip-addr": freePort(t), "--broker-listen": freePort(t)}
			addrs[flag] = taken
			args := []string{"serve", "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4", "--log-level", "warn"}
			for f, a := range addrs {
				args = append(args, f, a)
			}
			out, err := exec.Command(binPath, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("serve with %s taken: %v, want exit status 1\n%s", flag, err, out)
			}
			if !strings.Contains(string(out), flag+" "+taken) || strings.Contains(string(out), "panic") {
				t.Fatalf("serve with %s taken does not name it cleanly:\n%s", flag, out)
			}
		})
	}
}

// TestDatabaseRefusesAnotherLog: a database records the log it was built
// from; a node that brings another log (here a second embedded broker's
// data directory) is refused before it acquires anything, with a message
// naming DATABASE_URL and --data-dir, and the database is untouched.
func TestDatabaseRefusesAnotherLog(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	first := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4")
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-first.done; err != nil {
		t.Fatalf("first node's stop: %v", err)
	}
	epochs := func() int64 {
		t.Helper()
		db, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(context.Background())
		var sum int64
		if err := db.QueryRow(context.Background(), `SELECT coalesce(sum(epoch), 0) FROM partitions`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	before := epochs()
	out, err := exec.Command(binPath, "serve", "--http-addr", freePort(t), "--gossip-addr", freePort(t), "--remote-addr", freePort(t),
		"--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4", "--log-level", "warn").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("a node with another log: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"DATABASE_URL", "--data-dir", "not the one this database was built from"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if after := epochs(); after != before {
		t.Fatalf("the refused node acquired partitions: epochs summed %d before, %d after", before, after)
	}
}

// TestReadyzTellsTheTruth: /readyz fails, naming the check, when the node
// cannot serve a write end to end: a single node drained has no owner for
// any partition (before, it answered 200 while writes stayed pending).
func TestReadyzTellsTheTruth(t *testing.T) {
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "4")
	c := newClient(n.addr)
	if r := c.readyz(t); r.status != 200 || r.body["ready"] != true || r.body["degraded"] != false {
		t.Fatalf("a serving node: %d %s", r.status, r.raw)
	}
	if r, err := newClient(n.admin).do(context.Background(), "POST", "/internal/drain", nil, nil); err != nil || r.status != 202 {
		t.Fatalf("drain: %v %+v", err, r)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := c.readyz(t)
		if r.status == 503 && r.body["ready"] == false && strings.Contains(r.check("partitions"), "no owner") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drained single node: /readyz %d %s, want 503 naming no owner", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
