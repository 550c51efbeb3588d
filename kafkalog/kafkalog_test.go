package kafkalog_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientOf returns a client of broker b, closed when the test ends, and a
// context for the test's calls.
func clientOf(t *testing.T, b *kafkalog.Broker) (*kgo.Client, context.Context) {
	t.Helper()
	cl, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: b.Addrs()}.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return cl, ctx
}

// TestEnsureTopicsRetention: the embedded broker over TCP; EnsureTopics
// creates the three topics with the asked partition counts, gives
// bursar.events the asked retention, and keeps bursar.commands and the
// dead letters for ever (the engine trims commands once PostgreSQL has
// them). A second call keeps the existing topics.
func TestEnsureTopicsRetention(t *testing.T) {
	b, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, ctx := clientOf(t, b)
	topics := kafkalog.Topics{Partitions: 4, EventPartitions: 2, Replication: 1, EventsRetention: 90 * time.Minute, EventsRetentionBytes: 1 << 20}
	c, e, err := kafkalog.EnsureTopics(ctx, cl, topics)
	if err != nil || c != 4 || e != 2 {
		t.Fatalf("EnsureTopics = %d, %d, %v", c, e, err)
	}
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, kafkalog.TopicEvents, kafkalog.TopicCommands, kafkalog.TopicDLQ)
	if err != nil {
		t.Fatal(err)
	}
	explicit := func(topic, key string) string {
		t.Helper()
		rc, err := configs.On(topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rc.Configs {
			if c.Key == key && c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil {
				return *c.Value
			}
		}
		return ""
	}
	for _, tc := range []struct{ topic, key, want string }{
		{kafkalog.TopicEvents, "retention.ms", "5400000"},
		{kafkalog.TopicEvents, "retention.bytes", "1048576"},
		{kafkalog.TopicCommands, "retention.ms", "-1"},
		{kafkalog.TopicCommands, "retention.bytes", "-1"},
		{kafkalog.TopicDLQ, "retention.ms", "-1"},
		{kafkalog.TopicDLQ, "retention.bytes", "-1"},
	} {
		if got := explicit(tc.topic, tc.key); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.topic, tc.key, got, tc.want)
		}
	}

	topics.Partitions, topics.EventPartitions = 8, 8
	if c, e, err := kafkalog.EnsureTopics(ctx, cl, topics); err != nil || c != 4 || e != 2 {
		t.Fatalf("second EnsureTopics = %d, %d, %v; want the existing 4 and 2", c, e, err)
	}
}

// TestGroupSyncBroker: the embedded broker with SyncGroup acknowledges
// produced records, and Durable syncs the written partition's segment
// file for real (kfake's layout on disk is what the sync expects).
func TestGroupSyncBroker(t *testing.T) {
	var syncs atomic.Int64
	b, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: t.TempDir(), Sync: kafkalog.SyncGroup,
		OnSync: func(_ time.Duration, err error) {
			if err != nil {
				t.Error(err)
			}
			syncs.Add(1)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Sync() != kafkalog.SyncGroup {
		t.Fatalf("sync mode %v", b.Sync())
	}
	cl, ctx := clientOf(t, b)
	if _, _, err := kafkalog.EnsureTopics(ctx, cl, kafkalog.Topics{Partitions: 2, EventPartitions: 2, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kafkalog.TopicCommands, Partition: 1, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b.Written(&kgo.Record{Topic: kafkalog.TopicCommands, Partition: 1, Offset: 0})
	if err := b.Durable(ctx); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == 0 {
		t.Fatal("Durable returned without a sync")
	}
}

func TestParseSync(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kafkalog.Sync
		ok   bool
	}{
		{"none", kafkalog.SyncNone, true}, {"batch", kafkalog.SyncBatch, true}, {"group", kafkalog.SyncGroup, true},
		{"", 0, false}, {"true", 0, false}, {"GROUP", 0, false},
	} {
		got, err := kafkalog.ParseSync(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseSync(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// TestDataDirHasOneBroker: a second broker on a data directory in use is
// refused, by name; once the first has stopped, the directory is free.
func TestDataDirHasOneBroker(t *testing.T) {
	dir := t.TempDir()
	b, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: dir, Sync: kafkalog.SyncJournal})
	if err != nil {
		t.Fatal(err)
	}
	if second, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: dir, Sync: kafkalog.SyncJournal}); !errors.Is(err, kafkalog.ErrDataDirInUse) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second broker on the same data dir: %v, want ErrDataDirInUse", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: dir, Sync: kafkalog.SyncJournal})
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again.Close()
}
