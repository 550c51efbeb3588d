package bench

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram ranges, in microseconds. Latencies above latencyMaxUs (longer
// than any request timeout the tool allows in practice) are recorded as
// latencyMaxUs; the exact maximum is kept beside the histogram.
const (
	latencyMinUs = 1
	latencyMaxUs = 5 * 60 * 1_000_000
	// 3 significant digits: 1µs resolution up to 2ms, 0.1% above.
	latencySigFigs = 3
	// The per-second histograms are only for p50/p99 charts; 2 digits (1%)
	// keeps each at about 20 KiB.
	seriesSigFigs = 2
	// codesMax bounds the distinct error codes kept; beyond it they are
	// counted under codeOther (a misbehaving proxy could invent many).
	codesMax  = 64
	codeOther = "OTHER"
)

// outcome is how an answer counts.
type outcome uint8

const (
	outcomeOK      outcome = iota // the exact expected status
	outcomeRefused                // a refusal the workload expects (a correct business answer)
	outcomeError                  // anything else
)

// recorder accumulates the measured window. One mutex guards it: a record
// holds it for well under a microsecond, so even a million operations per
// second keep it mostly uncontended, and one histogram per second (rather
// than per worker) keeps memory independent of the concurrency.
type recorder struct {
	mu        sync.Mutex
	all       *hdrhistogram.Histogram
	maxUs     int64
	ok        [opKindCount]int64
	refused   [opKindCount]int64
	refusals  map[string]int64
	errs      map[string]int64
	errsTotal int64
	transport string // the first transport error's text
	secs      []second
	// batches counts the batch requests answered 200 (their items are
	// counted in ok, refused and errs).
	batches int64
}

// second is one second of the measured window, by answer time.
type second struct {
	hist           *hdrhistogram.Histogram // lazily allocated
	ops, errs      int64                   // correct answers, errors
	maxUs          int64
	refusedInclOps int64 // expected refusals, included in ops
}

func newRecorder(window time.Duration) *recorder {
	return &recorder{
		all:      hdrhistogram.New(latencyMinUs, latencyMaxUs, latencySigFigs),
		refusals: map[string]int64{},
		errs:     map[string]int64{},
		secs:     make([]second, secondsIn(window)),
	}
}

// secondsIn is the number of (possibly partial) seconds in d.
func secondsIn(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func clampLatency(us int64) int64 {
	return min(max(us, latencyMinUs), latencyMaxUs)
}

// record counts one answer that arrived in second sec of the measured
// window. Correct answers (success and expected refusals) go into the
// latency histograms; errors are counted by code only, so a fast 503 never
// flatters the percentiles.
func (r *recorder) record(sec int, kind opKind, out outcome, code string, latUs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *second
	if sec >= 0 && sec < len(r.secs) {
		s = &r.secs[sec]
	}
	if out == outcomeError {
		r.errsTotal++
		bump(r.errs, code)
		if s != nil {
			s.errs++
		}
		return
	}
	if out == outcomeRefused {
		r.refused[kind]++
		bump(r.refusals, code)
	} else {
		r.ok[kind]++
	}
	v := clampLatency(latUs)
	_ = r.all.RecordValue(v) // cannot fail: v is within the histogram's range
	r.maxUs = max(r.maxUs, latUs)
	if s == nil {
		return
	}
	if s.hist == nil {
		s.hist = hdrhistogram.New(latencyMinUs, latencyMaxUs, seriesSigFigs)
	}
	_ = s.hist.RecordValue(v)
	s.ops++
	s.maxUs = max(s.maxUs, latUs)
	if out == outcomeRefused {
		s.refusedInclOps++
	}
}

// recordBatch counts one batch request answered in second sec: ok items
// succeeded, one error per code in codes. Its latency counts once, when
// the request as a whole was answered (answered); the per-second ops
// count its successful items.
func (r *recorder) recordBatch(sec int, ok int64, codes []string, answered bool, latUs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *second
	if sec >= 0 && sec < len(r.secs) {
		s = &r.secs[sec]
	}
	r.ok[opTransfer] += ok
	r.errsTotal += int64(len(codes))
	for _, c := range codes {
		bump(r.errs, c)
	}
	if s != nil {
		s.ops += ok
		s.errs += int64(len(codes))
	}
	if !answered {
		return
	}
	r.batches++
	v := clampLatency(latUs)
	_ = r.all.RecordValue(v) // cannot fail: v is within the histogram's range
	r.maxUs = max(r.maxUs, latUs)
	if s == nil {
		return
	}
	if s.hist == nil {
		s.hist = hdrhistogram.New(latencyMinUs, latencyMaxUs, seriesSigFigs)
	}
	_ = s.hist.RecordValue(v)
	s.maxUs = max(s.maxUs, latUs)
}

// noteTransport keeps the first transport error's text for the report.
func (r *recorder) noteTransport(err error) {
	r.mu.Lock()
	if r.transport == "" {
		r.transport = err.Error()
	}
	r.mu.Unlock()
}

func bump(m map[string]int64, code string) {
	if _, ok := m[code]; !ok && len(m) >= codesMax {
		code = codeOther
	}
	m[code]++
}

// Latency is a latency summary in microseconds. Percentiles come from an
// HDR histogram (3 significant digits) and are capped at the exact
// maximum.
type Latency struct {
	Count  int64   `json:"count"`
	MinUs  int64   `json:"min"`
	MeanUs float64 `json:"mean"`
	P50Us  int64   `json:"p50"`
	P90Us  int64   `json:"p90"`
	P99Us  int64   `json:"p99"`
	P999Us int64   `json:"p99_9"`
	MaxUs  int64   `json:"max"`
}

// summarize reads the percentiles of h. maxUs is the exact maximum, which
// the histogram only knows to its precision.
func summarize(h *hdrhistogram.Histogram, maxUs int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) int64 { return min(h.ValueAtQuantile(p), maxUs) }
	return Latency{
		Count:  h.TotalCount(),
		MinUs:  min(h.Min(), maxUs),
		MeanUs: math.Round(h.Mean()*10) / 10,
		P50Us:  q(50),
		P90Us:  q(90),
		P99Us:  q(99),
		P999Us: q(99.9),
		MaxUs:  maxUs,
	}
}

// Second is one point of the per-second series: the answers that arrived
// in that second of the measured window.
type Second struct {
	Second int `json:"second"`
	// Ops counts correct answers (successes and expected refusals).
	Ops       int64   `json:"ops"`
	Refusals  int64   `json:"expected_refusals,omitempty"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Us     int64   `json:"p50_us"`
	P99Us     int64   `json:"p99_us"`
	MaxUs     int64   `json:"max_us"`
}

// series renders the first n seconds of the window; the last second may
// be partial (window is the measured length), and its rate says so.
func (r *recorder) series(window time.Duration) []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(secondsIn(window), len(r.secs))
	out := make([]Second, n)
	for i := range n {
		s := &r.secs[i]
		span := min(time.Second, window-time.Duration(i)*time.Second)
		out[i] = Second{Second: i, Ops: s.ops, Refusals: s.refusedInclOps, Errors: s.errs, MaxUs: s.maxUs}
		if span > 0 {
			out[i].OpsPerSec = math.Round(float64(s.ops)/span.Seconds()*10) / 10
		}
		if s.hist != nil {
			out[i].P50Us = min(s.hist.ValueAtQuantile(50), s.maxUs)
			out[i].P99Us = min(s.hist.ValueAtQuantile(99), s.maxUs)
		}
	}
	return out
}
