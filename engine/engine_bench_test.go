package engine_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkEngineApplyFlush measures the engine alone: credit commands
// produced straight to Kafka (no HTTP), applied by the account actors and
// flushed to PostgreSQL with their offsets. b.N commands over 10,000
// accounts; the time is from the first produce to the last commit.
//
// The broker is the embedded one as `bursar serve` runs it: kfake persisting
// to a data directory, over TCP. BURSAR_BENCH_SYNC chooses how it makes
// records durable, as serve's --broker-sync: none (the default here),
// group (every flush waits for the broker's group sync) or batch.
func BenchmarkEngineApplyFlush(b *testing.B) {
	engine.TuneGC() // as bursar serve runs
	mode := kafkalog.SyncNone
	if v := os.Getenv("BURSAR_BENCH_SYNC"); v != "" {
		var err error
		if mode, err = kafkalog.ParseSync(v); err != nil {
			b.Fatal(err)
		}
	}
	broker, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: b.TempDir(), Sync: mode})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { broker.Close() })
	r := newRigOn(b, broker.Addrs(), parts, func(c *engine.Config) {
		if s := broker.Sync(); s == kafkalog.SyncGroup || s == kafkalog.SyncJournal {
			c.LogDurable, c.LogWritten, c.CommandsDurableAt = broker.Durable, broker.Written, broker.DurableAt
		}
	})
	ctx := context.Background()
	const accounts = 10_000
	ids := make([]uuid.UUID, accounts)
	recs := make([]*kgo.Record, 0, accounts)
	for i := range ids {
		ids[i] = uuid.New()
		c := openCmd(ids[i])
		c.TxID, c.TimestampUs = uuid.Must(uuid.NewV7()), time.Now().UnixMicro() // v7, as the ingress mints them
		c.RequestHash = ledger.HashRequest(c)
		recs = append(recs, &kgo.Record{Topic: kafkalog.TopicCommands, Partition: r.slots.PartitionOfAccount(ids[i]), Value: c.AppendBinary(nil)})
	}
	if err := r.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	r.waitCommitted(b)
	// Pre-encode so the timed part is the engine, not the producer's input.
	recs = make([]*kgo.Record, b.N)
	for i := range recs {
		id := ids[i%accounts]
		c := money(ledger.KindCredit, id, 1, fmt.Sprintf("k%d", i))
		c.TxID, c.TimestampUs = uuid.Must(uuid.NewV7()), time.Now().UnixMicro() // v7, as the ingress mints them
		c.RequestHash = ledger.HashRequest(c)
		recs[i] = &kgo.Record{Topic: kafkalog.TopicCommands, Partition: r.slots.PartitionOfAccount(id), Value: c.AppendBinary(nil)}
	}
	b.ResetTimer()
	for _, rec := range recs {
		r.client.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := r.client.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	r.waitCommitted(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
}
