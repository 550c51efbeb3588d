package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/ingress/redistest"
	"github.com/bursar/bursar/storage/pgtest"
)

// startRedisProcess starts the test's own redis-server (on a port of
// freePort's).
func startRedisProcess(t *testing.T) *redistest.Server { return redistest.Start(t, freePort(t)) }

// TestRateLimitsSharedAcrossNodes: two nodes share one Redis and one
// credential's write budget (20/s): a quick burst through both gets about
// one budget through, not two. With Redis killed, every request still
// gets an answer (201 or 429, each node on its own budget), /readyz
// says degraded, and every 201 is applied once.
func TestRateLimitsSharedAcrossNodes(t *testing.T) {
	rd := startRedisProcess(t)
	tc := &testCluster{t: t, broker: startBroker(t), dbURL: pgtest.NewDatabase(t), nodes: map[string]*node{}, gossip: map[string]string{}, parts: 4,
		extra: []string{"--redis-url", "redis://" + rd.Addr, "--rate-limit-writes", "20"}}
	tc.start("n1")
	tc.start("n2")
	tc.waitOwned("n1", "n2")
	c1, c2 := newClient(tc.nodes["n1"].addr), newClient(tc.nodes["n2"].addr)
	acct := c1.openAccount(t, "rl-acct")
	credited := 0
	burst := func(round string, n int) (ok, limited int, took time.Duration) {
		time.Sleep(1100 * time.Millisecond) // a full budget again
		start := time.Now()
		defer func() { took = time.Since(start) }()
		for i := range n {
			c := c1
			if i%2 == 1 {
				c = c2
			}
			r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit",
				map[string]any{"account_id": acct, "amount": "1.00", "currency": "USD", "reference_id": fmt.Sprintf("rl-%s-%d", round, i)}, nil)
			switch {
			case err != nil:
				t.Fatalf("%s %d: %v", round, i, err)
			case r.status == 201:
				ok++
			case r.status == 429 && r.errCode() == "RATE_LIMITED":
				limited++
			default:
				t.Fatalf("%s %d: %d %s", round, i, r.status, r.raw)
			}
		}
		credited += ok
		return ok, limited, 0
	}
	// At most a burst (20) per budget plus what refills while the burst
	// runs (20/s per budget), and at least a burst.
	most := func(budgets int, took time.Duration) int {
		return budgets*20 + int(float64(budgets*20)*took.Seconds()) + 2
	}
	ok, limited, took := burst("shared", 60)
	t.Logf("sharing Redis: %d of 60 through, %d limited, in %s", ok, limited, took)
	if ok < 19 || ok > most(1, took) {
		t.Fatalf("two nodes sharing Redis let %d of 60 writes through one budget of 20/s in %s (at most %d)", ok, took, most(1, took))
	}
	rd.Kill()
	ok, limited, took = burst("alone", 60)
	t.Logf("Redis down: %d of 60 through, %d limited, in %s", ok, limited, took)
	if ok < 38 || ok > most(2, took) {
		t.Fatalf("two nodes without Redis let %d of 60 through in %s, want each its own 20/s (38 to %d)", ok, took, most(2, took))
	}
	if r := newClient(tc.nodes["n1"].admin).readyz(t); r.status != 200 || r.check("redis") == "ok" || r.body["degraded"] != true {
		t.Fatalf("/readyz with Redis down: %d %s", r.status, r.raw)
	}
	r, err := c1.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
	if err != nil || r.status != 200 || r.str("current_balance") != fmt.Sprintf("%d.00", credited) {
		t.Fatalf("balance after %d credits answered 201: %v %+v", credited, err, r)
	}
	if code, out := auditProcess(t, tc.dbURL, "--kafka-brokers", tc.broker, "--wait", "60s"); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}

// TestRateLimitsThroughSentinel: --redis-url naming Redis Sentinels
// (?master_name=) reaches the master they report, and the limits are
// enforced through it.
func TestRateLimitsThroughSentinel(t *testing.T) {
	master := startRedisProcess(t)
	_, mport, _ := net.SplitHostPort(master.Addr)
	sentinel := freePort(t)
	_, sport, _ := net.SplitHostPort(sentinel)
	conf := t.TempDir() + "/sentinel.conf"
	if err := os.WriteFile(conf, []byte("port "+sport+"\nbind 127.0.0.1\nsentinel monitor bursar 127.0.0.1 "+mport+" 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // cleanup
	eventually(t, 10*time.Second, func() (bool, string) {
		out, err := exec.Command("redis-cli", "-p", sport, "sentinel", "get-master-addr-by-name", "bursar").Output()
		return err == nil && strings.Contains(string(out), mport), "the sentinel does not report the master yet: " + string(out)
	})
	addr := freePort(t)
	startNode(t, addr, "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2",
		"--redis-url", "redis://"+sentinel+"?master_name=bursar", "--rate-limit-writes", "10")
	c := newClient(addr)
	acct := c.openAccount(t, "sentinel-acct")
	time.Sleep(1100 * time.Millisecond)
	ok, limited := 0, 0
	for i := range 30 {
		r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit",
			map[string]any{"account_id": acct, "amount": "1.00", "currency": "USD", "reference_id": fmt.Sprintf("s-%d", i)}, nil)
		switch {
		case err != nil:
			t.Fatal(err)
		case r.status == 201:
			ok++
		case r.status == 429:
			limited++
		default:
			t.Fatalf("%d: %d %s", i, r.status, r.raw)
		}
	}
	if ok < 9 || limited == 0 {
		t.Fatalf("%d of 30 through a budget of 10/s (%d limited)", ok, limited)
	}
	if v := metricNow(t, addr, "bursar_redis_up"); v != 1 {
		t.Fatalf("bursar_redis_up %v: the node is not using Redis through the sentinel", v)
	}
	// The master holds the limiter's keys: it was the one used.
	out, err := exec.Command("redis-cli", "-p", mport, "--scan", "--pattern", "*bursar:*credential:write*").Output()
	if err != nil || !strings.Contains(string(out), "credential:write") {
		t.Fatalf("no rate limit key on the master: %v %q", err, out)
	}
}
