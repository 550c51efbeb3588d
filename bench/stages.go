package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Stage breakdown. The node observes, for each command, the time from
// the moment its ingress received the request to the moment the command
// reached each stage of its path, in the histogram bursar_stage_seconds
// with the stage as label. The stages are cumulative: each observation
// includes the stages before it. A sweep scrapes the node's /metrics at
// both edges of a measured window and reports, per stage, the mean and an
// approximate median of what was observed in between.

// StageMetric is the node's stage histogram.
const StageMetric = "bursar_stage_seconds"

// StageOrder is the stages along a command's path; a report lists them in
// this order, then any stage it does not know by name.
var StageOrder = []string{"decoded", "produced", "fetched", "applied", "leg_produced", "leg_fetched", "leg_applied", "durable", "answered"}

// Limits of a scrape.
const (
	// metricsBytesMax bounds what a scrape reads of /metrics; a node's
	// page is tens of kilobytes.
	metricsBytesMax = 16 << 20
	// scrapeTimeout bounds one scrape.
	scrapeTimeout = 5 * time.Second
)

// Stage is one stage of a breakdown, over one measured window.
type Stage struct {
	Stage string `json:"stage"`
	// Count is the observations in the window.
	Count uint64 `json:"count"`
	// MeanUs is Δsum / Δcount, in µs.
	MeanUs float64 `json:"mean_us"`
	// P50Us is the median estimated from the bucket deltas by linear
	// interpolation within the bucket that holds it (as PromQL's
	// histogram_quantile does), in µs: only as precise as the buckets.
	P50Us float64 `json:"p50_us"`
}

// StageBreakdown is a point's stages. Present is false when the node
// exports no bursar_stage_seconds (an older node, or /metrics not
// served); Error says why when a scrape failed.
type StageBreakdown struct {
	Present bool    `json:"present"`
	Stages  []Stage `json:"stages,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// bucket is a cumulative histogram bucket.
type bucket struct {
	upper float64 // seconds; finite
	cum   uint64
}

// stageHist is one stage's histogram at one moment.
type stageHist struct {
	count   uint64
	sum     float64
	buckets []bucket // ascending upper bounds, finite only
}

// stageScrape is the stage histograms at one moment; nil when the metric
// is absent.
type stageScrape map[string]*stageHist

// scrapeStages reads target's /metrics. A page without the metric, or a
// 404, gives a nil scrape and no error.
func scrapeStages(ctx context.Context, cl *http.Client, target, apiKey string) (stageScrape, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	// The text format: every node can serve it.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey) // metrics:read
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s/metrics: HTTP %d", target, resp.StatusCode)
	}
	format := expfmt.ResponseFormat(resp.Header)
	if format.FormatType() == expfmt.TypeUnknown {
		format = expfmt.NewFormat(expfmt.TypeTextPlain)
	}
	s, err := decodeStages(io.LimitReader(resp.Body, metricsBytesMax), format)
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", target, err)
	}
	return s, nil
}

// decodeStages decodes a metrics page and keeps bursar_stage_seconds.
// Series of one stage that differ in other labels are added up.
func decodeStages(r io.Reader, format expfmt.Format) (stageScrape, error) {
	dec := expfmt.NewDecoder(r, format)
	var s stageScrape
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		if mf.GetName() != StageMetric || mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		if s == nil {
			s = stageScrape{}
		}
		for _, m := range mf.GetMetric() {
			name := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					name = l.GetValue()
				}
			}
			h := m.GetHistogram()
			if name == "" || h == nil {
				continue
			}
			s.add(name, h)
		}
	}
}

func (s stageScrape) add(stage string, h *dto.Histogram) {
	sh := s[stage]
	if sh == nil {
		sh = &stageHist{}
		s[stage] = sh
	}
	sh.count += h.GetSampleCount()
	sh.sum += h.GetSampleSum()
	for _, b := range h.GetBucket() {
		ub := b.GetUpperBound()
		if math.IsInf(ub, 0) || math.IsNaN(ub) {
			continue // the +Inf bucket is the count
		}
		i, found := slices.BinarySearchFunc(sh.buckets, ub, func(b bucket, v float64) int {
			switch {
			case b.upper < v:
				return -1
			case b.upper > v:
				return 1
			}
			return 0
		})
		if found {
			sh.buckets[i].cum += b.GetCumulativeCount()
		} else {
			sh.buckets = slices.Insert(sh.buckets, i, bucket{upper: ub, cum: b.GetCumulativeCount()})
		}
	}
}

// stageBreakdown is what was observed between two scrapes of one node.
// A stage with no observation in between is left out. A nil scrape on
// either side means the metric is absent.
func stageBreakdown(a, b stageScrape) *StageBreakdown {
	if a == nil || b == nil {
		return &StageBreakdown{}
	}
	out := &StageBreakdown{Present: true}
	for name, hb := range b {
		ha := a[name]
		if ha == nil {
			ha = &stageHist{}
		}
		// A counter that went down is a restarted node: the delta means
		// nothing, so the stage is left out.
		if hb.count <= ha.count {
			continue
		}
		n := hb.count - ha.count
		deltas := make([]bucket, 0, len(hb.buckets))
		for _, bb := range hb.buckets {
			var prev uint64
			for _, ba := range ha.buckets {
				if ba.upper == bb.upper {
					prev = ba.cum
				}
			}
			deltas = append(deltas, bucket{upper: bb.upper, cum: bb.cum - min(prev, bb.cum)})
		}
		p50 := bucketQuantile(0.5, n, deltas)
		if math.IsNaN(p50) { // no buckets: JSON has no NaN
			p50 = 0
		}
		out.Stages = append(out.Stages, Stage{
			Stage: name, Count: n,
			MeanUs: round1((hb.sum - ha.sum) / float64(n) * 1e6),
			P50Us:  round1(p50 * 1e6),
		})
	}
	rank := func(s string) int {
		if i := slices.Index(StageOrder, s); i >= 0 {
			return i
		}
		return len(StageOrder)
	}
	sort.Slice(out.Stages, func(i, j int) bool {
		ri, rj := rank(out.Stages[i].Stage), rank(out.Stages[j].Stage)
		if ri != rj {
			return ri < rj
		}
		return out.Stages[i].Stage < out.Stages[j].Stage
	})
	return out
}

// bucketQuantile estimates quantile q of total observations from
// cumulative buckets (finite upper bounds, ascending), as PromQL's
// histogram_quantile: find the bucket that holds rank q·total and
// interpolate linearly between its lower and upper bound, the first
// bucket's lower bound being 0. A rank beyond the last finite bucket (in
// +Inf) gives the last finite bound. NaN when there is nothing to
// estimate.
func bucketQuantile(q float64, total uint64, buckets []bucket) float64 {
	if total == 0 || len(buckets) == 0 || q < 0 || q > 1 {
		return math.NaN()
	}
	rank := q * float64(total)
	var lower float64
	var below uint64
	for i, b := range buckets {
		if float64(b.cum) >= rank && b.cum > below {
			if i == 0 && b.upper <= 0 {
				return b.upper
			}
			return lower + (b.upper-lower)*(rank-float64(below))/float64(b.cum-below)
		}
		lower, below = b.upper, b.cum
	}
	return buckets[len(buckets)-1].upper
}
