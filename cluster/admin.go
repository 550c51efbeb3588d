package cluster

import (
	"bytes"
	"encoding/json"
	"errors"

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
//	GET  /internal/partitions/migration     the slot migration's progress
//	POST /internal/partitions/scale         {"to": N}: grow to N partitions
//	POST /internal/partitions/move-slot     {"slot": S, "to": P}: move one slot
//
// stats returns the engine's per-partition view (nil without an engine);
// mig runs slot migrations (nil: the partition routes answer 404).
func AdminHandler(m *Membership, ready func() bool, stats func() any, mig Migrations) fasthttp.RequestHandler {
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
		case mig != nil && path == "/internal/partitions/migration" && method == "GET":
			writeJSON(ctx, 200, mig.Status())
		case mig != nil && (path == "/internal/partitions/scale" || path == "/internal/partitions/move-slot") && method == "POST":
			var req struct {
				To   *int32 `json:"to"`
				Slot *int   `json:"slot"`
			}
			dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
			dec.DisallowUnknownFields()
			err := dec.Decode(&req)
			if err == nil && dec.More() {
				err = errors.New("trailing data")
			}
			if err != nil || req.To == nil || (path == "/internal/partitions/move-slot") != (req.Slot != nil) {
				writeJSON(ctx, 400, map[string]any{"error": map[string]string{"code": "VALIDATION_ERROR", "message": `the body must be {"to": N} (scale) or {"slot": S, "to": P} (move-slot)`}})
				return
			}
			if req.Slot != nil {
				err = mig.MoveSlot(*req.Slot, *req.To)
			} else {
				err = mig.Scale(*req.To)
			}
			if err != nil {
				var ce interface{ Conflict() bool }
				status := 400
				if errors.As(err, &ce) && ce.Conflict() {
					status = 409
				}
				writeJSON(ctx, status, map[string]any{"error": map[string]string{"code": "MIGRATION_REFUSED", "message": err.Error()}})
				return
			}
			writeJSON(ctx, 202, mig.Status())
		default:
			writeJSON(ctx, 404, map[string]any{"error": map[string]string{"code": "NOT_FOUND", "message": "no such internal route"}})
		}
	}
}

// Migrations starts slot migrations in the background and reports on
// them. Scale and MoveSlot return once the request is checked and the
// migration started.
type Migrations interface {
	Scale(to int32) error
	MoveSlot(slot int, to int32) error
	Status() any
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
