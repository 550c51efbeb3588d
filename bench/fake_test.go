package bench

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// fakeNode is a small fasthttp server with the shapes of Bursar's API
// that the bench uses, the batch endpoint included, and a /metrics with
// bursar_stage_seconds. It checks what it is sent and records it.
type fakeNode struct {
	t   *testing.T
	URL string

	mu       sync.Mutex
	keys     map[string]bool
	problems []string
	items    int
	// refuse, when set, decides an item's refusal code ("" = 201).
	refuse func(item int) string
	stages *prometheus.HistogramVec
}

func newFakeNode(t *testing.T) *fakeNode {
	f := &fakeNode{t: t, keys: map[string]bool{}}
	reg := prometheus.NewRegistry()
	f.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: StageMetric, Help: "stages", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 12),
	}, []string{"stage"})
	reg.MustRegister(f.stages)
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/metrics" {
			metrics(ctx)
			return
		}
		f.serve(ctx)
	}, MaxRequestBodySize: 1 << 20}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	t.Cleanup(func() { _ = srv.Shutdown() })
	f.URL = "http://" + ln.Addr().String()
	return f
}

func (f *fakeNode) problem(format string) {
	f.mu.Lock()
	if len(f.problems) < 10 {
		f.problems = append(f.problems, format)
	}
	f.mu.Unlock()
}

func (f *fakeNode) serve(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	switch string(ctx.Path()) {
	case pathReadyz:
		ctx.SetBodyString(`{"ready":true}`)
	case pathOpen:
		var req struct {
			AccountID string `json:"account_id"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
			f.problem("open: " + err.Error())
		}
		ctx.SetStatusCode(201)
		ctx.SetBodyString(`{"account_id":"` + req.AccountID + `"}`)
	case pathCredit, pathTransfer:
		f.stages.WithLabelValues("decoded").Observe(0.0001)
		f.stages.WithLabelValues("answered").Observe(0.001)
		ctx.SetStatusCode(201)
		ctx.SetBodyString(`{"status":"completed"}`)
	case pathBatch:
		f.batch(ctx)
	default:
		ctx.SetStatusCode(404)
		ctx.SetBodyString(`{"error":{"code":"ROUTE_NOT_FOUND","message":"no"}}`)
	}
}

// batch answers a batch: 200 with one result per item.
func (f *fakeNode) batch(ctx *fasthttp.RequestCtx) {
	var req struct {
		Items []map[string]string `json:"items"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		f.problem("batch: " + err.Error())
		ctx.SetStatusCode(400)
		return
	}
	var b strings.Builder
	b.WriteString(`{"results":[`)
	f.mu.Lock()
	for i, it := range req.Items {
		key := it["idempotency_key"]
		switch {
		case it["type"] != "transfer", it["amount"] != "0.01", it["currency"] != "USD":
			f.problems = append(f.problems, "item shape")
		case it["source_account_id"] == "" || it["source_account_id"] == it["destination_account_id"]:
			f.problems = append(f.problems, "item accounts")
		case key == "" || f.keys[key]:
			f.problems = append(f.problems, "item key missing or reused: "+key)
		}
		f.keys[key] = true
		if i > 0 {
			b.WriteByte(',')
		}
		code := ""
		if f.refuse != nil {
			code = f.refuse(f.items)
		}
		f.items++
		idx := `{"index":` + strconv.Itoa(i) + `,"status":`
		if code == "" {
			b.WriteString(idx + `201,"transaction_id":"t"}`)
		} else {
			b.WriteString(idx + `422,"error":{"code":"` + code + `","message":"m"}}`)
		}
	}
	f.mu.Unlock()
	b.WriteString(`]}`)
	ctx.SetStatusCode(200)
	ctx.SetBodyString(b.String())
}
