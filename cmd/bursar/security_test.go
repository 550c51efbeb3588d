package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bursar/bursar/cluster"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestDefaultsListenOnLoopback: a node started with no address flags
// binds every one of its sockets (HTTP, admin, gossip over TCP and UDP,
// remote, the embedded broker) to loopback only, as /proc/net shows them.
func TestDefaultsListenOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:7946", "127.0.0.1:8090"} {
		if err := canListen("tcp", addr); err != nil {
			t.Skipf("a default port is taken on this machine (%s: %v); the defaults cannot be started here", addr, err)
		}
	}
	cmd := exec.Command(binPath, "serve", "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2", "--log-level", "warn")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // cleanup
		<-done
		if t.Failed() {
			t.Logf("node log:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:8080/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("node on default flags not ready after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	inodes := socketInodes(t, cmd.Process.Pid)
	var bound []string
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		for _, s := range procSockets(t, table) {
			if !inodes[s.inode] || (strings.HasPrefix(table, "tcp") && s.state != "0A") {
				continue // another process's, or a connection rather than a listener
			}
			bound = append(bound, table+" "+s.local.String())
			if !s.local.Addr().IsLoopback() {
				t.Errorf("%s socket bound to %s, beyond loopback", table, s.local)
			}
		}
	}
	// HTTP, admin, remote, gossip TCP, the broker; gossip UDP.
	if len(bound) < 6 {
		t.Fatalf("found %d bound sockets of the node, want at least 6: %v", len(bound), bound)
	}
	t.Logf("bound: %v", bound)
}

// socketInodes returns the inodes of the sockets process pid holds.
func socketInodes(t *testing.T, pid int) map[string]bool {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return out
}

type procSocket struct {
	local        netip.AddrPort
	state, inode string
}

// procSockets parses /proc/net/<table>.
func procSockets(t *testing.T, table string) []procSocket {
	t.Helper()
	f, err := os.Open("/proc/net/" + table)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []procSocket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		local, err := parseProcAddr(fields[1])
		if err != nil {
			t.Fatalf("/proc/net/%s: %q: %v", table, fields[1], err)
		}
		out = append(out, procSocket{local: local, state: fields[3], inode: fields[9]})
	}
	return out
}

