package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stage names one step on the path of a command, for
// bursar_stage_seconds{stage}. Each observation is the time from the
// command's timestamp (minted by the ingress right after decoding the
// request; for a transfer's credit leg, the transfer's) to the moment the
// command reached that stage, so the stages are cumulative and the time of
// one step is the difference of two neighbours.
type Stage int

// The stages, in path order. Stable: the bench and dashboards read them.
const (
	StageDecoded     Stage = iota // ingress: request received → command built (the only stage measured before the timestamp)
	StageProduced                 // ingress: the command's append acknowledged by Kafka
	StageFetched                  // engine: the command fetched by its partition's owner
	StageApplied                  // engine: applied by its account's actor (its batch done)
	StageLegProduced              // engine: a transfer's credit leg (or a refund) acknowledged by Kafka
	StageLegFetched               // engine: the credit leg fetched by the destination's owner
	StageLegApplied               // engine: the credit leg applied
	StageDurable                  // ingress: the log holding the answer is on disk
	StageAnswered                 // ingress: the answer written
	stageCount
)

var stageNames = [stageCount]string{
	"decoded", "produced", "fetched", "applied", "leg_produced", "leg_fetched", "leg_applied", "durable", "answered",
}

func (s Stage) String() string { return stageNames[s] }

// Stages is the histogram bursar_stage_seconds, with each stage's series
// resolved once (no label lookup per observation). A nil *Stages observes
// nothing.
type Stages struct {
	vec *prometheus.HistogramVec
	obs [stageCount]prometheus.Observer
}

// NewStages creates the histogram and registers it with reg (nil: not
// registered).
func NewStages(reg prometheus.Registerer) *Stages {
	s := &Stages{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "bursar_stage_seconds",
		Help: "Time from a command's timestamp (minted at ingress after decoding) to each stage of its path: decoded (request received to command built), produced, fetched, applied, leg_produced, leg_fetched, leg_applied, durable, answered. Cumulative: a step's time is the difference of neighbouring stages.",
		// 25 µs to ~3.3 s.
		Buckets: prometheus.ExponentialBuckets(0.000025, 1.6, 26),
	}, []string{"stage"})}
	for i := range s.obs {
		s.obs[i] = s.vec.WithLabelValues(stageNames[i])
	}
	if reg != nil {
		reg.MustRegister(s.vec)
	}
	return s
}

// Since observes stage st of a command stamped sinceUs (µs since the
// epoch), now being now.
func (s *Stages) Since(st Stage, sinceUs int64, now time.Time) {
	if s == nil {
		return
	}
	d := now.UnixMicro() - sinceUs
	if d < 0 {
		d = 0 // another node's clock
	}
	s.obs[st].Observe(float64(d) / 1e6)
}

// Observe observes stage st directly (StageDecoded).
func (s *Stages) Observe(st Stage, d time.Duration) {
	if s == nil {
		return
	}
	s.obs[st].Observe(d.Seconds())
}
