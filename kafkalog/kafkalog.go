// Package kafkalog holds Bursar's Kafka plumbing: topic names, topic
// creation with kadm, the client options every node uses, and the embedded
// development broker (franz-go's kfake persisted to disk). The same client
// code runs against the embedded broker and a real Kafka or Redpanda.
package kafkalog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderSlotMap is the header of a bursar.commands record that names the
// slot map version it was routed under (8 bytes, big-endian). A record
// without it was routed under version 0.
const HeaderSlotMap = "slot-map"

// SlotMapHeader returns the header naming slot map version v.
func SlotMapHeader(v int64) kgo.RecordHeader {
	return kgo.RecordHeader{Key: HeaderSlotMap, Value: binary.BigEndian.AppendUint64(nil, uint64(v))}
}

// SlotMapOf returns the slot map version r was routed under (0 when it
// names none, or names it badly).
func SlotMapOf(r *kgo.Record) int64 {
	for _, h := range r.Headers {
		if h.Key == HeaderSlotMap && len(h.Value) == 8 {
			return int64(binary.BigEndian.Uint64(h.Value) & (1<<63 - 1))
		}
	}
	return 0
}

// Topic names. Stable: operators and consumers depend on them.
const (
	TopicCommands = "bursar.commands"
	TopicEvents   = "bursar.events"
	TopicDLQ      = "bursar.commands.dlq"
)

// Broker is the embedded Kafka-protocol development broker.
type Broker struct {
	c       *kfake.Cluster
	sync    Sync
	gs      *groupSync // with SyncGroup
	j       *journal   // with SyncJournal
	lock    *os.File   // the data directory's lock, held while the broker runs
	dataDir string
}

// Sync is how the embedded broker makes produced records durable.
type Sync int

const (
	// SyncNone leaves writes in the OS page cache: they survive kill -9 of
	// the process (the kernel still holds them) but not a power loss, which
	// is how Kafka itself runs by default (it relies on replication).
	SyncNone Sync = iota
	// SyncBatch fsyncs every produced batch before acknowledging it. kfake
	// applies requests one at a time and fsyncs each partition of a request
	// (segment and index), so the cost grows with the partitions a request
	// touches. Every client of the broker gets the guarantee.
	SyncBatch
	// SyncGroup acknowledges after the write and makes records durable in
	// groups: the node reports every partition it produced to or fetched
	// from (Broker.Written), and Broker.Durable waits for one round that
	// starts after the call and fdatasyncs the active segment file of
	// every partition reported before it, covering every caller waiting
	// meanwhile. Only callers of Durable get the guarantee, so only the
	// node running the broker may use it: a node's engine waits before
	// producing the records a command caused and before committing
	// offsets, and its API before answering.
	SyncGroup
	// SyncJournal acknowledges after the write, like SyncGroup, and makes
	// records durable through a write-ahead journal: the node reports
	// every record it produced or fetched (Broker.Written), and a group
	// commit appends them to one journal file with one fdatasync per
	// round, whatever the number of partitions written; the broker's own
	// files are synced at checkpoints, in the background. After an
	// unclean stop the broker is repaired from the journal before it
	// serves (see journal_recover.go). The guarantees, and who gets them,
	// are SyncGroup's.
	SyncJournal
)

// ParseSync reads a Sync from its flag form: none, batch, group or journal.
func ParseSync(s string) (Sync, error) {
	switch s {
	case "none":
		return SyncNone, nil
	case "batch":
		return SyncBatch, nil
	case "group":
		return SyncGroup, nil
	case "journal":
		return SyncJournal, nil
	}
	return 0, fmt.Errorf("kafkalog: broker sync %q: want none, batch, group or journal", s)
}

func (s Sync) String() string {
	switch s {
	case SyncNone:
		return "none"
	case SyncBatch:
		return "batch"
	case SyncGroup:
		return "group"
	case SyncJournal:
		return "journal"
	}
	return "Sync(" + strconv.Itoa(int(s)) + ")"
}

