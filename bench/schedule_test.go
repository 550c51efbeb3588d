package bench

import (
	"testing"
	"time"
)

func TestScheduleAt(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		rate float64
		i    int64
		want time.Duration
	}{
		{1000, 0, 0},
		{1000, 1, time.Millisecond},
		{1000, 2500, 2500 * time.Millisecond},
		{3, 1, 333_333_333},
		{3, 3, time.Second},
		{3, 30, 10 * time.Second},
		{0.5, 1, 2 * time.Second},
		{1_000_000, 1, time.Microsecond},
		{1_000_000, 3_600_000_000, time.Hour},
		{7, 7_000_000, 1_000_000 * time.Second},
	} {
		s := schedule{start: start, rate: c.rate}
		if got := s.at(c.i).Sub(start); got != c.want {
			t.Errorf("rate %v: at(%d) = start+%v, want start+%v", c.rate, c.i, got, c.want)
		}
	}
}

// The due times depend on the index alone: they are evenly spaced and
// never drift, whatever happened to earlier operations.
func TestScheduleEvenSpacing(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	s := schedule{start: start, rate: 12_345}
	interval := time.Second.Seconds() / 12_345
	for i := int64(0); i < 1_000_000; i += 997 {
		want := time.Duration(float64(i) * interval * 1e9)
		got := s.at(i).Sub(start)
		if d := got - want; d < -time.Microsecond || d > time.Microsecond {
			t.Fatalf("at(%d) = %v, want %v", i, got, want)
		}
		if i > 0 && !s.at(i).After(s.at(i-1)) {
			t.Fatalf("at(%d) is not after at(%d)", i, i-1)
		}
	}
}

func TestScheduleDueBefore(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		rate  float64
		after time.Duration
		want  int64
	}{
		{1000, -time.Second, 0},
		{1000, 0, 0},
		{1000, 1, 1},                           // op 0 is due at start
		{1000, time.Millisecond, 1},            // op 1 is due exactly then: not before
		{1000, time.Millisecond + 1, 2},        // now it is
		{1000, time.Second, 1000},              // ops 0..999
		{3, time.Second, 3},                    // 0, 1/3, 2/3
		{3, 10 * time.Second, 30},              //
		{0.5, 3 * time.Second, 2},              // 0s, 2s
		{100_000, 12 * time.Second, 1_200_000}, //
	} {
		s := schedule{start: start, rate: c.rate}
		got := s.dueBefore(start.Add(c.after))
		if got != c.want {
			t.Errorf("rate %v: dueBefore(start+%v) = %d, want %d", c.rate, c.after, got, c.want)
		}
		// The definition: every op below the count is due before t, the
		// one at the count is not.
		t0 := start.Add(c.after)
		if got > 0 && !s.at(got-1).Before(t0) || s.at(got).Before(t0) {
			t.Errorf("rate %v: dueBefore(start+%v) = %d breaks its definition", c.rate, c.after, got)
		}
	}
}