// parseProcAddr reads /proc/net's "HEXIP:HEXPORT", the address in host
// byte order per 32-bit word.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address of %d bytes", len(raw))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// TestStrangerCannotJoinAKeyedNode: the fault run saw an anonymous
// process join a single node's gossip port and the node exit. With
// --gossip-key the stranger's gossip is refused and counted, the node
// keeps running and serving, and its membership stays its own.
func TestStrangerCannotJoinAKeyedNode(t *testing.T) {
	gossip := freePort(t)
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2",
		"--gossip-addr", gossip, "--remote-addr", freePort(t), "--probe-interval", "200ms",
		"--gossip-key", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)))
	stranger, err := cluster.Join(cluster.MembershipConfig{Meta: cluster.Meta{ID: "stranger", Roles: []string{"engine"}},
		BindAddr: freePort(t), Join: []string{gossip}, ProbeInterval: 200 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Leave(0)
	waitMetric(t, n.addr, "bursar_gossip_rejected_total")
	time.Sleep(2 * time.Second) // ten probe intervals: long enough to have joined, and for the old node to exit
	select {
	case err := <-n.done:
		n.done <- err
		t.Fatalf("the node exited after a stranger tried to join: %v\n%s", err, n.log.String())
	default:
	}
	c := newClient(n.addr)
	if r := c.readyz(t); r.status != 200 {
		t.Fatalf("/readyz after a stranger tried to join: %d %s", r.status, r.raw)
	}
	var members []map[string]any
	if err := getJSON(context.Background(), "http://"+n.admin+"/internal/members", keyFor(n.admin), &members); err != nil || len(members) != 1 {
		t.Fatalf("members after a stranger tried to join: %v %v", err, members)
	}
	if len(stranger.Members()) != 1 {
		t.Fatalf("the stranger sees %d members, want itself only", len(stranger.Members()))
	}
}

// TestAPIKeyLifecycle: a key made with `bursar apikey create` works at
// once on a running node, within its scopes; revoked with `bursar apikey
// revoke`, it is refused within --auth-refresh; `ls` shows it revoked and
// never a token. A node with --auth=off lets a request in without a key
// and says so in /readyz.
func TestAPIKeyLifecycle(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "2", "--auth-refresh", "300ms")
	cli := func(args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(binPath, append([]string{"apikey"}, append(args, "--database-url", dbURL)...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := cli("create", "--name", "reader", "--scopes", "accounts:read")
	token := strings.SplitN(out, "\n", 2)[0]
	if code != 0 || !strings.HasPrefix(token, "bsk_") {
		t.Fatalf("apikey create: exit %d: %s", code, out)
	}
	reader := newClient(n.addr)
	reader.key = token
	ctx := context.Background()
	acct := newClient(n.addr).openAccount(t, "lifecycle-open") // with the harness's admin key
	if r, err := reader.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("a new key, at once: %v %+v", err, r)
	}
	if r, err := reader.do(ctx, "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": acct, "amount": "1.00", "currency": "USD"}, nil); err != nil || r.status != 403 || r.errCode() != "FORBIDDEN" {
		t.Fatalf("a write with a read key: %v %+v", err, r)
	}
	id := strings.SplitN(strings.TrimPrefix(token, "bsk_"), "_", 2)[0]
	if out, code := cli("revoke", id); code != 0 {
		t.Fatalf("apikey revoke: exit %d: %s", code, out)
	}
	revoked := time.Now()
	for {
		r, err := reader.do(ctx, "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.status == 401 && r.errCode() == "UNAUTHENTICATED" {
			break
		}
		if time.Since(revoked) > 3*time.Second {
			t.Fatalf("a key revoked 3 s ago still works with --auth-refresh 300ms: %d %s", r.status, r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, code = cli("ls", "--format", "json")
	if code != 0 || strings.Contains(out, "bsk_") || !strings.Contains(out, `"key_id": "`+id+`"`) || strings.Count(out, `"revoked_at": null`) != 1 {
		t.Fatalf("apikey ls: exit %d: %s", code, out) // the harness's admin key live, the reader revoked
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--name", "x", "--scopes", "accounts:delete"}, "unknown scope"},
		{[]string{"create", "--scopes", "admin"}, "--name"},
		{[]string{"create", "--name", "x"}, "no scope"},
		{[]string{"revoke", "nosuchkey"}, "no API key"},
		{[]string{"rotate"}, "usage"},
	} {
		if out, code := cli(tc.args...); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("apikey %v: exit %d, %q; want a refusal naming %q", tc.args, code, out, tc.want)
		}
	}
	n.stop()

	open := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2", "--auth", "off")
	c := newClient(open.addr)
	if c.key != "" {
		t.Fatal("the harness gave a key to a node without auth")
	}
	c.openAccount(t, "no-auth-open")
	if r := c.readyz(t); r.status != 200 || !strings.HasPrefix(r.check("auth"), "off") {
		t.Fatalf("/readyz of a node with --auth=off: %d %s", r.status, r.raw)
	}
}

// TestCreatedByComesFromTheCredential: every transaction records the key
// that asked for it, on the transfer and each of its legs, in
// GET /transactions/{id}, in history and in the rows; a body cannot name
// it.
func TestCreatedByComesFromTheCredential(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4")
	c := newClient(n.addr)
	want := "apikey:" + strings.SplitN(strings.TrimPrefix(c.key, "bsk_"), "_", 2)[0]
	ctx := context.Background()
	a, b := c.openAccount(t, "by-a"), c.openAccount(t, "by-b")
	if r, err := c.do(ctx, "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": a, "amount": "5.00", "currency": "USD", "created_by": "apikey:mallory"}, nil); err != nil || r.status != 400 || r.errCode() != "MALFORMED_REQUEST" {
		t.Fatalf("a body naming created_by: %v %+v", err, r)
	}
	if r, err := c.do(ctx, "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": a, "amount": "5.00", "currency": "USD"}, nil); err != nil || r.status != 201 {
		t.Fatalf("credit: %v %+v", err, r)
	}
	tr, err := c.do(ctx, "POST", "/api/v1/transactions/transfer",
		map[string]any{"source_account_id": a, "destination_account_id": b, "amount": "2.00", "currency": "USD"}, nil)
	if err != nil || tr.status != 201 {
		t.Fatalf("transfer: %v %+v", err, tr)
	}
	var got *apiResponse
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, err = c.do(ctx, "GET", "/api/v1/transactions/"+tr.str("transaction_id"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if legs, _ := got.body["legs"].([]any); got.status == 200 && len(legs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer not readable with both legs: %d %s", got.status, got.raw)
		}
	}
	if got.str("created_by") != want {
		t.Fatalf("transfer created_by %q, want %q: %s", got.str("created_by"), want, got.raw)
	}
	for _, l := range got.body["legs"].([]any) {
		if by := l.(map[string]any)["created_by"]; by != want {
			t.Fatalf("leg created_by %v, want %q: %s", by, want, got.raw)
		}
	}
	h, err := c.do(ctx, "GET", "/api/v1/accounts/"+a+"/transactions", nil, nil)
	if err != nil || h.status != 200 {
		t.Fatalf("history: %v %+v", err, h)
	}
	for _, row := range h.body["transactions"].([]any) {
		if by := row.(map[string]any)["created_by"]; by != want {
			t.Fatalf("history row created_by %v, want %q: %s", by, want, h.raw)
		}
	}
	n.stop()
	out, err := exec.Command("psql", dbURL, "-Atc", "SELECT DISTINCT created_by FROM transactions").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Fatalf("created_by in the rows: %q %v, want only %q", out, err, want)
	}
}

// selfSigned writes a certificate for 127.0.0.1 with serial, signed by
// ca (itself when ca is nil), and its key, as PEM files at certPath and
// keyPath.
func selfSigned(t *testing.T, serial int64, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "bursar test " + strconv.FormatInt(serial, 10)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true, IsCA: ca == nil,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != "" {
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// TestHTTPSAndCertificateReload: with --tls-cert and --tls-key both
// listeners speak HTTPS only; a renewed certificate is served after
// SIGHUP without a restart, and a broken one is refused while the one in
// use stays.
func TestHTTPSAndCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	caPath := filepath.Join(dir, "ca.pem")
	ca, caKey := selfSigned(t, 1, nil, nil, caPath, filepath.Join(dir, "ca-key.pem"))
	selfSigned(t, 2, ca, caKey, certPath, keyPath)
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2",
		"--tls-cert", certPath, "--tls-key", keyPath)
	// The operator commands speak HTTPS to the admin listener with --tls-ca.
	if out, err := exec.Command(binPath, "cluster", "status", "--addr", n.admin, "--api-key", keyFor(n.admin), "--tls-ca", caPath,
		"--partitions", "2", "--format", "json").CombinedOutput(); err != nil {
		t.Fatalf("cluster status over HTTPS: %v\n%s", err, out)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	served := func(addr, path string) (int, int64) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+keyFor(n.addr))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET https://%s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	for _, addr := range []string{n.addr, n.admin} {
		path := "/readyz"
		if addr == n.admin {
			path = "/internal/members"
		}
		if status, serial := served(addr, path); status != 200 || serial != 2 {
			t.Fatalf("https://%s%s: %d with certificate %d, want 200 with 2", addr, path, status, serial)
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatalf("plain HTTP answered 200 on the TLS listener %s", addr)
			}
		}
	}
	// Renewed: served after SIGHUP.
	selfSigned(t, 3, ca, caKey, certPath, keyPath)
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, serial := served(n.addr, "/readyz"); serial == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate is not served 10 s after SIGHUP")
		}
	}
	// Broken: refused, the renewed one stays, the node goes on.
	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(n.log.String(), "reloading the TLS certificate failed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a broken key was not reported:\n%s", n.log.String())
		}
	}
	if status, serial := served(n.addr, "/readyz"); status != 200 || serial != 3 {
		t.Fatalf("after a broken reload: %d with certificate %d, want 200 with 3", status, serial)
	}
}

