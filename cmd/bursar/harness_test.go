package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the bursar binary the process-level tests run, built once.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bursar-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "bursar")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building bursar:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // every port freePort returned in this process
)

// freePort returns a loopback address no one listens on, with a port
// below the kernel's ephemeral range (32768 and up on Linux): a port the
// kernel hands out (":0") is free only until a client connection takes it
// as its local port, and between the test picking it and the node binding
// it, one did ("bind: address already in use" in CI). Ports below the
// range are only taken by listeners, and this one is checked free.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue // handed out before, maybe not bound yet
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return l.Addr().String()
	}
	t.Fatal("no free port below the ephemeral range after 200 tries")
	return ""
}

// API keys of the process tests: one admin key per database, created
// with `bursar apikey create` before the first node on it starts, and the
// key of each node's HTTP address, which newClient and waitMetric send.
var (
	keysMu   sync.Mutex
	dbKeys   = map[string]string{}
	addrKeys = map[string]string{}
)

// adminKey returns the admin API key of the database at dbURL, creating
// it on first use.
func adminKey(t *testing.T, dbURL string) string {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := dbKeys[dbURL]; ok {
		return k
	}
	out, err := exec.Command(binPath, "apikey", "create", "--database-url", dbURL, "--name", "process tests", "--scopes", "admin", "--format", "json").Output()
	if err != nil {
		t.Fatalf("apikey create: %v", err)
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &created); err != nil || created.Token == "" {
		t.Fatalf("apikey create printed %q: %v", out, err)
	}
	dbKeys[dbURL] = created.Token
	return created.Token
}

// keyFor is the API key of the node serving HTTP at addr ("" if none).
func keyFor(addr string) string {
	keysMu.Lock()
	defer keysMu.Unlock()
	return addrKeys[addr]
}

// argValue is the value of flag name in args ("" if absent).
func argValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

// node is a running `bursar serve` process.
type node struct {
	t     *testing.T
	cmd   *exec.Cmd
	addr  string
	admin string // --admin-addr: /internal/*
	log   *syncBuffer
	done  chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNode starts `bursar serve` with args and waits until /readyz says
// ready.
func startNode(t *testing.T, addr string, args ...string) *node {
	t.Helper()
	all := append([]string{"serve", "--http-addr", addr, "--log-level", "warn"}, args...)
	if !slices.Contains(args, "--gossip-addr") {
		all = append(all, "--gossip-addr", freePort(t), "--remote-addr", freePort(t))
	}
	admin := argValue(args, "--admin-addr")
	if admin == "" {
		admin = freePort(t)
		all = append(all, "--admin-addr", admin)
	}
	if db := argValue(args, "--database-url"); db != "" && argValue(args, "--auth") != "off" {
		key := adminKey(t, db)
		keysMu.Lock()
		addrKeys[addr], addrKeys[admin] = key, key
		keysMu.Unlock()
	}
	n := &node{t: t, addr: addr, admin: admin, log: &syncBuffer{}, done: make(chan error, 1)}
	n.cmd = exec.Command(binPath, all...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait() }()
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill() //nolint:errcheck // cleanup
			<-n.done
		}
		if t.Failed() {
			t.Logf("node %s log:\n%s", addr, n.log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	// A node with --tls-cert speaks HTTPS; readiness is all this asks of
	// it, so the certificate is not checked here (its tests check it).
	scheme, hc := "http://", http.DefaultClient
	if argValue(args, "--tls-cert") != "" {
		scheme, hc = "https://", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // readiness only
	}
	last := ""
	for {
		resp, err := hc.Get(scheme + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			last = string(b)
			if resp.StatusCode == 200 {
				return n
			}
		}
		select {
		case err := <-n.done:
			n.done <- err
			t.Fatalf("node exited before ready: %v\n%s", err, n.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready after 60s (last /readyz: %s)\n%s", last, n.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to go.
// waitMetric waits until the node at addr reports a sample of metric
// (a counter without labels) above zero.
func waitMetric(t *testing.T, addr, metric string) float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if k := keyFor(addr); k != "" {
			req.Header.Set("Authorization", "Bearer "+k)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, metric+" "); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
						return f
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s stayed at zero", metric, addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *node) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // it may have exited
	<-n.done
}

// stop sends SIGTERM and waits for a clean exit (final flush).
func (n *node) stop() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // checked by Wait
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Fatalf("node exited with %v after SIGTERM\n%s", err, n.log.String())
		}
	case <-time.After(60 * time.Second):
		n.t.Fatalf("node did not stop within 60s of SIGTERM")
	}
}

// apiClient talks JSON to a node.
type apiClient struct {
	base string
	key  string // sent as the bearer token when set
	hc   *http.Client
}

func newClient(addr string) *apiClient {
	return &apiClient{base: "http://" + addr, key: keyFor(addr), hc: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

type apiResponse struct {
	status   int
	header   http.Header
	replayed bool
	body     map[string]any
	raw      []byte
}

func (r *apiResponse) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

// readyz asks the node's /readyz.
func (c *apiClient) readyz(t *testing.T) *apiResponse {
	t.Helper()
	r, err := c.do(context.Background(), "GET", "/readyz", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// check is one check's text in a /readyz answer.
func (r *apiResponse) check(name string) string {
	checks, _ := r.body["checks"].(map[string]any)
	s, _ := checks[name].(string)
	return s
}

func (r *apiResponse) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (c *apiClient) do(ctx context.Context, method, path string, body any, headers map[string]string) (*apiResponse, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &apiResponse{status: resp.StatusCode, header: resp.Header, raw: raw, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	if resp.Header.Get("X-Request-ID") == "" {
		return nil, fmt.Errorf("%s %s: response without X-Request-ID", method, path)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			return nil, fmt.Errorf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return out, nil
}

// openAccount opens a USD account with an idempotency key and returns its ID.
func (c *apiClient) openAccount(t *testing.T, key string) string {
	t.Helper()
	r, err := c.do(context.Background(), "POST", "/api/v1/accounts",
		map[string]any{"customer_id": "cust-" + key, "account_type": "checking", "currency": "USD"},
		map[string]string{"Idempotency-Key": key})
	if err != nil || r.status != 201 {
		t.Fatalf("open account: %v %+v", err, r)
	}
	return r.str("account_id")
}

// deposit credits amount USD to acct under the idempotency (and
// reference) key key.
func (c *apiClient) deposit(t *testing.T, acct, amount, key string) *apiResponse {
	t.Helper()
	r, err := c.do(context.Background(), "POST", "/api/v1/transactions/credit",
		map[string]any{"account_id": acct, "amount": amount, "currency": "USD", "reference_id": key},
		map[string]string{"Idempotency-Key": key})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// auditProcess runs `bursar audit` and returns its exit code and output.
func auditProcess(t *testing.T, dbURL string, extra ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"audit", "--database-url", dbURL}, extra...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("audit: %v", err)
	}
	return 0, string(out)
}
