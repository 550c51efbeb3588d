package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// CPU accounting from /proc (Linux). A sweep reads, at both edges of each
// measured window, the CPU time of the server under test (the node, or
// the baseline's child process), of every PostgreSQL process, of the
// bench itself, and the machine's idle time, and reports the deltas.

// Limits of the /proc reads.
const (
	// procStatBytesMax bounds one /proc/PID/stat read: the line is about
	// 300 bytes; a comm of 16 bytes cannot make it much longer.
	procStatBytesMax = 4 << 10
	// cmdlineBytesMax bounds one /proc/PID/cmdline read; only argv[0] and
	// argv[1] are looked at.
	cmdlineBytesMax = 4 << 10
	// procPIDsMax bounds the processes one scan of /proc looks at.
	procPIDsMax = 1 << 16
)

// atClkTck is AT_CLKTCK, the auxiliary-vector entry the kernel sets to
// USER_HZ, the unit of the times in /proc/PID/stat and /proc/stat. It is
// what glibc's sysconf(_SC_CLK_TCK) (getconf CLK_TCK) returns. 17 in
// linux/auxvec.h on every architecture; x/sys/unix has no name for it.
const atClkTck = 17

// clockTicksAssumed is USER_HZ when the auxiliary vector cannot be read:
// Linux has exported 100 on every architecture it supports today
// (USER_HZ is fixed for the ABI, whatever the kernel's own HZ), so this
// is a safe assumption, and the report says it is one.
const clockTicksAssumed = 100

// ClockTicks returns USER_HZ and where the value came from: "AT_CLKTCK"
// when read from the auxiliary vector (golang.org/x/sys/unix.Auxv), or
// "assumed" when it could not be read.
func ClockTicks() (int64, string) {
	if v, err := unix.Auxv(); err == nil {
		for _, kv := range v {
			if kv[0] == atClkTck && kv[1] > 0 {
				return int64(kv[1]), "AT_CLKTCK"
			}
		}
	}
	return clockTicksAssumed, "assumed"
}

// procTimes is what one /proc/PID/stat says about a process.
type procTimes struct {
	// ticks is utime + stime, in clock ticks: CPU spent by every thread
	// of the process (not by its waited-for children).
	ticks int64
	// start is the process's start time in ticks after boot: with the
	// PID it names a process, since PIDs are reused.
	start int64
}

// parseProcPIDStat parses a /proc/PID/stat line. The second field, comm,
// is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')': after it come state (field 3),
// …, utime (14), stime (15), …, starttime (22), per proc(5).
func parseProcPIDStat(line []byte) (procTimes, error) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 {
		return procTimes{}, errors.New("no ')' closing comm")
	}
	f := bytes.Fields(line[i+1:])
	// f[0] is field 3, so field n is f[n-3].
	const utime, stime, starttime = 14 - 3, 15 - 3, 22 - 3
	if len(f) <= starttime {
		return procTimes{}, fmt.Errorf("%d fields after comm, want at least %d", len(f), starttime+1)
	}
	var v [3]int64
	for j, k := range []int{utime, stime, starttime} {
		n, err := strconv.ParseInt(string(f[k]), 10, 64)
		if err != nil || n < 0 {
			return procTimes{}, fmt.Errorf("field %d: %q is not a tick count", k+3, f[k])
		}
		v[j] = n
	}
	return procTimes{ticks: v[0] + v[1], start: v[2]}, nil
}

