package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	applied       *prometheus.CounterVec
	emitted       prometheus.Counter
	events        prometheus.Counter
	deadLetters   prometheus.Counter
	fenced        prometheus.Counter
	restarts      prometheus.Counter
	reemitted     prometheus.Counter
	backpressure  prometheus.Counter
	storageErrors prometheus.Counter
	fetchErrors   prometheus.Counter
	fetchGaps     prometheus.Counter
	bufferFull    prometheus.Counter
	keyLookups    prometheus.Counter
	readFallbacks prometheus.Counter
	loaded        prometheus.Counter
	passivations  *prometheus.CounterVec
	resident      prometheus.Gauge
	trimmed       prometheus.Counter
	trimErrors    prometheus.Counter
	flushedRows   prometheus.Counter
	flushSeconds  prometheus.Histogram
	batchSeconds  prometheus.Histogram
	forwarded     prometheus.Counter
	barriers      *prometheus.CounterVec
	slotsMoved    prometheus.Counter
	barrierWait   prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_engine_commands_applied_total", Help: "Commands applied, by kind and status.",
		}, []string{"kind", "status"}),
		emitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_records_emitted_total", Help: "Credit legs and refunds produced by applied commands.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_events_emitted_total", Help: "Records produced to bursar.events.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_dead_letters_total", Help: "Undecodable or misrouted command records sent to bursar.commands.dlq.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_partitions_fenced_total", Help: "Partitions dropped because a flush found a newer epoch.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_partition_restarts_total", Help: "Partitions dropped and acquired again from their committed offset because the log refused records their commands caused (a full broker disk, for one).",
		}),
		reemitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_records_reproduced_total", Help: "Attempts to produce again a caused record the log refused with an error that may pass (a full broker disk, a storage error, a timeout).",
		}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_backpressure_waits_total", Help: "Times a partition stopped consuming at its unflushed-rows limit.",
		}),
		storageErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_storage_errors_total", Help: "Failed PostgreSQL operations (retried).",
		}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_fetch_errors_total", Help: "Kafka fetch errors.",
		}),
		fetchGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_fetch_gaps_total", Help: "Fetched batches that did not continue at the partition's next offset (stale cursor after a re-acquisition); dropped and re-sought.",
		}),
		bufferFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_produce_buffer_full_total", Help: "Applied batches that found the Kafka client's produce buffer full (MaxBufferedRecords), so producing the records they caused waited.",
		}),
		keyLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_key_lookups_total", Help: "Idempotency keys looked up in PostgreSQL because an account's in-memory key index (--keys-per-account) was full.",
		}),
		readFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_read_fallbacks_total", Help: "Balance reads served from PostgreSQL after the actor passivated mid-read.",
		}),
		loaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_accounts_loaded_total", Help: "Accounts loaded from PostgreSQL into new actors.",
		}),
		passivations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_engine_passivations_total", Help: "Actors passivated, by reason (idle, limit).",
		}, []string{"reason"}),
		resident: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bursar_engine_resident_actors", Help: "Account actors in memory.",
		}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_commands_trimmed_total", Help: "Committed records deleted from bursar.commands once older than the commands retention.",
		}),
		trimErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_commands_trim_errors_total", Help: "Failed attempts to delete old committed records from bursar.commands (retried next round).",
		}),
		flushedRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_flushed_rows_total", Help: "Rows written to PostgreSQL by flushes.",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bursar_engine_flush_seconds", Help: "Duration of write-behind flushes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bursar_engine_batch_seconds", Help: "Duration of applying one fetched batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_records_forwarded_total", Help: "Command records this node's partitions forwarded to the partition their slot moved to (routed by an older slot map, or past a migration's barrier).",
		}),
		barriers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_engine_barriers_total", Help: "Migration barrier records read, by outcome: taken (the group's old partition stops applying its slots) or ignored (a repeat, or of another migration).",
		}, []string{"outcome"}),
		slotsMoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bursar_engine_slots_moved_total", Help: "Slots this node's partitions handed over to another partition (committed with the mark past the barrier).",
		}),
		barrierWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bursar_engine_barrier_wait_seconds", Help: "How long a partition held its records for a moving group until the group's old partition handed it over.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.emitted, m.events, m.deadLetters, m.fenced, m.restarts, m.reemitted, m.backpressure, m.storageErrors,
			m.fetchErrors, m.fetchGaps, m.bufferFull, m.keyLookups, m.readFallbacks, m.loaded, m.passivations, m.resident, m.trimmed, m.trimErrors, m.flushedRows,
			m.flushSeconds, m.batchSeconds, m.forwarded, m.barriers, m.slotsMoved, m.barrierWait)
	}
	return m
}