// BrokerConfig configures StartBroker.
type BrokerConfig struct {
	// DataDir holds the log (under DataDir/kafka). Required.
	DataDir string
	// Listen is "host:port"; port 0 picks a free one. Default 127.0.0.1:0.
	Listen string
	// Sync is how produced records become durable. Default SyncNone.
	Sync Sync
	// OnSync, with SyncGroup or SyncJournal, is told every sync round's
	// duration and error.
	OnSync func(time.Duration, error)
	// OnCheckpoint, with SyncJournal, is told every checkpoint's duration
	// and error.
	OnCheckpoint func(time.Duration, error)
	// Log receives recovery reports, the broker's own warnings and errors
	// (brokerLog) and, with SyncJournal, reports of a journal round waiting
	// for disk space. Default slog.Default().
	Log *slog.Logger
	// OnNoSpace, if set, is told of writes of the broker's own files and
	// of its journal that failed for want of space (ENOSPC, EDQUOT): each
	// failed file write, and every fifth second of a journal round waiting
	// for space.
	OnNoSpace func(error)
}

// StartBroker starts a single-node kfake broker persisting to the data
// directory.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	dir := filepath.Join(cfg.DataDir, "kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kafkalog: broker data dir: %w", err)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: broker listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: broker listen port %q: %w", portText, err)
	}
	mode := cfg.Sync
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	opts := []kfake.Opt{
		kfake.WithLogger(&brokerLog{log: log, onNoSpace: cfg.OnNoSpace}),
		kfake.NumBrokers(1),
		kfake.DataDir(dir),
		kfake.ClusterID("bursar-dev"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			// kfake always asks for 127.0.0.1; bind where the operator said.
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.BrokerConfigs(map[string]string{
			// How often the broker applies topics' retention (Kafka's log
			// cleaner backoff; kfake's default is an hour).
			"log.cleaner.backoff.ms": "30000",
			// Retention deletes whole segments: smaller ones return disk
			// sooner (Kafka's default is 1 GiB, kfake's 100 MiB).
			"log.segment.bytes": strconv.Itoa(segmentBytes),
		}),
	}
	if mode == SyncBatch {
		opts = append(opts, kfake.SyncWrites())
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	b := &Broker{sync: mode, lock: lock, dataDir: cfg.DataDir}
	started := false
	defer func() {
		if !started && lock != nil {
			lock.Close()
		}
	}()
	if mode == SyncGroup {
		if b.gs, err = newGroupSync(dir, segmentBytes, dataSync, syncFS, cfg.OnSync); err != nil {
			return nil, err
		}
	}
	var (
		jNames []string
		jSeqs  []int64
		st     recoveryStats
	)
	if mode != SyncJournal {
		// A journal left by an unclean stop holds answered records the
		// broker's files may have lost: only a journal start recovers it.
		if names, _, err := journalFiles(filepath.Join(cfg.DataDir, "journal")); err == nil && len(names) > 0 {
			return nil, fmt.Errorf("kafkalog: %s holds %d journal files of an unclean stop under --broker-sync=journal, whose records the broker's files may lack; start once with --broker-sync=journal to recover them", filepath.Join(cfg.DataDir, "journal"), len(names))
		}
	}
	if mode == SyncJournal {
		jdir := filepath.Join(cfg.DataDir, "journal")
		if err := os.MkdirAll(jdir, 0o755); err != nil {
			return nil, fmt.Errorf("kafkalog: journal dir: %w", err)
		}
		if jNames, jSeqs, err = journalFiles(jdir); err != nil {
			return nil, fmt.Errorf("kafkalog: journal dir: %w", err)
		}
		if len(jNames) > 0 {
			// An unclean stop: the broker's files may have holes.
			if err := repairSegments(dir, &st); err != nil {
				return nil, fmt.Errorf("kafkalog: journal recovery: repairing the broker's segments: %w", err)
			}
		}
	}
	if b.c, err = kfake.NewCluster(opts...); err != nil {
		if b.gs != nil {
			b.gs.close()
		}
		return nil, fmt.Errorf("kafkalog: start broker: %w", err)
	}
	if mode == SyncJournal {
		if b.j, err = startJournal(cfg.DataDir, dir, b.c.ListenAddrs(), jNames, jSeqs, &st, log, cfg.OnSync, cfg.OnCheckpoint, cfg.OnNoSpace); err != nil {
			b.c.Close()
			return nil, err
		}
	}
	started = true
	return b, nil
}

// segmentBytes is the embedded broker's log.segment.bytes.
const segmentBytes = 16 << 20

// Sync returns the broker's sync mode.
func (b *Broker) Sync() Sync { return b.sync }

// Durable returns once everything written to the broker before the call,
// in the partitions reported to Written, is on disk. Only with SyncGroup
// does it wait (with SyncBatch acknowledged records are already durable,
// with SyncNone they never are).
func (b *Broker) Durable(ctx context.Context) error {
	if b.j != nil {
		return b.j.wait(ctx)
	}
	if b.gs == nil {
		return nil
	}
	return b.gs.wait(ctx, true)
}

// DurableCommands is Durable for bursar.commands only: what an answer, or
// a record a command causes, depends on. A round it waits for skips the
// events and dead letters written since the last round that synced
// everything, so a lone command's answer costs one file's sync.
func (b *Broker) DurableCommands(ctx context.Context) error {
	if b.j != nil {
		return b.j.wait(ctx) // one file: the same round
	}
	if b.gs == nil {
		return nil
	}
	return b.gs.wait(ctx, false)
}

// Written reports a record the broker acknowledged, or that was fetched
// from it (Topic, Partition, Offset set; with SyncJournal also its key,
// value, headers and timestamp): the next durability round covers it (a
// command starts one at once). Call it before anything that will wait on
// Durable or DurableAt for that record. It does nothing unless the broker
// runs SyncGroup or SyncJournal.
func (b *Broker) Written(r *kgo.Record) {
	switch {
	case b.j != nil:
		b.j.written(r)
	case b.gs != nil:
		b.gs.written(r.Topic, r.Partition, r.Offset)
	}
}

// DurableAt returns once the record at offset of bursar.commands'
// partition, and everything before it there, is on disk: at once when a
// round already synced it. Only with SyncGroup does it wait.
func (b *Broker) DurableAt(ctx context.Context, partition int32, offset int64) error {
	if b.j != nil {
		return b.j.waitAt(ctx, partition, offset)
	}
	if b.gs == nil {
		return nil
	}
	return b.gs.waitAt(ctx, partition, offset)
}

// SyncFiles makes everything the broker has written durable (its topics'
// metadata included): call it once topics are created, since records
// journaled in them are restorable only into topics the broker knows.
func (b *Broker) SyncFiles() error {
	return syncTree(filepath.Join(b.dataDir, "kafka"), syncFS)
}

// Addrs returns the broker's listen addresses, for KAFKA_BROKERS.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker and syncs its files; with SyncJournal it
// checkpoints and removes the journal, and returns what failed.
func (b *Broker) Close() error {
	b.c.Close()
	if b.gs != nil {
		b.gs.close()
	}
	var err error
	if b.j != nil {
		err = b.j.close()
	}
	if b.lock != nil {
		b.lock.Close()
	}
	return err
}

// DefaultMaxBufferedRecords is ClientConfig.MaxBufferedRecords' default.
const DefaultMaxBufferedRecords = 100_000

// ClientConfig configures Kafka clients.
type ClientConfig struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// ClientID names the client in broker logs. Default "bursar".
	ClientID string
	// Linger is the producer linger. Default 0: a record is sent at once
	// when no produce request is in flight to its broker. With idempotent
	// writes franz-go keeps one request in flight per broker, so records
	// that arrive meanwhile gather into the next request: batches grow with
	// load, and a lone command waits for nothing (a 1ms linger was one
	// fixed millisecond on every hop of every command at light load).
	Linger time.Duration
	// MaxBufferedRecords bounds records waiting to be produced; Produce
	// blocks beyond it. Default DefaultMaxBufferedRecords.
	MaxBufferedRecords int
}

