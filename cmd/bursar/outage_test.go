package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ownPostgres starts a PostgreSQL cluster of the test's own (the shared one
// must never stop) and returns its database URL and functions that stop it
// (immediate mode, like a crash) and start it again. It is dropped when the
// test ends.
func ownPostgres(t *testing.T) (url string, stop, start func()) {
	t.Helper()
	if _, err := exec.LookPath("pg_createcluster"); err != nil {
		t.Skip("pg_createcluster not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	name := "bursartest" + strconv.Itoa(port)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("pg_createcluster", "15", name, "--port", strconv.Itoa(port), "--", "--auth=trust")
	t.Cleanup(func() { exec.Command("pg_dropcluster", "15", name, "--stop").Run() }) //nolint:errcheck // best effort
	run("pg_ctlcluster", "15", name, "start")
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		func() { run("pg_ctlcluster", "15", name, "stop", "-m", "immediate") },
		func() { run("pg_ctlcluster", "15", name, "start") }
}

// TestPostgresOutageDegrades: with PostgreSQL down the node keeps taking
// writes while its write-behind has room, /readyz says degraded (200), a
// retried keyed write is answered from the owner's memory, and once
// PostgreSQL is back everything lands: the audit is clean.
func TestPostgresOutageDegrades(t *testing.T) {
	dbURL, stopPG, startPG := ownPostgres(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4")
	c := newClient(n.addr)
	ctx := context.Background()
	acct := c.openAccount(t, "outage-open")
	deposit := func(key string) *apiResponse {
		t.Helper()
		r, err := c.do(ctx, "POST", "/api/v1/transactions/credit",
			map[string]any{"account_id": acct, "amount": "5.00", "currency": "USD", "reference_id": key},
			map[string]string{"Idempotency-Key": key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := deposit("before"); r.status != 201 {
		t.Fatalf("deposit before the outage: %d %s", r.status, r.raw)
	}
	readyz := func() *apiResponse {
		t.Helper()
		r, err := c.do(ctx, "GET", "/readyz", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	stopPG()
	if r := readyz(); r.status != 200 || r.body["degraded"] != true || !strings.HasPrefix(fmt.Sprint(r.body["checks"].(map[string]any)["postgres"]), "degraded") {
		t.Fatalf("/readyz with PostgreSQL down: %d %s, want 200 degraded", r.status, r.raw)
	}
	if r := deposit("during"); r.status != 201 {
		t.Fatalf("deposit during the outage: %d %s", r.status, r.raw)
	}
	if r := deposit("before"); r.status != 201 || !r.replayed {
		t.Fatalf("retry of an earlier deposit during the outage: %d replayed=%v %s", r.status, r.replayed, r.raw)
	}
	startPG()
	deadline := time.Now().Add(30 * time.Second)
	for r := readyz(); r.status != 200 || r.body["degraded"] != false; r = readyz() {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after PostgreSQL returned: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r, err := c.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
	if err != nil || r.status != 200 || r.str("current_balance") != "10.00" {
		t.Fatalf("balance after the outage: %v %+v", err, r)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit after the outage: exit %d\n%s", code, out)
	}
}
