package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
		{"redis://127.0.0.1:7000/0?cluster=true", "cluster"},
		{"redis://127.0.0.1:7000/3?cluster=true", ""}, // a cluster has only database 0
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

// TestRedisTLSWithACLUser: rediss:// with an ACL user's name and
// password reaches a TLS-only Redis whose certificate the system's roots
// (here SSL_CERT_FILE) trust, and the limits go through it; a wrong
// password leaves the node serving alone, Redis reported down.
func TestRedisTLSWithACLUser(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	ca, caKey := selfSigned(t, 1, nil, nil, caPath, filepath.Join(dir, "ca-key.pem"))
	selfSigned(t, 2, ca, caKey, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command("redis-server", "--port", "0", "--tls-port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--tls-cert-file", filepath.Join(dir, "server.pem"), "--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", caPath, "--tls-auth-clients", "no",
		"--user", "default", "off", "--user", "bursar", "on", ">s3cret-pass", "~*", "&*", "+@all")
	out := &syncBuffer{}
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() }) //nolint:errcheck // cleanup
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	probe := redis.NewClient(&redis.Options{Addr: addr, Username: "bursar", Password: "s3cret-pass", TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer probe.Close()
	eventually(t, 10*time.Second, func() (bool, string) {
		err := probe.Ping(context.Background()).Err()
		return err == nil, fmt.Sprintf("TLS redis-server not answering: %v\n%s", err, out.String())
	})
	t.Setenv("SSL_CERT_FILE", caPath) // the nodes' system roots
	dbURL := pgtest.NewDatabase(t)
	good := freePort(t)
	startNode(t, good, "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "2",
		"--redis-url", "rediss://bursar:s3cret-pass@"+addr, "--rate-limit-writes", "5")
	c := newClient(good)
	acct := c.openAccount(t, "tls-acct")
	// The first TLS connection may take longer than a call's 50 ms: the
	// node then works alone for a second, and uses Redis again after.
	eventually(t, 10*time.Second, func() (bool, string) {
		v := metricNow(t, good, "bursar_redis_up")
		return v == 1, fmt.Sprintf("bursar_redis_up %v", v)
	})
	limited := 0
	for i := range 20 {
		r := c.deposit(t, acct, "1.00", fmt.Sprintf("tls-%d", i))
		switch r.status {
		case 201:
		case 429:
			limited++
		default:
			t.Fatalf("deposit %d: %d %s", i, r.status, r.raw)
		}
	}
	if limited == 0 {
		t.Fatal("none of 20 deposits limited by a budget of 5 a second")
	}
	if n, err := probe.Keys(context.Background(), "*credential:write*").Result(); err != nil || len(n) == 0 {
		t.Fatalf("no rate limit key in the TLS Redis: %v %v", n, err)
	}
	// A wrong password: the node works alone, Redis reported down.
	wrong := freePort(t)
	startNode(t, wrong, "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2",
		"--redis-url", "rediss://bursar:wrong@"+addr, "--rate-limit-writes", "1000")
	cw := newClient(wrong)
	other := cw.openAccount(t, "tls-wrong")
	for i := range 5 {
		if r := cw.deposit(t, other, "1.00", fmt.Sprintf("tls-wrong-%d", i)); r.status != 201 {
			t.Fatalf("deposit with Redis refusing the password: %d %s", r.status, r.raw)
		}
	}
	if v := metricNow(t, wrong, "bursar_redis_up"); v != 0 {
		t.Fatalf("bursar_redis_up %v with a wrong password", v)
	}
	if r := newClient(wrong).readyz(t); r.status != 200 || r.body["degraded"] != true {
		t.Fatalf("/readyz with a wrong Redis password: %d %s", r.status, r.raw)
	}
}
