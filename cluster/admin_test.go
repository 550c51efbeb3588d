package cluster

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"
)

// recordingMigrations records what the admin API asked for.
type recordingMigrations struct {
	scale, moveSlot []int64
	err             error
}

func (m *recordingMigrations) Scale(to int32) error {
	m.scale = append(m.scale, int64(to))
	return m.err
}

func (m *recordingMigrations) MoveSlot(slot int, to int32) error {
	m.moveSlot = append(m.moveSlot, int64(slot), int64(to))
	return m.err
}

func (m *recordingMigrations) Status() any { return map[string]bool{"running": true} }

type conflictErr struct{}

func (conflictErr) Error() string  { return "busy" }
func (conflictErr) Conflict() bool { return true }

func TestAdminMigrationRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
		err              error
		status           int
		code             string
		scale, moveSlot  []int64
	}{
		{name: "scale", path: "/internal/partitions/scale", body: `{"to": 16}`, status: 202, scale: []int64{16}},
		{name: "move-slot", path: "/internal/partitions/move-slot", body: `{"slot": 7, "to": 3}`, status: 202, moveSlot: []int64{7, 3}},
		{name: "empty body", path: "/internal/partitions/scale", body: ``, status: 400, code: "VALIDATION_ERROR"},
		{name: "no to", path: "/internal/partitions/scale", body: `{}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "to as a string", path: "/internal/partitions/scale", body: `{"to": "16"}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "to beyond int32", path: "/internal/partitions/scale", body: `{"to": 4294967296}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "unknown field", path: "/internal/partitions/scale", body: `{"to": 16, "force": true}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "trailing data", path: "/internal/partitions/scale", body: `{"to": 16} {"to": 32}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "slot on scale", path: "/internal/partitions/scale", body: `{"to": 16, "slot": 1}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "move-slot without slot", path: "/internal/partitions/move-slot", body: `{"to": 3}`, status: 400, code: "VALIDATION_ERROR"},
		{name: "refused", path: "/internal/partitions/scale", body: `{"to": 4}`, err: errors.New("shrink"), status: 400, code: "MIGRATION_REFUSED", scale: []int64{4}},
		{name: "busy", path: "/internal/partitions/scale", body: `{"to": 32}`, err: conflictErr{}, status: 409, code: "MIGRATION_REFUSED", scale: []int64{32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mig := &recordingMigrations{err: tc.err}
			h := AdminHandler(nil, func() bool { return true }, nil, mig)
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI(tc.path)
			ctx.Request.SetBodyString(tc.body)
			h(&ctx)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if tc.code != "" {
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil || body.Error.Code != tc.code {
					t.Fatalf("body %s, want code %s", ctx.Response.Body(), tc.code)
				}
			}
			if len(mig.scale) != len(tc.scale) || len(mig.moveSlot) != len(tc.moveSlot) {
				t.Fatalf("asked scale %v move-slot %v, want %v %v", mig.scale, mig.moveSlot, tc.scale, tc.moveSlot)
			}
			for i := range tc.scale {
				if mig.scale[i] != tc.scale[i] {
					t.Fatalf("scale %v, want %v", mig.scale, tc.scale)
				}
			}
			for i := range tc.moveSlot {
				if mig.moveSlot[i] != tc.moveSlot[i] {
					t.Fatalf("move-slot %v, want %v", mig.moveSlot, tc.moveSlot)
				}
			}
		})
	}
}