// cpuTimes is the machine's CPU time from /proc/stat, in ticks summed
// over all CPUs.
type cpuTimes struct {
	idle  int64 // idle + iowait
	total int64 // user + nice + system + idle + iowait + irq + softirq + steal
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat. guest and
// guest_nice are left out of the total because the kernel already counts
// them in user and nice. iowait is idle time (a CPU waiting for I/O with
// nothing else to run), so it counts as idle.
func parseProcStat(data []byte) (cpuTimes, error) {
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "cpu" {
			continue
		}
		f = f[1:]
		if len(f) < 4 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 4", len(f))
		}
		var t cpuTimes
		for j := range min(len(f), 8) {
			n, err := strconv.ParseInt(string(f[j]), 10, 64)
			if err != nil || n < 0 {
				return cpuTimes{}, fmt.Errorf("/proc/stat: cpu field %d: %q is not a tick count", j+1, f[j])
			}
			t.total += n
			if j == 3 || j == 4 { // idle, iowait
				t.idle += n
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no aggregate cpu line")
}

// idleFraction is the idle share of the machine's CPU time between a and
// b; 0 when no time passed.
func idleFraction(a, b cpuTimes) float64 {
	if d := b.total - a.total; d > 0 {
		return float64(b.idle-a.idle) / float64(d)
	}
	return 0
}

// procKey names a process: its PID and start time.
type procKey struct {
	pid   int
	start int64
}

// procSet is the CPU ticks of a set of processes at one moment.
type procSet map[procKey]int64

// ticksDelta is the CPU the processes spent from a to b: the delta of
// each process present in both, plus the whole CPU of each that appears
// only in b (it started during the interval; almost all of its CPU is
// inside it). A process that exited between the reads is lost: nothing
// in /proc holds its CPU any more.
func ticksDelta(a, b procSet) int64 {
	var d int64
	for k, t := range b {
		if t0, ok := a[k]; ok {
			d += max(0, t-t0)
		} else {
			d += t
		}
	}
	return d
}

// procFS reads /proc under root ("/proc" but in tests).
type procFS struct{ root string }

// readFileMax reads at most limit bytes of a file.
func readFileMax(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, limit)
	n, err := f.Read(b)
	if n == 0 && err != nil {
		return nil, err
	}
	return b[:n], nil
}

// times reads /proc/PID/stat; pid is "self" or a number.
func (p procFS) times(pid string) (procTimes, error) {
	b, err := readFileMax(filepath.Join(p.root, pid, "stat"), procStatBytesMax)
	if err != nil {
		return procTimes{}, err
	}
	t, err := parseProcPIDStat(b)
	if err != nil {
		return procTimes{}, fmt.Errorf("%s/%s/stat: %w", p.root, pid, err)
	}
	return t, nil
}

// machine reads /proc/stat.
func (p procFS) machine() (cpuTimes, error) {
	b, err := os.ReadFile(filepath.Join(p.root, "stat"))
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(b)
}

// pids lists the numeric entries of /proc, at most procPIDsMax.
func (p procFS) pids() ([]int, error) {
	d, err := os.Open(p.root)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(procPIDsMax)
	if err != nil && len(names) == 0 {
		return nil, err
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// setOf reads the given processes; one that is gone is left out.
func (p procFS) setOf(pids []int) procSet {
	s := make(procSet, len(pids))
	for _, pid := range pids {
		if t, err := p.times(strconv.Itoa(pid)); err == nil {
			s[procKey{pid, t.start}] = t.ticks
		}
	}
	return s
}

// postgres reads every process whose comm (/proc/PID/comm) is postgres:
// the postmaster, its backends and its background workers, whoever they
// serve.
func (p procFS) postgres() procSet {
	pids, _ := p.pids()
	var pg []int
	for _, pid := range pids {
		b, err := readFileMax(filepath.Join(p.root, strconv.Itoa(pid), "comm"), 64)
		if err == nil && string(bytes.TrimSpace(b)) == "postgres" {
			pg = append(pg, pid)
		}
	}
	return p.setOf(pg)
}

// servePIDs lists the processes running `bursar serve`: argv[1] is
// "serve" and argv[0]'s base name is bursar or ends in bursar (a binary
// built as /tmp/wtb-bursar counts, `go run` does not).
func (p procFS) servePIDs() []int {
	pids, _ := p.pids()
	var out []int
	for _, pid := range pids {
		b, err := readFileMax(filepath.Join(p.root, strconv.Itoa(pid), "cmdline"), cmdlineBytesMax)
		if err != nil {
			continue
		}
		if isBursarServe(b) {
			out = append(out, pid)
		}
	}
	return out
}

// isBursarServe reports whether a NUL-separated command line is a
// `bursar serve`.
func isBursarServe(cmdline []byte) bool {
	argv := bytes.Split(cmdline, []byte{0})
	if len(argv) < 2 {
		return false
	}
	base := filepath.Base(string(argv[0]))
	return len(base) >= len("bursar") && base[len(base)-len("bursar"):] == "bursar" && string(argv[1]) == "serve"
}

// FindServePIDs lists the local processes running `bursar serve` (see
// --node-pid 0).
func FindServePIDs() []int { return procFS{root: "/proc"}.servePIDs() }

// cpuSnapshot is one edge of a measured window.
type cpuSnapshot struct {
	server   procSet
	postgres procSet
	self     int64
	machine  cpuTimes
	err      error // the first read that failed
}

// snapshot reads the server's processes, PostgreSQL, the bench and the
// machine.
func (p procFS) snapshot(serverPIDs []int) cpuSnapshot {
	s := cpuSnapshot{server: p.setOf(serverPIDs), postgres: p.postgres()}
	self, err := p.times("self")
	if err != nil {
		s.err = err
	}
	s.self = self.ticks
	if s.machine, err = p.machine(); err != nil && s.err == nil {
		s.err = err
	}
	return s
}
