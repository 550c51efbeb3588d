package bench

import (
	"math"
	"time"
)

// schedule is an open loop's timetable: operation i (from 0) is due at
// start + i/rate. Send times are computed from i alone, never from when
// the previous answer came back, so a slow or stalled server cannot slow
// the arrivals down; latency is measured from the due time, which counts
// the time an operation waited for a free worker. This is what avoids
// coordinated omission.
type schedule struct {
	start time.Time
	rate  float64 // operations per second, > 0
}

// at returns the due time of operation i.
func (s schedule) at(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) / s.rate * float64(time.Second)))
}

// dueBefore returns how many operations are due strictly before t.
func (s schedule) dueBefore(t time.Time) int64 {
	d := t.Sub(s.start)
	if d <= 0 {
		return 0
	}
	n := int64(math.Ceil(d.Seconds() * s.rate))
	// Float rounding may put the boundary operation on the wrong side;
	// settle it with at, which is the definition.
	for n > 0 && !s.at(n-1).Before(t) {
		n--
	}
	for s.at(n).Before(t) {
		n++
	}
	return n
}
