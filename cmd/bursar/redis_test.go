package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/ingress/redistest"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/redis/go-redis/v9"
)

// TestRedisURLForms: each form of --redis-url builds the client it
// names; the others are refused before anything connects.
func TestRedisURLForms(t *testing.T) {
	for _, c := range []struct {
		url  string
		kind string // "": refused
	}{
		{"redis://127.0.0.1:6379", "single"},
		{"rediss://user:pw@127.0.0.1:6380/2", "single"},
		{"redis://127.0.0.1:26379?master_name=m&addr=127.0.0.1:26380", "sentinel"},
		{"redis://127.0.0.1:7000?cluster=true", "cluster"},
		{"rediss://u:p@127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001&addr=127.0.0.1:7002", "cluster"},
		{"http://127.0.0.1:6379", ""},
		{"redis://127.0.0.1:7000?cluster=yes", ""},
		{"redis://127.0.0.1:7000?cluster=true&cluster=true", ""},
		{"redis://127.0.0.1:7000?cluster=true&master_name=m", ""},
		{"redis://127.0.0.1:7000?cluster=true&addr=nohost", ""},
		{"redis://127.0.0.1:7000?cluster=true&bogus=1", ""},
		{"redis://127.0.0.1:6379?addr=127.0.0.1:6380", ""}, // several servers but neither cluster nor sentinels
		{"redis://127.0.0.1:6379?bogus=1", ""},
		{"::", ""},
	} {
		client, err := newRedisClient(c.url)
		kind := ""
		switch client.(type) {
		case *redis.Client:
			kind = "single"
		case *redis.ClusterClient:
			kind = "cluster"
		}
		if err == nil && kind == "single" && strings.Contains(c.url, "master_name") {
			kind = "sentinel" // the failover client is a *redis.Client
		}
		if client != nil {
			client.Close()
		}
		if kind != c.kind || (err == nil) != (c.kind != "") {
			t.Errorf("%s: %T %v, want %q", c.url, client, err, c.kind)
		}
	}
}

// TestRedisCluster: with --redis-url naming a Redis Cluster
// (?cluster=true), the rate limits, the idempotency fast path and the
// cached balances all go through it, their keys spread over its shards.
func TestRedisCluster(t *testing.T) {
	shards := redistest.StartCluster(t, 3)
	addr := freePort(t)
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, addr, "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4", "--flush-interval", "20ms",
		"--redis-url", "redis://"+shards[0]+"?cluster=true&addr="+shards[1], "--redis-idempotency", "--rate-limit-writes", "1000")
	c := newClient(addr)
	accounts := make([]string, 12)
	for i := range accounts {
		accounts[i] = c.openAccount(t, fmt.Sprintf("cl-open-%d", i))
		if r := c.deposit(t, accounts[i], "10.00", fmt.Sprintf("cl-fund-%d", i)); r.status != 201 {
			t.Fatalf("deposit: %d %s", r.status, r.raw)
		}
	}
	// Every account's committed balance is read back from the cluster.
	for _, acct := range accounts {
		eventually(t, 10*time.Second, func() (bool, string) {
			r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance?consistency=eventual", nil, nil)
			if err != nil || r.status != 200 {
				return false, fmt.Sprintf("%v %+v", err, r)
			}
			return r.str("consistency") == "eventual" && r.str("current_balance") == "10.00", string(r.raw)
		})
	}
	// A retry is answered from the cluster.
	eventually(t, 10*time.Second, func() (bool, string) {
		v := metricNow(t, addr, "bursar_idempotency_cache_stored_total")
		return v >= float64(2*len(accounts)), "answers stored: " + strconv.FormatFloat(v, 'f', 0, 64)
	})
	if r := c.deposit(t, accounts[0], "10.00", "cl-fund-0"); r.status != 201 || !r.replayed {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	if v := metricNow(t, addr, "bursar_idempotency_cache_hits_total"); v != 1 {
		t.Fatalf("idempotency cache hits %v after one retry", v)
	}
	if v := metricNow(t, addr, "bursar_redis_up"); v != 1 {
		t.Fatalf("bursar_redis_up %v", v)
	}
	// The keys are spread over the shards, each on the shard of its slot.
	kinds := map[string]bool{}
	holding := 0
	for _, s := range shards {
		host, port, _ := strings.Cut(s, ":")
		out, err := exec.Command("redis-cli", "-h", host, "-p", port, "--scan", "--pattern", "*bursar:*").Output()
		if err != nil {
			t.Fatal(err)
		}
		keys := strings.Fields(string(out))
		if len(keys) > 0 {
			holding++
		}
		for _, k := range keys {
			switch {
			case strings.Contains(k, ":bal:"):
				kinds["balance"] = true
			case strings.Contains(k, ":idem:"):
				kinds["idempotency"] = true
			case strings.Contains(k, "credential:write"), strings.Contains(k, "address:write"):
				kinds["rate limit"] = true
			}
		}
	}
	if holding < 2 || len(kinds) != 3 {
		t.Fatalf("keys on %d of %d shards, kinds %v", holding, len(shards), kinds)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit exit %d:\n%s", code, out)
	}
}
