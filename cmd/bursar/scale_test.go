package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/jackc/pgx/v5"
)

// orderedLoad is clients that each own a few accounts and issue
// operations on them one after another through the REST API: credits and
// transfers to shared sink accounts. An answer that is not final (202,
// 503, a timeout) is retried under the same key until it is, so each
// account's operations are issued strictly in order; every credit's
// answer must carry the account's next sequence number.
type orderedLoad struct {
	t        *testing.T
	accounts [][]string // per client
	sinks    []string
	mu       sync.Mutex
	issued   map[string][]string // account → keys in the order sent
	bal      map[string]int
	ops      atomic.Int64
	wg       sync.WaitGroup
}

func newOrderedLoad(t *testing.T, c *apiClient, clients, perClient int) *orderedLoad {
	l := &orderedLoad{t: t, issued: map[string][]string{}, bal: map[string]int{}}
	for i := range 4 {
		l.sinks = append(l.sinks, c.openAccount(t, fmt.Sprintf("sink-%d", i)))
	}
	for w := range clients {
		var ids []string
		for i := range perClient {
			ids = append(ids, c.openAccount(t, fmt.Sprintf("ord-%d-%d", w, i)))
		}
		l.accounts = append(l.accounts, ids)
	}
	return l
}

// run drives the clients against addrs until stop is closed.
func (l *orderedLoad) run(addrs []string, stop <-chan struct{}, round int) {
	for w, ids := range l.accounts {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := newClient(addrs[w%len(addrs)])
			rng := rand.New(rand.NewPCG(uint64(w), uint64(round)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[rng.IntN(len(ids))]
				key := fmt.Sprintf("o%d-%d-%d", round, w, i)
				path, body := "/api/v1/transactions/credit", map[string]any{"account_id": id, "amount": "1.00", "currency": "USD", "reference_id": key}
				transfer := i%3 == 2 && l.balance(id) > 0
				if transfer {
					path, body = "/api/v1/transactions/transfer", map[string]any{"source_account_id": id,
						"destination_account_id": l.sinks[rng.IntN(len(l.sinks))], "amount": "0.01", "currency": "USD", "reference_id": key}
				}
				r := l.final(c, path, body, key)
				if r == nil {
					return
				}
				l.mu.Lock()
				prev := len(l.issued[id])
				l.issued[id] = append(l.issued[id], key)
				if transfer {
					l.bal[id]--
				} else {
					l.bal[id] += 100
				}
				l.mu.Unlock()
				l.ops.Add(1)
				if !transfer {
					// Only this client debits the account: the balance its
					// answer shows is exactly what it sent so far.
					want := fmt.Sprintf("%d.%02d", l.balance(id)/100, l.balance(id)%100)
					if got := r.str("current_balance"); got != want {
						l.t.Errorf("account %s: %s (operation %d) answered balance %s, want %s: out of order, lost or applied twice", id, key, prev+1, got, want)
						return
					}
				}
			}
		}()
	}
}

// balance is an account's balance in cents from what was answered.
func (l *orderedLoad) balance(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bal[id]
}

// final sends one operation until its answer is final (201), for at most
// a minute; nil when it never was (the test fails).
func (l *orderedLoad) final(c *apiClient, path string, body map[string]any, key string) *apiResponse {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.do(ctx, "POST", path, body, map[string]string{"Idempotency-Key": key})
		cancel()
		switch {
		case err != nil, r.status == 202, r.status == 503:
			time.Sleep(20 * time.Millisecond)
			continue
		case r.status == 201:
			return r
		}
		l.t.Errorf("%s %s: %d %s", path, key, r.status, r.raw)
		return nil
	}
	l.t.Errorf("%s %s: no final answer in a minute", path, key)
	return nil
}

