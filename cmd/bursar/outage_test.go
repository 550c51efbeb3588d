package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
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
	deposit := func(key string) *apiResponse { t.Helper(); return c.deposit(t, acct, "5.00", key) }
	if r := deposit("before"); r.status != 201 {
		t.Fatalf("deposit before the outage: %d %s", r.status, r.raw)
	}
	readyz := func() *apiResponse { return c.readyz(t) }
	stopPG()
	if r := readyz(); r.status != 200 || r.body["degraded"] != true || r.check("postgres") != "degraded: unreachable" {
		t.Fatalf("/readyz with PostgreSQL down: %d %s, want 200 degraded, naming no host (it is open to anyone)", r.status, r.raw)
	}
	// The admin listener's gives the error.
	if r := newClient(n.admin).readyz(t); !strings.HasPrefix(r.check("postgres"), "degraded: ") || r.check("postgres") == "degraded: unreachable" {
		t.Fatalf("the admin listener's /readyz with PostgreSQL down: %d %s, want the error", r.status, r.raw)
	}
	if r := deposit("during"); r.status != 201 {
		t.Fatalf("deposit during the outage: %d %s", r.status, r.raw)
	}
	if r := deposit("before"); r.status != 201 || !r.replayed {
		t.Fatalf("retry of an earlier deposit during the outage: %d replayed=%v %s", r.status, r.replayed, r.raw)
	}
	// An account not in memory must be loaded from PostgreSQL: its
	// partition stops, and readiness says so (it is no longer degraded
	// but failing) until PostgreSQL is back.
	opened := make(chan *apiResponse, 1)
	go func() {
		r, _ := c.do(ctx, "POST", "/api/v1/accounts",
			map[string]any{"customer_id": "cust-late", "account_type": "checking", "currency": "USD"},
			map[string]string{"Idempotency-Key": "outage-late-open"})
		opened <- r
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := readyz()
		if r.status == 503 && strings.Contains(r.check("postgres"), "cannot go on") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz while a partition waits for PostgreSQL: %d %s, want 503 naming postgres", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// What needs PostgreSQL now gets a code that says so, with
	// Retry-After, and appends nothing: a retry of the open that waits
	// (its partition applies nothing until PostgreSQL answers), and reads
	// of history and of a transaction.
	for _, tc := range []struct {
		name, method, path string
		body               any
		headers            map[string]string
	}{
		{"retry of the waiting open", "POST", "/api/v1/accounts",
			map[string]any{"customer_id": "cust-late", "account_type": "checking", "currency": "USD"},
			map[string]string{"Idempotency-Key": "outage-late-open"}},
		{"history", "GET", "/api/v1/accounts/" + acct + "/transactions", nil, nil},
		{"transaction", "GET", "/api/v1/transactions/" + uuid.NewString(), nil, nil},
		// Not in memory: whether it exists is PostgreSQL's to say.
		{"balance of an account not in memory", "GET", "/api/v1/accounts/" + uuid.NewString() + "/balance", nil, nil},
		{"account not in memory", "GET", "/api/v1/accounts/" + uuid.NewString(), nil, nil},
	} {
		r, err := c.do(ctx, tc.method, tc.path, tc.body, tc.headers)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != 503 || r.errCode() != "DATABASE_UNAVAILABLE" || r.header.Get("Retry-After") == "" {
			t.Fatalf("%s while PostgreSQL is down: %d Retry-After=%q %s, want 503 DATABASE_UNAVAILABLE with Retry-After",
				tc.name, r.status, r.header.Get("Retry-After"), r.raw)
		}
	}
	if v := waitMetric(t, n.addr, `bursar_ingress_rejected_total{reason="database"}`); v != 1 {
		t.Fatalf("writes refused for PostgreSQL counted %v, want 1", v)
	}
	startPG()
	if r := <-opened; r == nil || (r.status != 201 && r.status != 202) {
		t.Fatalf("the open that waited for PostgreSQL: %+v", r)
	}
	deadline = time.Now().Add(30 * time.Second)
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

// TestFullWriteBehindRefusesWrites: with PostgreSQL down, a partition
// whose write-behind fills (--max-unflushed-rows) applies nothing more;
// the next writes to it are refused with 503 DATABASE_UNAVAILABLE and
// nothing appended, and once PostgreSQL is back the refused write, retried
// with its key, is applied once.
func TestFullWriteBehindRefusesWrites(t *testing.T) {
	dbURL, stopPG, startPG := ownPostgres(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "1",
		"--max-unflushed-rows", "20", "--fetch-max-records", "10")
	c := newClient(n.addr)
	ctx := context.Background()
	acct := c.openAccount(t, "full-open")
	deposit := func(i int) *apiResponse { t.Helper(); return c.deposit(t, acct, "1.00", "full-"+strconv.Itoa(i)) }
	stopPG()
	refused, answered := -1, 0
	for i := 0; i < 60 && refused < 0; i++ {
		switch r := deposit(i); {
		case r.status == 201:
			answered++
		case r.status == 202:
			// Appended in the moment before the partition was known to
			// wait: applied once PostgreSQL is back.
			answered++
		case r.status == 503 && r.errCode() == "DATABASE_UNAVAILABLE" && r.header.Get("Retry-After") != "":
			refused = i
		default:
			t.Fatalf("deposit %d with PostgreSQL down: %d %s, want 201 or 503 DATABASE_UNAVAILABLE", i, r.status, r.raw)
		}
	}
	if refused < 0 {
		t.Fatalf("60 deposits with PostgreSQL down and --max-unflushed-rows 20 were all answered 201")
	}
	if r := c.readyz(t); r.status != 503 || !strings.Contains(r.check("postgres"), "cannot go on") {
		t.Fatalf("/readyz with a full write-behind: %d %s, want 503 naming postgres", r.status, r.raw)
	}
	startPG()
	deadline := time.Now().Add(30 * time.Second)
	for r := c.readyz(t); r.status != 200 || r.body["degraded"] != false; r = c.readyz(t) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after PostgreSQL returned: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := deposit(refused); r.status != 201 || r.replayed {
		t.Fatalf("the refused deposit, retried: %d replayed=%v %s, want 201 applied now", r.status, r.replayed, r.raw)
	}
	want := fmt.Sprintf("%d.00", answered+1)
	deadline = time.Now().Add(15 * time.Second)
	for {
		r, err := c.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
		if err == nil && r.str("current_balance") == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance: %v %+v, want %s", err, r, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
}

// smallDisk mounts a tmpfs of size bytes for the test and unmounts it
// afterwards; it skips where mounting is not allowed.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small file system here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestFullDiskStopsWritesNotTheNode: when the data directory's disk runs
// below the reserve the node refuses writes with 503 STORAGE_FULL and
// Retry-After, serves reads, fails /readyz naming the disk, and once space
// returns takes writes again by itself; the audit is clean.
func TestFullDiskStopsWritesNotTheNode(t *testing.T) {
	dir := smallDisk(t, 256<<20)
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", dir, "--partitions", "4", "--disk-reserve-bytes", strconv.Itoa(64<<20))
	c := newClient(n.addr)
	ctx := context.Background()
	acct := c.openAccount(t, "disk-open")
	deposit := func(key string) *apiResponse { t.Helper(); return c.deposit(t, acct, "1.00", key) }
	if r := deposit("d1"); r.status != 201 {
		t.Fatalf("deposit with room: %d %s", r.status, r.raw)
	}
	// Fill the disk to below the reserve.
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	fill := filepath.Join(dir, "filler")
	if err := os.WriteFile(fill, make([]byte, int64(st.Bavail)*st.Bsize-(32<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	readyz := func() *apiResponse { return c.readyz(t) }
	waitFor("/readyz failing on a full disk", func() bool { return readyz().status == 503 })
	if r := readyz(); !strings.HasPrefix(r.check("disk"), "full") {
		t.Fatalf("/readyz on a full disk does not name the disk: %s", r.raw)
	}
	refused := deposit("d2")
	if refused.status != 503 || refused.errCode() != "STORAGE_FULL" {
		t.Fatalf("write on a full disk: %d %s, want 503 STORAGE_FULL", refused.status, refused.raw)
	}
	if r, err := c.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil); err != nil || r.status != 200 || r.str("current_balance") != "1.00" {
		t.Fatalf("read on a full disk: %v %+v", err, r)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitFor("writes taken again once space returned", func() bool { return deposit("d2").status == 201 })
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit after the full disk: exit %d\n%s", code, out)
	}
}

// TestBrokerOutOfSpaceIsNamed: with no reserve (--disk-reserve-bytes 0)
// the embedded broker's own writes are the first to meet a full disk.
// The node names it in its log ("no space left on device") instead of
// only the producer's UNKNOWN_SERVER_ERROR, counts it, refuses writes with
// 503 STORAGE_FULL, keeps running and serving reads, and takes writes
// again once space returns; the audit is clean.
func TestBrokerOutOfSpaceIsNamed(t *testing.T) {
	dir := smallDisk(t, 256<<20)
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", dir, "--partitions", "1", "--disk-reserve-bytes", "0",
		"--wait-timeout", "2s", "--log-level", "info")
	c := newClient(n.addr)
	ctx := context.Background()
	acct := c.openAccount(t, "nospace-open")
	deposit := func(key string) *apiResponse { t.Helper(); return c.deposit(t, acct, "1.00", key) }
	if r := deposit("n-0"); r.status != 201 {
		t.Fatalf("deposit with room: %d %s", r.status, r.raw)
	}
	// Fill the file system to the last byte.
	fill := filepath.Join(dir, "filler")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for size := 4096; size > 0; size /= 2 {
		for {
			if _, err := f.Write(chunk[:size]); err != nil {
				break
			}
		}
	}
	f.Close()
	answered := 1
	storageFull := false
	for i := 1; i <= 40 && !storageFull; i++ {
		r := deposit("n-" + strconv.Itoa(i))
		switch {
		case r.status == 201:
			answered++ // the page cache or the journal still held it
		case r.status == 503 && r.errCode() == "STORAGE_FULL":
			storageFull = true
		case r.status == 503 && r.errCode() == "UNAVAILABLE":
			// The append failed before the guard knew: nothing is
			// answered, the retry below resolves it.
		default:
			t.Fatalf("deposit %d on a full disk: %d %s", i, r.status, r.raw)
		}
	}
	if !storageFull {
		t.Fatalf("40 deposits on a full disk, none refused with STORAGE_FULL\n%s", n.log.String())
	}
	// The error itself (the write's, with its file), not only a message
	// that mentions space.
	named := regexp.MustCompile(`err="[^"]*no space left on device`)
	for deadline := time.Now().Add(5 * time.Second); !named.MatchString(n.log.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("the node's log does not name the full disk:\n%s", n.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitMetric(t, n.addr, "bursar_broker_no_space_errors_total")
	// While the disk stays full, writes stay refused: the guard's looks
	// (every 0.5 s) see free space at or above a reserve of 0, but its
	// probe write does not fit.
	for i := range 8 {
		if r := deposit("held-" + strconv.Itoa(i)); r.status != 503 || r.errCode() != "STORAGE_FULL" {
			t.Fatalf("deposit %d while the disk is still full: %d %s, want 503 STORAGE_FULL", i, r.status, r.raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if r, err := c.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("read on a full disk: %v %+v", err, r)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for deposit("n-after").status != 201 {
		if time.Now().After(deadline) {
			t.Fatalf("writes not taken again 15 s after space returned\n%s", n.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case err := <-n.done:
		t.Fatalf("the node exited: %v\n%s", err, n.log.String())
	default:
	}
	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit after the full disk: exit %d\n%s", code, out)
	}
}
