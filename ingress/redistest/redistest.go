// Package redistest runs a redis-server of a test's own, on its own port,
// for the tests that need a real Redis (rate limits, the idempotency fast
// path, Redis going away and coming back).
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	Addr string
	t    testing.TB
	cmd  *exec.Cmd
}

// Start starts redis-server on addr ("": a free loopback port) and stops
// it when the test ends. Without redis-server the test is skipped, but
// under CI (make test installs it) it fails.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (scripts/ensure-services.sh --redis installs it)")
		}
		t.Skip("redis-server not installed (make test installs it)")
	}
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	s := &Server{Addr: addr, t: t}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Restart starts the server again on its address (after Kill) and
// returns once it answers.
func (s *Server) Restart() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	for i := 0; c.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			s.t.Fatal("redis-server did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL (nothing if it is not running).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill() //nolint:errcheck // it may be gone
		s.cmd.Wait()         //nolint:errcheck // killed
		s.cmd = nil
	}
}

// StartCluster starts a Redis Cluster of n masters (no replicas), each a
// redis-server on a free loopback port with its own node file, joins them
// with redis-cli --cluster create, waits until every node reports
// cluster_state:ok, and stops them when the test ends. It returns their
// addresses.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal(tool + " is not installed (scripts/ensure-services.sh --redis installs it)")
			}
			t.Skip(tool + " not installed (make test installs it)")
		}
	}
	dir := t.TempDir()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = clusterPort(t)
		_, port, _ := net.SplitHostPort(addrs[i])
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes-"+port+".conf", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // cleanup
		c := redis.NewClient(&redis.Options{Addr: addrs[i]})
		for j := 0; c.Ping(context.Background()).Err() != nil; j++ {
			if j > 200 {
				t.Fatal("redis-server did not start")
			}
			time.Sleep(25 * time.Millisecond)
		}
		c.Close()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok after 20s: %v %s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

// clusterPort returns a free loopback address whose port plus 10000 (the
// node's cluster bus) is free too.
func clusterPort(t testing.TB) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if port > 55000 {
			ln.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		ln.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	t.Fatal("no free port pair for a Redis Cluster node")
	return ""
}
