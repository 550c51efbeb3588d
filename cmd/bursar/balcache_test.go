package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
)

// TestEventualBalanceReads: an ingress-only node (it owns no partition,
// so every strong read hops to the owner) answers Consistency: eventual
// from Redis, with the version and as_of of the owner's last committed
// flush. Under writes, an eventual read never shows a version newer than
// the strong read that follows it; once the writes stop, the two agree.
// With Redis killed an eventual read is served as a strong one; with
// Redis back (empty), the next write publishes again. Bad consistency
// values are refused and change nothing. (That a state is published only
// once PostgreSQL holds it is engine.TestAccountsCommittedAfterTheCommit's:
// the owner's memory is ahead of any commit, so this test cannot see it.)
func TestEventualBalanceReads(t *testing.T) {
	rd := startRedisProcess(t)
	tc := &testCluster{t: t, broker: startBroker(t), dbURL: pgtest.NewDatabase(t), nodes: map[string]*node{}, gossip: map[string]string{}, parts: 4,
		extra: []string{"--redis-url", "redis://" + rd.Addr}}
	tc.start("n1")
	edge := tc.start("n2", "--roles", "ingress")
	tc.waitOwned("n1")
	ce, co := newClient(edge.addr), newClient(tc.nodes["n1"].addr)
	accounts := make([]string, 6)
	for i := range accounts {
		accounts[i] = co.openAccount(t, fmt.Sprintf("ev-open-%d", i))
		if r := co.deposit(t, accounts[i], "100.00", fmt.Sprintf("ev-fund-%d", i)); r.status != 201 {
			t.Fatalf("fund: %d %s", r.status, r.raw)
		}
	}
	type balance struct {
		version           int64
		consistency, asOf string
		current           string
	}
	read := func(acct string, headers map[string]string, query string) balance {
		t.Helper()
		r, err := ce.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance"+query, nil, headers)
		if err != nil || r.status != 200 {
			t.Errorf("balance read %s%s: %v %+v", acct, query, err, r)
			return balance{}
		}
		v, _ := r.body["version"].(float64)
		return balance{version: int64(v), consistency: r.str("consistency"), asOf: r.str("as_of"), current: r.str("current_balance")}
	}
	// Writes for 3 s on every account, through both nodes.
	var (
		wg       sync.WaitGroup
		credits  atomic.Int64
		stop     = make(chan struct{})
		eventual atomic.Int64
		// The load runs until enough of it is done, not for a time.
		writes, pairs = newProgress(), newProgress()
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ce
			if w%2 == 1 {
				c = co
			}
			untilClosed(stop, func(i int) bool {
				r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit",
					map[string]any{"account_id": accounts[(w+i)%len(accounts)], "amount": "1.00", "currency": "USD", "reference_id": fmt.Sprintf("ev-w%d-%d", w, i)}, nil)
				if err != nil || r.status != 201 {
					t.Errorf("credit: %v %+v", err, r)
					return false
				}
				credits.Add(1)
				writes.done()
				return true
			})
		}()
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			untilClosed(stop, func(int) bool {
				acct := accounts[rng.IntN(len(accounts))]
				var ev balance
				if r == 0 {
					ev = read(acct, map[string]string{"Consistency": "eventual"}, "")
				} else {
					ev = read(acct, nil, "?consistency=eventual")
				}
				strong := read(acct, nil, "")
				if ev.consistency == "eventual" {
					eventual.Add(1)
					at, err := time.Parse(time.RFC3339Nano, ev.asOf)
					if err != nil || time.Since(at) < 0 || time.Since(at) > time.Minute {
						t.Errorf("eventual read's as_of %q", ev.asOf)
					}
				} else if ev.consistency != "strong" {
					t.Errorf("eventual read answered consistency %q", ev.consistency)
				}
				if strong.consistency != "strong" || ev.version > strong.version {
					t.Errorf("eventual read at version %d (%s), then the strong read at %d (%s)", ev.version, ev.consistency, strong.version, strong.consistency)
				}
				pairs.done()
				return true
			})
		}()
	}
	failed := waitAll(30*time.Second, writes.wait(400), pairs.wait(200))
	close(stop)
	wg.Wait()
	if failed != "" {
		t.Fatal(failed)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d credits; %d eventual reads answered from Redis", credits.Load(), eventual.Load())
	if eventual.Load() == 0 {
		t.Fatal("no eventual read was answered from Redis")
	}
	// The writes stopped: the last flush's publish brings Redis level.
	for _, acct := range accounts {
		eventually(t, 10*time.Second, func() (bool, string) {
			ev, strong := read(acct, nil, "?consistency=eventual"), read(acct, nil, "")
			return ev.consistency == "eventual" && ev.version == strong.version && ev.current == strong.current,
				fmt.Sprintf("eventual %+v, strong %+v", ev, strong)
		})
	}
	var cents int64
	for _, acct := range accounts {
		b := read(acct, nil, "")
		f, _ := strconv.ParseFloat(b.current, 64)
		cents += int64(f*100 + 0.5)
	}
	if want := 100 * (600 + credits.Load()); cents != want {
		t.Fatalf("the accounts hold %d cents after 600.00 of funding and %d credits of 1.00", cents, credits.Load())
	}
	if hits := metricNow(t, edge.addr, "bursar_balance_cache_hits_total"); hits < float64(eventual.Load()) {
		t.Fatalf("bursar_balance_cache_hits_total %v, want at least %d", hits, eventual.Load())
	}

	// Bad consistency values: 400 INVALID_FIELD.
	for _, bad := range []struct {
		name, query string
		headers     map[string]string
	}{
		{"upper case", "?consistency=EVENTUAL", nil},
		{"unknown", "?consistency=linearizable", nil},
		{"unknown header", "", map[string]string{"Consistency": "weak"}},
		{"query and header differ", "?consistency=strong", map[string]string{"Consistency": "eventual"}},
	} {
		r, err := ce.do(context.Background(), "GET", "/api/v1/accounts/"+accounts[0]+"/balance"+bad.query, nil, bad.headers)
		if err != nil || r.status != 400 || r.errCode() != "INVALID_FIELD" {
			t.Errorf("%s: %v %+v", bad.name, err, r)
		}
	}
	// An account that does not exist is 404 either way.
	if r, err := ce.do(context.Background(), "GET", "/api/v1/accounts/3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f/balance?consistency=eventual", nil, nil); err != nil || r.status != 404 || r.errCode() != "ACCOUNT_NOT_FOUND" {
		t.Fatalf("eventual read of an unknown account: %v %+v", err, r)
	}

	// Redis killed: an eventual read is served as a strong one.
	rd.Kill()
	for i := range 20 {
		ev := read(accounts[i%len(accounts)], nil, "?consistency=eventual")
		if ev.consistency != "strong" || ev.version == 0 {
			t.Fatalf("eventual read with Redis down: %+v", ev)
		}
	}
	if r := newClient(edge.admin).readyz(t); r.status != 200 || r.body["degraded"] != true {
		t.Fatalf("/readyz with Redis down: %d %s", r.status, r.raw)
	}
	// Redis back, empty: the node uses it again, and a write publishes.
	rd.Restart()
	eventually(t, 10*time.Second, func() (bool, string) {
		key := "ev-back-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if r := co.deposit(t, accounts[0], "1.00", key); r.status != 201 {
			return false, fmt.Sprintf("deposit: %d %s", r.status, r.raw)
		}
		credits.Add(1)
		ev, strong := read(accounts[0], nil, "?consistency=eventual"), read(accounts[0], nil, "")
		return ev.consistency == "eventual" && ev.version <= strong.version, fmt.Sprintf("eventual %+v, strong %+v", ev, strong)
	})
	if code, out := auditProcess(t, tc.dbURL, "--kafka-brokers", tc.broker, "--wait", "60s"); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}

