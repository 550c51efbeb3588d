package bench

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestBucketQuantile(t *testing.T) {
	bs := func(kv ...float64) []bucket {
		var out []bucket
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bucket{upper: kv[i], cum: uint64(kv[i+1])})
		}
		return out
	}
	for _, c := range []struct {
		name    string
		q       float64
		total   uint64
		buckets []bucket
		want    float64
	}{
		{"middle of the first bucket", 0.5, 10, bs(1, 10, 2, 10), 0.5},
		{"interpolated in the second bucket", 0.5, 10, bs(1, 2, 3, 10), 1 + 2*(5-2)/8.0},
		{"exactly at a bound", 0.5, 10, bs(1, 5, 2, 10), 1},
		{"empty buckets skipped", 0.5, 4, bs(1, 0, 2, 0, 4, 4), 3},
		{"rank in +Inf: the last finite bound", 0.5, 10, bs(1, 1, 2, 2), 2},
		{"p99", 0.99, 100, bs(0.001, 50, 0.01, 90, 0.1, 100), 0.01 + 0.09*9/10},
		{"no observations", 0.5, 0, bs(1, 0), math.NaN()},
		{"no buckets", 0.5, 10, nil, math.NaN()},
		{"q out of range", 1.5, 10, bs(1, 10), math.NaN()},
		{"non-positive first bound", 0.5, 10, bs(0, 10, 1, 10), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := bucketQuantile(c.q, c.total, c.buckets)
			if math.IsNaN(c.want) {
				if !math.IsNaN(got) {
					t.Fatalf("got %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-c.want) > 1e-12 {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// stageNode is a real Prometheus registry served over a real listener,
// standing in for a node's /metrics until the node exports the stages.
func stageNode(t *testing.T, withStages bool) (*prometheus.HistogramVec, string) {
	reg := prometheus.NewRegistry()
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "bursar_http_requests_total", Help: "requests"})
	reg.MustRegister(other)
	other.Add(3)
	var h *prometheus.HistogramVec
	if withStages {
		h = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: StageMetric, Help: "time from ingress receipt to each stage",
			Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005},
		}, []string{"stage"})
		reg.MustRegister(h)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func TestStageBreakdownFromARegistry(t *testing.T) {
	h, url := stageNode(t, true)
	ctx := context.Background()
	// Before the window: observations that must not count.
	h.WithLabelValues("decoded").Observe(0.004)
	h.WithLabelValues("answered").Observe(0.004)
	a, err := scrapeStages(ctx, http.DefaultClient, url, "")
	if err != nil || a == nil {
		t.Fatalf("scrape: %v, %v", a, err)
	}
	for range 4 {
		h.WithLabelValues("decoded").Observe(0.00005) // first bucket
	}
	for _, v := range []float64{0.0003, 0.0004, 0.0006, 0.0008} {
		h.WithLabelValues("applied").Observe(v)
	}
	h.WithLabelValues("answered").Observe(0.0015)
	h.WithLabelValues("answered").Observe(0.0015)
	h.WithLabelValues("zzz_new").Observe(0.0001)
	b, err := scrapeStages(ctx, http.DefaultClient, url, "")
	if err != nil {
		t.Fatal(err)
	}
	got := stageBreakdown(a, b)
	if !got.Present {
		t.Fatal("stages absent")
	}
	want := []Stage{
		{Stage: "decoded", Count: 4, MeanUs: 50, P50Us: 50},      // half of [0, 100µs]
		{Stage: "applied", Count: 4, MeanUs: 525, P50Us: 500},    // 2 in (200, 500], 2 in (500, 1000]
		{Stage: "answered", Count: 2, MeanUs: 1500, P50Us: 1500}, // half of (1ms, 2ms]
		{Stage: "zzz_new", Count: 1, MeanUs: 100, P50Us: 50},     // unknown stages last; 100µs is in [0, 100µs]
	}
	if len(got.Stages) != len(want) {
		t.Fatalf("stages %+v, want %+v", got.Stages, want)
	}
	for i := range want {
		if got.Stages[i] != want[i] {
			t.Errorf("stage %d: %+v, want %+v", i, got.Stages[i], want[i])
		}
	}
}

func TestStageBreakdownAbsent(t *testing.T) {
	_, url := stageNode(t, false)
	s, err := scrapeStages(context.Background(), http.DefaultClient, url, "")
	if err != nil || s != nil {
		t.Fatalf("scrape of a node without the metric: %v, %v", s, err)
	}
	if got := stageBreakdown(s, s); got.Present || len(got.Stages) != 0 {
		t.Fatalf("breakdown %+v", got)
	}
	// A target without /metrics at all (the baseline) is absent too.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if s, err := scrapeStages(context.Background(), http.DefaultClient, srv.URL, ""); err != nil || s != nil {
		t.Fatalf("scrape of a 404: %v, %v", s, err)
	}
}