// check compares each account's stored history with the order the keys
// were sent: the same keys, once each, in order.
func (l *orderedLoad) check(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, keys := range l.issued {
		rows, err := conn.Query(ctx, `SELECT reference_id FROM transactions WHERE account_id = $1 AND kind <> 'open' ORDER BY seq`, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(keys, ",") {
			t.Fatalf("account %s: stored %v, sent %v", id, got, keys)
		}
	}
}

// migrationOf reads `bursar partitions ls --format json`.
func migrationOf(t *testing.T, dbURL string) partitionsLs {
	t.Helper()
	out, err := exec.Command(binPath, "partitions", "ls", "--database-url", dbURL, "--format", "json").Output()
	if err != nil {
		t.Fatalf("partitions ls: %v", err)
	}
	var v partitionsLs
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestClusterScalesPartitionsUnderLoad runs three nodes and ordered
// clients while it scales the command topic 8 → 16 (driven by n1) and
// then 24, 32 and 40, killing the driving node with SIGKILL at a
// different step each time. After each step every partition has one
// owner, the audit is clean, and every account's history is exactly its
// operations, in the order they were sent.
func TestClusterScalesPartitionsUnderLoad(t *testing.T) {
	tc := &testCluster{t: t, broker: startBroker(t), dbURL: pgtest.NewDatabase(t), nodes: map[string]*node{}, gossip: map[string]string{}, parts: 8, extra: []string{"--log-level", "info"}}
	for _, id := range []string{"n1", "n2", "n3"} {
		tc.start(id)
	}
	tc.waitOwned("n1", "n2", "n3")
	load := newOrderedLoad(t, newClient(tc.nodes["n1"].addr), 12, 3)
	checkpoint := func(step string, owners ...string) {
		t.Helper()
		tc.waitOwned(owners...)
		if code, out := auditProcess(t, tc.dbURL, "--kafka-brokers", tc.broker, "--wait", "60s"); code != 0 {
			t.Fatalf("%s: audit exit %d:\n%s", step, code, out)
		}
		load.check(t, tc.dbURL)
		t.Logf("%s: %d operations so far, in order, audit clean", step, load.ops.Load())
	}
	addrs := []string{tc.nodes["n1"].addr, tc.nodes["n3"].addr}

	// 8 → 16, driven by n1 through the CLI.
	stop := make(chan struct{})
	load.run(addrs, stop, 1)
	time.Sleep(time.Second)
	start := time.Now()
	n1 := tc.nodes["n1"]
	out, err := exec.Command(binPath, "partitions", "scale", "--to", "16", "--addr", n1.admin, "--api-key", keyFor(n1.admin), "--wait", "60s").CombinedOutput()
	if err != nil {
		t.Fatalf("partitions scale --to 16: %v\n%s", err, out)
	}
	took := time.Since(start)
	if !strings.Contains(string(out), "slot map version 1: 16 partitions") {
		t.Fatalf("partitions scale output:\n%s", out)
	}
	time.Sleep(time.Second)
	close(stop)
	load.wg.Wait()
	tc.parts = 16
	checkpoint("after scaling 8 → 16", "n1", "n2", "n3")
	t.Logf("scale 8 → 16 under load took %s:\n%s", took.Round(time.Millisecond), out)

	// Running it again changes nothing.
	out, err = exec.Command(binPath, "partitions", "scale", "--to", "16", "--addr", n1.admin, "--api-key", keyFor(n1.admin), "--wait", "60s").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to move") {
		t.Fatalf("second scale --to 16: %v\n%s", err, out)
	}
	if v := migrationOf(t, tc.dbURL); v.SlotMap.Version != 1 || v.Migration != nil {
		t.Fatalf("after a repeated scale: %+v", v)
	}

	// Then the driving node is killed at a step of the migration (it also
	// owns old and new partitions of the groups in flight): while the
	// topic grows (before any barrier), while it waits for a handover
	// (after a barrier), and once a group is handed over. The migration
	// is finished by running the command again on another node, or by the
	// nodes themselves; the killed node starts again.
	for round, step := range []struct {
		to       int
		driver   string
		killAt   string // a substring of the driver's step
		rerunOn  string // "" : left to the nodes' watchdog
		resuming bool
	}{
		{to: 24, driver: "n2", killAt: "growing", rerunOn: "n1"},
		{to: 32, driver: "n3", killAt: "waiting for the handover", resuming: true},
		{to: 40, driver: "n2", killAt: "handed over in", rerunOn: "n1"},
	} {
		stop = make(chan struct{})
		load.run([]string{tc.nodes["n1"].addr}, stop, 2+round)
		time.Sleep(500 * time.Millisecond)
		d := tc.nodes[step.driver]
		driver := exec.Command(binPath, "partitions", "scale", "--to", fmt.Sprint(step.to), "--addr", d.admin, "--api-key", keyFor(d.admin), "--wait", "60s")
		if err := driver.Start(); err != nil {
			t.Fatal(err)
		}
		ac := &adminClient{scheme: "http://", key: keyFor(d.admin), hc: &http.Client{Timeout: 2 * time.Second}}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var st migrationView
			if err := ac.get(context.Background(), d.admin, "/internal/partitions/migration", &st); err == nil && strings.Contains(st.Driver.Step, step.killAt) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("scale --to %d on %s never reached %q", step.to, step.driver, step.killAt)
			}
			time.Sleep(time.Millisecond)
		}
		d.kill()
		delete(tc.nodes, step.driver)
		driver.Wait() //nolint:errcheck // its node died under it
		if step.rerunOn != "" {
			r := tc.nodes[step.rerunOn]
			out, err := exec.Command(binPath, "partitions", "scale", "--to", fmt.Sprint(step.to), "--addr", r.admin, "--api-key", keyFor(r.admin), "--wait", "60s").CombinedOutput()
			if err != nil {
				t.Fatalf("scale --to %d again on %s after %s was killed at %q: %v\n%s", step.to, step.rerunOn, step.driver, step.killAt, err, out)
			}
		}
		deadline = time.Now().Add(90 * time.Second)
		for {
			v := migrationOf(t, tc.dbURL)
			if v.SlotMap != nil && v.SlotMap.Partitions == int32(step.to) && v.Migration == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("scale --to %d did not finish 90s after %s was killed at %q: %+v", step.to, step.driver, step.killAt, v.Migration)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if step.resuming {
			resumed := false
			for _, n := range tc.nodes {
				resumed = resumed || strings.Contains(n.log.String(), "resuming it here")
			}
			if !resumed {
				t.Fatal("no node says it resumed the migration")
			}
		}
		tc.start(step.driver)
		time.Sleep(time.Second)
		close(stop)
		load.wg.Wait()
		tc.parts = step.to
		checkpoint(fmt.Sprintf("after scaling to %d with its driver killed at %q", step.to, step.killAt), "n1", "n2", "n3")
	}
	if load.ops.Load() == 0 {
		t.Fatal("no operation completed")
	}
}
