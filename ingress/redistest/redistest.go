// Package redistest runs a redis-server of a test's own, on its own port,
// for the tests that need a real Redis (rate limits, the idempotency fast
// path, Redis going away and coming back).
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
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