// TestNodeOverKafkaTLSAndSASL: a node reaches a broker that wants TLS and
// SCRAM (as a managed Kafka does) with the --kafka-tls-* and
// --kafka-sasl-* flags, and serves; with a wrong password it never gets
// ready, and the embedded broker refuses the flags.
func TestNodeOverKafkaTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	caPath, caKeyPath, certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca, caKey := selfSigned(t, 1, nil, nil, caPath, caKeyPath)
	selfSigned(t, 2, ca, caKey, certPath, keyPath)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "bursar", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	brokers := strings.Join(broker.ListenAddrs(), ",")
	sec := []string{"--kafka-brokers", brokers, "--kafka-tls-ca", caPath, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "bursar"}
	dbURL := pgtest.NewDatabase(t)
	n := startNode(t, freePort(t), append([]string{"--database-url", dbURL, "--partitions", "2", "--kafka-sasl-password", "s3cret"}, sec...)...)
	c := newClient(n.addr)
	acct := c.openAccount(t, "over-tls")
	if r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": acct, "amount": "3.00", "currency": "USD"}, nil); err != nil || r.status != 201 {
		t.Fatalf("credit over Kafka TLS and SASL: %v %+v", err, r)
	}
	n.stop()
	if code, out := auditProcess(t, dbURL, append([]string{"--kafka-sasl-password", "s3cret"}, sec...)...); code != 0 {
		t.Fatalf("audit over Kafka TLS and SASL: exit %d\n%s", code, out)
	}

	// A wrong password: the node never serves.
	bad := exec.Command(binPath, append([]string{"serve", "--http-addr", freePort(t), "--admin-addr", freePort(t), "--gossip-addr", freePort(t),
		"--remote-addr", freePort(t), "--database-url", pgtest.NewDatabase(t), "--partitions", "2", "--kafka-sasl-password", "guess"}, sec...)...)
	out := &syncBuffer{}
	bad.Stdout, bad.Stderr = out, out
	if err := bad.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- bad.Wait() }()
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(out.String(), "--kafka-sasl-") {
			t.Fatalf("a node with a wrong SASL password: exit %v, want an error naming --kafka-sasl-*:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		bad.Process.Kill() //nolint:errcheck // it did not give up by itself
		<-exited
		t.Fatalf("a node with a wrong SASL password kept retrying for 30 s:\n%s", out.String())
	}

	// The flags are for an external broker.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--database-url", dbURL, "--kafka-tls"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--kafka-brokers") {
		t.Fatalf("--kafka-tls with the embedded broker: exit %d %q", code, stderr.String())
	}
}

