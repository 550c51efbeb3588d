package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// stat builds a /proc/PID/stat line with the given comm, utime, stime and
// starttime; the other fields are plausible constants.
func stat(pid int, comm string, utime, stime, start int64) string {
	f := make([]string, 0, 52)
	f = append(f, strconv.Itoa(pid), "("+comm+")", "S")
	for n := 4; n <= 52; n++ {
		switch n {
		case 14:
			f = append(f, strconv.FormatInt(utime, 10))
		case 15:
			f = append(f, strconv.FormatInt(stime, 10))
		case 22:
			f = append(f, strconv.FormatInt(start, 10))
		default:
			f = append(f, strconv.Itoa(n*10)) // not a field we read
		}
	}
	return strings.Join(f, " ") + "\n"
}

func TestParseProcPIDStat(t *testing.T) {
	for _, c := range []struct {
		name string
		line string
		want procTimes
		err  bool
	}{
		{"plain", stat(42, "postgres", 120, 30, 9000), procTimes{ticks: 150, start: 9000}, false},
		{"comm with spaces", stat(7, "tmux: server", 5, 6, 1), procTimes{ticks: 11, start: 1}, false},
		{"comm with parentheses", stat(8, "a) (b) c", 1, 2, 3), procTimes{ticks: 3, start: 3}, false},
		{"comm that looks like fields", stat(9, ") S 1 2 3 4 5 6 7 8 9 10 11 12", 100, 200, 300), procTimes{ticks: 300, start: 300}, false},
		{"real line", "1 (systemd) S 0 1 1 0 -1 4194560 41283 3377466 108 2085 93 202 4734 2399 20 0 1 0 27 172355584 3071 18446744073709551615 1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			procTimes{ticks: 295, start: 27}, false},
		{"no parenthesis", "1 systemd S 0 1", procTimes{}, true},
		{"truncated", "1 (x) S 0 1 1 0 -1 4194560 41283 3377466 108 2085 93 202", procTimes{}, true},
		{"not a number", strings.Replace(stat(1, "x", 1, 2, 3), " 1 2 ", " one 2 ", 1), procTimes{}, true},
		{"empty", "", procTimes{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseProcPIDStat([]byte(c.line))
			if (err != nil) != c.err {
				t.Fatalf("err %v, want error %v", err, c.err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		want cpuTimes
		err  bool
	}{
		{"modern", "cpu  100 2 30 400 50 6 7 8 90 10\ncpu0 50 1 15 200 25 3 3 4 45 5\nintr 1 2\n",
			cpuTimes{idle: 450, total: 603}, false}, // guest, guest_nice left out
		{"old kernel, four fields", "cpu 10 0 10 80\n", cpuTimes{idle: 80, total: 100}, false},
		{"cpu line not first", "intr 5\ncpu 1 1 1 1 1 1 1 1\n", cpuTimes{idle: 2, total: 8}, false},
		{"only per-cpu lines", "cpu0 1 1 1 1\ncpu1 1 1 1 1\n", cpuTimes{}, true},
		{"short", "cpu 1 2 3\n", cpuTimes{}, true},
		{"negative", "cpu 1 2 -3 4\n", cpuTimes{}, true},
		{"garbage", "cpu a b c d\n", cpuTimes{}, true},
		{"empty", "", cpuTimes{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(c.data))
			if (err != nil) != c.err {
				t.Fatalf("err %v, want error %v", err, c.err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestIdleFraction(t *testing.T) {
	for _, c := range []struct {
		a, b cpuTimes
		want float64
	}{
		{cpuTimes{100, 200}, cpuTimes{150, 300}, 0.5},
		{cpuTimes{100, 200}, cpuTimes{100, 400}, 0},
		{cpuTimes{0, 0}, cpuTimes{40, 40}, 1},
		{cpuTimes{5, 5}, cpuTimes{5, 5}, 0}, // no time passed
	} {
		if got := idleFraction(c.a, c.b); got != c.want {
			t.Errorf("idleFraction(%+v, %+v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestTicksDelta(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b procSet
		want int64
	}{
		{"present at both", procSet{{1, 10}: 100, {2, 10}: 5}, procSet{{1, 10}: 130, {2, 10}: 5}, 30},
		{"appears during the window: all of it", procSet{{1, 10}: 100}, procSet{{1, 10}: 110, {3, 500}: 7}, 17},
		{"exits during the window: lost", procSet{{1, 10}: 100, {2, 10}: 50}, procSet{{1, 10}: 101}, 1},
		{"PID reused: a new process", procSet{{4, 10}: 900}, procSet{{4, 600}: 20}, 20},
		{"empty", procSet{}, procSet{}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ticksDelta(c.a, c.b); got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
		})
	}
}

func TestIsBursarServe(t *testing.T) {
	for _, c := range []struct {
		cmdline string
		want    bool
	}{
		{"bursar\x00serve\x00--http-addr\x00:8080\x00", true},
		{"/usr/local/bin/bursar\x00serve\x00", true},
		{"/tmp/wtb-bursar\x00serve\x00--partitions\x008\x00", true},
		{"/tmp/wtb-bursar\x00bench\x00--sweep\x001\x00", false},
		{"/tmp/wtb-bursar\x00bench\x00baseline\x00serve\x00", false},
		{"/usr/bin/bash\x00-c\x00bursar serve\x00", false},
		{"bursar\x00", false},
		{"bursar-old\x00serve\x00", false},
		{"", false},
	} {
		if got := isBursarServe([]byte(c.cmdline)); got != c.want {
			t.Errorf("isBursarServe(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}

// fakeProc writes a /proc of processes pid → (comm, cmdline, utime).
type fakeProc struct {
	t    *testing.T
	root string
}

func (f fakeProc) proc(pid int, comm, cmdline string, utime int64) {
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	must(f.t, os.MkdirAll(dir, 0o755))
	must(f.t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat(pid, comm, utime, 0, int64(pid))), 0o644))
	must(f.t, os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644))
	must(f.t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644))
}

func (f fakeProc) gone(pid int) { must(f.t, os.RemoveAll(filepath.Join(f.root, strconv.Itoa(pid)))) }

func (f fakeProc) machine(idle, total int64) {
	line := "cpu " + strconv.FormatInt(total-idle, 10) + " 0 0 " + strconv.FormatInt(idle, 10) + " 0 0 0 0 0 0\n"
	must(f.t, os.WriteFile(filepath.Join(f.root, "stat"), []byte(line), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A window over a fake /proc: PostgreSQL processes that stay, appear
// and exit; the server found by its command line; the machine's idle.
func TestSnapshotWindow(t *testing.T) {
	f := fakeProc{t: t, root: t.TempDir()}
	f.proc(10, "postgres", "postgres\x00-D\x00/data\x00", 1000) // postmaster
	f.proc(11, "postgres", "postgres: walwriter\x00", 50)
	f.proc(12, "postgres", "postgres: bursar db\x00", 70) // will exit
	f.proc(20, "wtb-bursar", "/tmp/wtb-bursar\x00serve\x00", 400)
	f.proc(30, "bash", "bash\x00", 5)
	must(t, os.MkdirAll(filepath.Join(f.root, "self"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.root, "self", "stat"), []byte(stat(99, "bursar", 3, 0, 99)), 0o644))
	f.machine(1000, 2000)
	p := procFS{root: f.root}
	if got := p.servePIDs(); !slices.Equal(got, []int{20}) {
		t.Fatalf("servePIDs = %v, want [20]", got)
	}

	a := p.snapshot([]int{20})
	if a.err != nil {
		t.Fatal(a.err)
	}
	f.proc(10, "postgres", "postgres\x00-D\x00/data\x00", 1010)
	f.proc(11, "postgres", "postgres: walwriter\x00", 52)
	f.gone(12)
	f.proc(13, "postgres", "postgres: new backend\x00", 8)
	f.proc(20, "wtb-bursar", "/tmp/wtb-bursar\x00serve\x00", 460)
	f.proc(30, "bash", "bash\x00", 500)
	must(t, os.WriteFile(filepath.Join(f.root, "self", "stat"), []byte(stat(99, "bursar", 9, 0, 99)), 0o644))
	f.machine(1150, 2200)
	b := p.snapshot([]int{20})
	if b.err != nil {
		t.Fatal(b.err)
	}

	if got := ticksDelta(a.postgres, b.postgres); got != 10+2+8 {
		t.Errorf("postgres ticks %d, want 20 (bash never counts, the exited backend is lost)", got)
	}
	if got := ticksDelta(a.server, b.server); got != 60 {
		t.Errorf("server ticks %d, want 60", got)
	}
	if got := b.self - a.self; got != 6 {
		t.Errorf("self ticks %d, want 6", got)
	}
	if got := idleFraction(a.machine, b.machine); got != 0.75 {
		t.Errorf("idle %v, want 0.75", got)
	}
}

func TestClockTicks(t *testing.T) {
	hz, source := ClockTicks()
	if runtime.GOOS == "linux" && source != "AT_CLKTCK" {
		t.Fatalf("source %q: the auxiliary vector should have AT_CLKTCK on Linux", source)
	}
	if hz <= 0 {
		t.Fatalf("clock ticks %d", hz)
	}
}

// The real /proc parses: this process, the machine.
func TestProcSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux")
	}
	p := procFS{root: "/proc"}
	s := p.snapshot([]int{os.Getpid()})
	if s.err != nil {
		t.Fatal(s.err)
	}
	if len(s.server) != 1 || s.machine.total <= 0 {
		t.Fatalf("snapshot %+v", s)
	}
}