// Options returns the kgo options shared by producers and consumers:
// idempotent writes with acks=all (franz-go's defaults, stated here so a
// change of defaults cannot weaken them) and our own partitioner.
func (c ClientConfig) Options() []kgo.Opt {
	id := c.ClientID
	if id == "" {
		id = "bursar"
	}
	linger := max(c.Linger, 0)
	buffered := c.MaxBufferedRecords
	if buffered <= 0 {
		buffered = DefaultMaxBufferedRecords
	}
	return []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(linger),
		kgo.MaxBufferedRecords(buffered),
		// Under Kafka's default message.max.bytes (1 MiB + overhead), which
		// the embedded broker also enforces: a larger batch is refused.
		kgo.ProducerBatchMaxBytes(1_000_000),
		// Records are small and mostly random IDs: compression costs CPU
		// and saves little.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordRetries(1 << 30),
		// A consumer positioned outside the log (records lost under the
		// committed offset) stops with an error instead of jumping to the
		// start or the end, which would skip or repeat commands.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(50 * time.Millisecond),
		kgo.FetchMaxBytes(32 << 20),
		kgo.FetchMaxPartitionBytes(4 << 20),
	}
}

// Topics is what EnsureTopics creates.
type Topics struct {
	// Partitions and EventPartitions are the partition counts of
	// bursar.commands and bursar.events.
	Partitions, EventPartitions int32
	// Replication is the replication factor; -1 is the broker's default.
	Replication int16
	// EventsRetention and EventsRetentionBytes become bursar.events'
	// retention.ms and retention.bytes (per partition). 0 leaves the
	// broker's default. bursar.commands and the dead letters keep their
	// records for ever (retention -1 for time and size, set explicitly:
	// brokers default to 7 days): a time or size retention could delete
	// commands not yet applied, so the engine deletes commands itself, once
	// PostgreSQL has them.
	EventsRetention      time.Duration
	EventsRetentionBytes int64
}

