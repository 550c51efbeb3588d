package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// diskGuard watches the free space of the data directory's file system,
// as etcd's NOSPACE alarm does: below the reserve the node refuses new
// writes (503 STORAGE_FULL) and keeps serving reads, so that the embedded
// broker, its journal and PostgreSQL on the same disk never run out in
// the middle of a command; once space returns above the reserve writes
// resume by themselves. Below the low mark it warns.
type diskGuard struct {
	dir          string
	reserve, low uint64
	log          *slog.Logger
	free         prometheus.Gauge
	transitions  *prometheus.CounterVec

	full atomic.Bool
	last atomic.Uint64 // free bytes at the last look
	// tripped: a write failed for want of space (noSpace), and no probe
	// has succeeded since.
	tripped atomic.Bool
}

// diskPollInterval is how often the guard looks.
const diskPollInterval = 500 * time.Millisecond

func newDiskGuard(dir string, reserve, low uint64, log *slog.Logger, reg prometheus.Registerer) *diskGuard {
	g := &diskGuard{
		dir: dir, reserve: reserve, low: low, log: log,
		free: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bursar_disk_free_bytes", Help: "Free bytes of the data directory's file system (as an unprivileged process sees them).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_disk_full_transitions_total", Help: "Times the data directory's free space crossed --disk-reserve: to=full (writes refused) or to=ok (writes resumed).",
		}, []string{"to"}),
	}
	reg.MustRegister(g.free, g.transitions)
	g.look()
	return g
}

// run looks every diskPollInterval until ctx ends.
func (g *diskGuard) run(ctx context.Context) {
	t := time.NewTicker(diskPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.look()
		}
	}
}

func (g *diskGuard) look() {
	var st unix.Statfs_t
	if err := unix.Statfs(g.dir, &st); err != nil {
		g.log.Warn("cannot read the data directory's free space", "dir", g.dir, "err", err)
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	prev := g.last.Swap(free)
	g.free.Set(float64(free))
	// A failed write tripped the guard (noSpace): the free space does not
	// tell whether a write would succeed now (a quota; free space above a
	// small reserve but below a write's size), a probe does.
	tripped := g.tripped.Load()
	if tripped && free >= g.reserve {
		if err := g.probe(); err == nil {
			g.tripped.Store(false)
			tripped = false
		} else if !kafkalog.NoSpace(err) {
			g.log.Warn("probing the data directory for space failed", "dir", g.dir, "err", err)
		}
	}
	full := free < g.reserve || tripped
	switch {
	case full && !g.full.Load():
		g.full.Store(true)
		g.transitions.WithLabelValues("full").Inc()
		g.log.Error("data directory's file system is full (no space left on device below the reserve): writes are refused with 503 STORAGE_FULL until space returns; reads go on",
			"dir", g.dir, "free_bytes", free, "reserve_bytes", g.reserve)
	case !full && g.full.Load() && !g.tripped.Load(): // not tripped again meanwhile
		g.full.Store(false)
		g.transitions.WithLabelValues("ok").Inc()
		g.log.Warn("space returned to the data directory's file system: writes resume", "dir", g.dir, "free_bytes", free)
	case !full && free < g.low && (prev == 0 || prev >= g.low):
		g.log.Warn("the data directory's file system is low on space", "dir", g.dir, "free_bytes", free, "low_bytes", g.low, "reserve_bytes", g.reserve)
	}
}

// probeBytes is the size of the probe write: larger than the batches the
// broker writes at once, so that a probe that fits says they fit.
const probeBytes = 1 << 20

// probe writes probeBytes to a file in the data directory, syncs it and
// removes it.
func (g *diskGuard) probe() error {
	f, err := os.CreateTemp(g.dir, ".space-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(make([]byte, probeBytes))
	if werr == nil {
		werr = f.Sync()
	}
	return errors.Join(werr, f.Close())
}

// noSpace is told of a write that failed for want of space, which the
// free space may not show (a quota, or less free than a write needed while
// above the reserve): writes are refused at once, and resume once a look
// finds the space above the reserve and a probe write of probeBytes
// succeeds.
func (g *diskGuard) noSpace(err error) {
	g.tripped.Store(true)
	if !g.full.Swap(true) {
		g.transitions.WithLabelValues("full").Inc()
		g.log.Error("a write to the data directory failed: no space left on device (or out of quota); writes are refused with 503 STORAGE_FULL until space returns; reads go on",
			"dir", g.dir, "err", err)
	}
}

// Full reports whether writes are refused.
func (g *diskGuard) Full() bool { return g.full.Load() }
