package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestParseIntList(t *testing.T) {
	for _, c := range []struct {
		text string
		want []int
		err  string // in the message; "" = no error
	}{
		{"1,8,64,256", []int{1, 8, 64, 256}, ""},
		{"64, 8 ,1", []int{1, 8, 64}, ""}, // spaces; sorted
		{"7", []int{7}, ""},
		{"65536", []int{65536}, ""},
		{"", nil, "empty list"},
		{"  ", nil, "empty list"},
		{"1,,8", nil, "empty value"},
		{"1,8,", nil, "empty value"},
		{"0", nil, "outside [1, 65536]"},
		{"1,-8", nil, "outside [1, 65536]"},
		{"65537", nil, "outside [1, 65536]"},
		{"1,eight", nil, `"eight" is not a whole number`},
		{"1.5", nil, "not a whole number"},
		{"0x10", nil, "not a whole number"},
		{"8,1,8", nil, "8 appears twice"},
		{strings.Repeat("1,", SweepPointsMax) + "1", nil, "at most 32"},
	} {
		t.Run(c.text, func(t *testing.T) {
			got, err := ParseIntList("--sweep", c.text, ConcurrencyMax, SweepPointsMax)
			if c.err == "" {
				if err != nil || !slices.Equal(got, c.want) {
					t.Fatalf("got %v, %v; want %v", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "--sweep: ") {
				t.Fatalf("error %v, want one naming --sweep and containing %q", err, c.err)
			}
		})
	}
}

func TestBestPool(t *testing.T) {
	p := func(pool int, ops float64, errs int64) *SystemPoint {
		return &SystemPoint{Pool: pool, OpsPerSec: ops, ErrorsTotal: errs}
	}
	for _, c := range []struct {
		name  string
		pools []*SystemPoint
		want  int // pool; 0 = none
	}{
		{"highest ops/s", []*SystemPoint{p(8, 100, 0), p(16, 300, 0), p(32, 200, 0)}, 16},
		{"largest wins when fastest", []*SystemPoint{p(8, 100, 0), p(64, 101, 0)}, 64},
		{"tie: fewer errors", []*SystemPoint{p(8, 100, 5), p(16, 100, 1)}, 16},
		{"tie: smaller pool", []*SystemPoint{p(32, 100, 0), p(8, 100, 0), p(16, 100, 0)}, 8},
		{"nil skipped", []*SystemPoint{nil, p(16, 1, 0), nil}, 16},
		{"none", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := bestPool(c.pools)
			if (got == nil) != (c.want == 0) || (got != nil && got.Pool != c.want) {
				t.Fatalf("got %+v, want pool %d", got, c.want)
			}
		})
	}
}

func TestCPUUse(t *testing.T) {
	a := cpuSnapshot{
		server:   procSet{{1, 1}: 100},
		postgres: procSet{{10, 1}: 1000, {11, 1}: 10},
		self:     50, machine: cpuTimes{idle: 1000, total: 2000},
	}
	b := cpuSnapshot{
		server:   procSet{{1, 1}: 300},
		postgres: procSet{{10, 1}: 1100, {11, 1}: 10, {12, 9}: 100},
		self:     90, machine: cpuTimes{idle: 1100, total: 2400},
	}
	u := cpuUse(a, b, 100, 10_000, 2, []int{1})
	// 200 ticks = 2 s over 10 000 ops = 200 µs/op; PG 200 ticks; bench 40.
	if u.ServerSeconds == nil || *u.ServerSeconds != 2 || *u.ServerUsPerOp != 200 {
		t.Errorf("server %v s, %v µs/op", u.ServerSeconds, u.ServerUsPerOp)
	}
	if u.PostgresSeconds != 2 || u.PostgresUsPerOp != 200 || u.PostgresProcesses != 3 {
		t.Errorf("postgres %+v", u)
	}
	if u.BenchSeconds != 0.4 || u.BenchUsPerOp != 40 {
		t.Errorf("bench %v s, %v µs/op", u.BenchSeconds, u.BenchUsPerOp)
	}
	if u.IdleFraction != 0.25 {
		t.Errorf("idle %v", u.IdleFraction)
	}
	if u := cpuUse(a, b, 100, 0, 2, nil); u.ServerSeconds != nil || u.PostgresUsPerOp != 0 {
		t.Errorf("no server PIDs, no ops: %+v", u)
	}
}
