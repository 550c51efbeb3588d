package engine

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target a node runs with when
// GOGC is not set. A node's live heap is small and bounded (resident
// actors, unflushed buffers, the in-flight limit), while it allocates per
// request and per record: at Go's default of 100 the collector took about a
// fifth of a loaded node's CPU. 400 trades heap headroom (up to five times
// the live heap) for that CPU. GOGC and GOMEMLIMIT still override it, as for
// any Go program.
const DefaultGCPercent = 400

// TuneGC applies DefaultGCPercent unless GOGC is set. The binary calls it
// at start, and the engine benchmark does, to measure what a node runs.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
