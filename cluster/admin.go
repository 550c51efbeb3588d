package cluster

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// NodeStatus is what GET /internal/node answers: this node's view of
// itself.
type NodeStatus struct {
	Meta
	Ready      bool `json:"ready"`
	Partitions any  `json:"partitions"`
}

// AdminHandler serves the operator endpoints under /internal/ that
// `bursar cluster status` and `bursar node drain` use:
//
//	GET  /internal/members  live members as this node sees them
//	GET  /internal/node     this node: metadata, readiness, owned partitions
//	POST /internal/drain    stop owning partitions (they move to the others)
//
// stats returns the engine's per-partition view (nil without an engine).
func AdminHandler(m *Membership, ready func() bool, stats func() any) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		method := string(ctx.Method())
		switch path := string(ctx.Path()); {
		case path == "/internal/members" && method == "GET":
			writeJSON(ctx, 200, m.Members())
		case path == "/internal/node" && method == "GET":
			st := NodeStatus{Meta: m.Self(), Ready: ready()}
			if stats != nil {
				st.Partitions = stats()
			}
			writeJSON(ctx, 200, st)
		case path == "/internal/drain" && method == "POST":
			if err := m.SetDraining(true); err != nil {
				writeJSON(ctx, 500, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(ctx, 202, map[string]any{"draining": true, "node": m.Self().ID})
		default:
			writeJSON(ctx, 404, map[string]any{"error": map[string]string{"code": "NOT_FOUND", "message": "no such internal route"}})
		}
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":"encoding"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}