// keepForever are the topic configs of bursar.commands and the dead
// letters.
func keepForever() map[string]*string {
	never := "-1"
	return map[string]*string{"retention.ms": &never, "retention.bytes": &never}
}

// eventConfigs are bursar.events' topic configs.
func (t Topics) eventConfigs() map[string]*string {
	cfg := map[string]*string{}
	if t.EventsRetention > 0 {
		v := strconv.FormatInt(t.EventsRetention.Milliseconds(), 10)
		cfg["retention.ms"] = &v
	}
	if t.EventsRetentionBytes > 0 {
		v := strconv.FormatInt(t.EventsRetentionBytes, 10)
		cfg["retention.bytes"] = &v
	}
	return cfg
}

// EnsureTopics creates the command, event and dead-letter topics if they
// are missing and returns the partition counts the command and event
// topics have, which differ from t when a topic already existed (its
// configs are then left as they are too).
func EnsureTopics(ctx context.Context, cl *kgo.Client, t Topics) (commands, events int32, err error) {
	adm := kadm.NewClient(cl)
	for _, tp := range []struct {
		name  string
		parts int32
		cfg   map[string]*string
	}{{TopicCommands, t.Partitions, keepForever()}, {TopicEvents, t.EventPartitions, t.eventConfigs()}, {TopicDLQ, 1, keepForever()}} {
		_, err := adm.CreateTopic(ctx, tp.parts, t.Replication, tp.cfg, tp.name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, 0, fmt.Errorf("kafkalog: create topic %s: %w", tp.name, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		td, err := adm.ListTopics(ctx, TopicCommands, TopicEvents)
		if err == nil {
			c, cok := td[TopicCommands]
			e, eok := td[TopicEvents]
			if cok && eok && c.Err == nil && e.Err == nil && len(c.Partitions) > 0 && len(e.Partitions) > 0 {
				return int32(len(c.Partitions)), int32(len(e.Partitions)), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("kafkalog: topics %s and %s not visible: %v", TopicCommands, TopicEvents, err)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EndOffsets returns the end offset of every partition of the command
// topic.
func EndOffsets(ctx context.Context, cl *kgo.Client) (map[int32]int64, error) {
	lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, TopicCommands)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: end offsets: %w", err)
	}
	if err := lo.Error(); err != nil {
		return nil, fmt.Errorf("kafkalog: end offsets: %w", err)
	}
	out := make(map[int32]int64)
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// LogIdentity returns the identity of the log cl talks to: the broker
// cluster's ID and bursar.commands' topic ID (what a database records,
// so that it is never applied from another log).
func LogIdentity(ctx context.Context, cl *kgo.Client) (clusterID, topicID string, err error) {
	adm := kadm.NewClient(cl)
	meta, err := adm.Metadata(ctx, TopicCommands)
	if err != nil {
		return "", "", fmt.Errorf("kafkalog: log identity: %w", err)
	}
	td, ok := meta.Topics[TopicCommands]
	if !ok || td.Err != nil {
		return "", "", fmt.Errorf("kafkalog: log identity: topic %s: %v", TopicCommands, td.Err)
	}
	var zero kadm.TopicID
	if td.ID == zero {
		return "", "", fmt.Errorf("kafkalog: log identity: the broker gives %s no topic ID (Kafka 2.8 or later gives one)", TopicCommands)
	}
	return meta.Cluster, td.ID.String(), nil
}