// TestRedisKilledUnderLoad: with all three of Redis' jobs on (shared rate
// limits, the idempotency fast path, cached balances), Redis is killed in
// the middle of a load of keyed credits, their retries and eventual
// reads, then started again (empty). No request fails because of it,
// every credit is applied once, the node uses Redis again without a
// restart, and the audit is clean.
func TestRedisKilledUnderLoad(t *testing.T) {
	rd := startRedisProcess(t)
	addr := freePort(t)
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, addr, "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4", "--flush-interval", "20ms",
		"--redis-url", "redis://"+rd.Addr, "--redis-idempotency", "--rate-limit-writes", "100000", "--rate-limit-reads", "100000")
	c := newClient(addr)
	accounts := make([]string, 8)
	for i := range accounts {
		accounts[i] = c.openAccount(t, fmt.Sprintf("rk-open-%d", i))
	}
	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		credits [4]int
		reads   atomic.Int64
		// The phases last until enough of the load is done, not for a time.
		writes, readsDone = newProgress(), newProgress()
	)
	for w := range len(credits) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			untilClosed(stop, func(i int) bool {
				key := fmt.Sprintf("rk-%d-%d", w, i)
				body := map[string]any{"account_id": accounts[(w+i)%len(accounts)], "amount": "1.00", "currency": "USD", "reference_id": key}
				for try := range 2 { // each credit, then its retry
					r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit", body, nil)
					if err != nil || r.status != 201 || (try == 1 && !r.replayed) {
						t.Errorf("credit %s try %d: %v %+v", key, try, err, r)
						return false
					}
				}
				credits[w]++
				writes.done()
				return true
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		untilClosed(stop, func(i int) bool {
			r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+accounts[i%len(accounts)]+"/balance?consistency=eventual", nil, nil)
			if err != nil || r.status != 200 {
				t.Errorf("eventual read: %v %+v", err, r)
				return false
			}
			reads.Add(1)
			readsDone.done()
			return true
		})
	}()
	// Each phase (Redis up, killed, back) lasts until enough credits
	// (each retried) and reads are answered in it.
	phase := func() string { return waitAll(30*time.Second, writes.wait(200), readsDone.wait(100)) }
	failed := phase()
	if failed == "" {
		rd.Kill()
		failed = phase()
	}
	if failed == "" {
		rd.Restart()
		failed = phase()
	}
	close(stop)
	wg.Wait()
	if failed != "" {
		t.Fatal(failed)
	}
	if t.Failed() {
		t.FailNow()
	}
	total := 0
	for _, k := range credits {
		total += k
	}
	t.Logf("%d credits (each retried once), %d eventual reads", total, reads.Load())
	// Back in use without a restart: a new write's balance is served from
	// Redis again.
	eventually(t, 10*time.Second, func() (bool, string) {
		if r := c.deposit(t, accounts[0], "1.00", "rk-after-"+strconv.FormatInt(time.Now().UnixNano(), 36)); r.status != 201 {
			return false, fmt.Sprintf("deposit: %d %s", r.status, r.raw)
		}
		total++
		r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+accounts[0]+"/balance?consistency=eventual", nil, nil)
		return err == nil && r.status == 200 && r.str("consistency") == "eventual", fmt.Sprintf("%v %+v", err, r)
	})
	if v := metricNow(t, addr, "bursar_redis_up"); v != 1 {
		t.Fatalf("bursar_redis_up %v after Redis came back", v)
	}
	// The kill was seen: some call failed and was counted.
	seen := 0.0
	for _, op := range []string{"rate_limit", "idempotency_get", "idempotency_set", "balance_get", "balance_publish"} {
		seen += max(0, metricNow(t, addr, `bursar_redis_errors_total{op="`+op+`"}`))
	}
	if seen == 0 {
		t.Fatal("no failed Redis call counted while Redis was down")
	}
	var cents int64
	for _, acct := range accounts {
		r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
		if err != nil || r.status != 200 {
			t.Fatalf("balance: %v %+v", err, r)
		}
		f, _ := strconv.ParseFloat(r.str("current_balance"), 64)
		cents += int64(f*100 + 0.5)
	}
	if cents != int64(100*total) {
		t.Fatalf("the accounts hold %d cents after %d credits of 1.00, each retried once", cents, total)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}