// TestRemoteMutualTLS: three nodes with a gossip key and mutual TLS on
// protoactor remote (--remote-tls-*) form a cluster, and answer writes and
// serve strong reads for each other's partitions; a peer without a
// certificate of the cluster's CA gets no exchange with a node's remote
// port.
func TestRemoteMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.pem")
	ca, caKey := selfSigned(t, 1, nil, nil, caPath, filepath.Join(dir, "ca-key.pem"))
	broker := startBroker(t)
	dbURL := pgtest.NewDatabase(t)
	seed := freePort(t)
	var nodes []*node
	gossipKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))
	for i, id := range []string{"n1", "n2", "n3"} {
		cert, key := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		selfSigned(t, int64(10+i), ca, caKey, cert, key)
		gossip := seed
		if i > 0 {
			gossip = freePort(t)
		}
		nodes = append(nodes, startNode(t, freePort(t), "--node-id", id, "--database-url", dbURL, "--kafka-brokers", broker,
			"--partitions", "8", "--gossip-addr", gossip, "--remote-addr", freePort(t), "--join", seed, "--probe-interval", "200ms",
			"--remote-tls-cert", cert, "--remote-tls-key", key, "--remote-tls-ca", caPath, "--gossip-key", gossipKey, "--auth-refresh", "300ms"))
	}
	// Every one owns partitions.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		owning := 0
		for _, n := range nodes {
			var st struct {
				Partitions []map[string]any `json:"partitions"`
			}
			if getJSON(context.Background(), "http://"+n.admin+"/internal/node", keyFor(n.admin), &st) == nil && len(st.Partitions) > 0 {
				owning++
			}
		}
		if owning == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d nodes did not share the partitions within 30 s", len(nodes))
		}
	}
	// Through n1 only: accounts of the others' partitions are answered and
	// read over remote.
	c := newClient(nodes[0].addr)
	var unowned []string
	for i := range 32 {
		acct := c.openAccount(t, "mtls-"+strconv.Itoa(i))
		r, err := c.do(context.Background(), "GET", "/api/v1/accounts/"+acct+"/balance", nil, nil)
		if err != nil || r.status != 200 {
			t.Fatalf("balance of account %d through n1: %v %+v", i, err, r)
		}
		unowned = append(unowned, acct)
	}
	clusterWideCredentials(t, nodes, dbURL, unowned)
	// A stranger without a certificate: no exchange.
	remoteAddr := ""
	var members []map[string]any
	if err := getJSON(context.Background(), "http://"+nodes[0].admin+"/internal/members", keyFor(nodes[0].admin), &members); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m["id"] == "n1" {
			remoteAddr, _ = m["remote"].(string)
		}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", remoteAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a stranger's dial
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // bounded read below
		_, werr := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		buf := make([]byte, 64)
		_, rerr := conn.Read(buf)
		conn.Close()
		if werr == nil && rerr == nil {
			t.Fatal("a peer without a certificate exchanged data with a node's remote port")
		}
	}
	for _, n := range nodes {
		n.stop()
	}
	if code, out := auditProcess(t, dbURL, "--kafka-brokers", broker); code != 0 {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
}

// TestFailedAuthenticationsAreThrottled: a node's --auth-fail-limit takes
// effect: past it, an address's requests without a live key get 429
// RATE_LIMITED with Retry-After, and a live key still gets in.
func TestFailedAuthenticationsAreThrottled(t *testing.T) {
	n := startNode(t, freePort(t), "--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--partitions", "2", "--auth-fail-limit", "3")
	anon := newClient(n.addr)
	anon.key = ""
	ctx := context.Background()
	for i := range 3 {
		if r, err := anon.do(ctx, "GET", "/api/v1/accounts/"+uuid.NewString(), nil, nil); err != nil || r.status != 401 {
			t.Fatalf("failure %d: %v %+v", i, err, r)
		}
	}
	r, err := anon.do(ctx, "GET", "/api/v1/accounts/"+uuid.NewString(), nil, nil)
	if err != nil || r.status != 429 || r.errCode() != "RATE_LIMITED" || r.header.Get("Retry-After") == "" {
		t.Fatalf("past --auth-fail-limit: %v %+v, want 429 RATE_LIMITED with Retry-After", err, r)
	}
	newClient(n.addr).openAccount(t, "throttled-but-live")
}