// untilClosed calls step with 0, 1, 2… until stop is closed or step
// returns false.
func untilClosed(stop <-chan struct{}, step func(i int) bool) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if !step(i) {
			return
		}
	}
}

// progress counts the operations a load's goroutines complete, so that a
// test waits for some of them instead of for a time.
type progress struct{ ticks chan struct{} }

func newProgress() *progress { return &progress{ticks: make(chan struct{}, 1024)} }

// done counts one operation. It never blocks: a tick lost while nobody
// waits (the buffer full) only makes the next wait a little longer.
func (p *progress) done() {
	select {
	case p.ticks <- struct{}{}:
	default:
	}
}

// wait is a wait for n more operations, for waitAll.
func (p *progress) wait(n int) func(<-chan time.Time) string {
	return func(deadline <-chan time.Time) string {
		for i := range n {
			select {
			case <-p.ticks:
			case <-deadline:
				return fmt.Sprintf("%d of %d operations done in time", i, n)
			}
		}
		return ""
	}
}

// waitAll runs the waits in turn under one deadline of d and returns the
// first failure ("" when all are done). The caller stops its load before
// it fails the test, so that no goroutine logs after the test ends.
func waitAll(d time.Duration, waits ...func(<-chan time.Time) string) string {
	deadline := time.After(d)
	for _, w := range waits {
		if msg := w(deadline); msg != "" {
			return msg
		}
	}
	return ""
}
