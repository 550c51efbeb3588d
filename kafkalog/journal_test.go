package kafkalog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testJournal starts a journal in a temporary directory whose syncs are
// counted (and fail while failSync is set).
type testJournal struct {
	*journal
	syncs, fsSyncs atomic.Int64
	failSync       atomic.Bool
}

func newTestJournal(t *testing.T, parts map[topicPartition]int64, cfg journalConfig) *testJournal {
	t.Helper()
	dir := t.TempDir()
	kafkaDir := filepath.Join(dir, "kafka")
	jdir := filepath.Join(dir, "journal")
	for _, d := range []string{kafkaDir, jdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tj := &testJournal{}
	cfg.syncFile = func(f *os.File) error {
		if tj.failSync.Load() {
			return errors.New("injected sync failure")
		}
		tj.syncs.Add(1)
		return dataSync(f)
	}
	cfg.syncFS = func(f *os.File) error {
		tj.fsSyncs.Add(1)
		return syncFS(f)
	}
	j, err := newJournal(jdir, kafkaDir, parts, 1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tj.journal = j
	return tj
}

func cmdRecord(p int32, off int64, value string) *kgo.Record {
	return &kgo.Record{
		Topic: TopicCommands, Partition: p, Offset: off,
		Key: []byte("k"), Value: []byte(value), Timestamp: time.UnixMilli(1_700_000_000_000 + off),
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}},
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

// TestJournalWaitAtCoversWritten: a reported record is durable once a
// round has written and synced it, and the file holds it as reported.
func TestJournalWaitAtCoversWritten(t *testing.T) {
	j := newTestJournal(t, nil, journalConfig{noPrealloc: true})
	defer j.close()
	r := cmdRecord(3, 0, "first")
	j.written(r)
	if err := j.waitAt(context.Background(), 3, 0); err != nil {
		t.Fatal(err)
	}
	if j.syncs.Load() == 0 {
		t.Fatal("durable without a sync")
	}
	var st recoveryStats
	recs, err := readJournal([]string{j.name}, &st)
	if err != nil {
		t.Fatal(err)
	}
	got := recs[topicPartition{TopicCommands, 3}]
	if len(got) != 1 || !sameRecord(got[0], r) {
		t.Fatalf("journal holds %+v, want %+v", got, r)
	}
}

func sameRecord(a, b *kgo.Record) bool {
	if a.Topic != b.Topic || a.Partition != b.Partition || a.Offset != b.Offset ||
		!bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) ||
		a.Timestamp.UnixMilli() != b.Timestamp.UnixMilli() || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// TestJournalWaitAtNeedsThePrefix: a record journaled past a gap is not
// durable until the records before it are reported too, and a record no
// one reported is an error, not a wait for ever.
func TestJournalWaitAtNeedsThePrefix(t *testing.T) {
	j := newTestJournal(t, map[topicPartition]int64{{TopicCommands, 0}: 10}, journalConfig{noPrealloc: true})
	defer j.close()
	if err := j.waitAt(shortCtx(t), 0, 9); err != nil {
		t.Fatalf("an offset below the start must be durable: %v", err)
	}
	if err := j.waitAt(shortCtx(t), 0, 10); !errors.Is(err, errNotJournaled) {
		t.Fatalf("unreported offset: %v, want errNotJournaled", err)
	}
	j.written(cmdRecord(0, 11, "b"))
	if err := j.waitAt(shortCtx(t), 0, 11); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("past a gap: %v, want a wait until the gap is filled", err)
	}
	done := make(chan error, 1)
	go func() { done <- j.waitAt(context.Background(), 0, 11) }()
	j.written(cmdRecord(0, 10, "a"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := j.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestJournalWritesARecordOnce: the same record reported by its producer
// and by a fetch is journaled once.
func TestJournalWritesARecordOnce(t *testing.T) {
	j := newTestJournal(t, nil, journalConfig{noPrealloc: true})
	defer j.close()
	j.written(cmdRecord(1, 1, "b")) // the fetch saw it before the acknowledgement came
	j.written(cmdRecord(1, 0, "a"))
	j.written(cmdRecord(1, 1, "b"))
	j.written(cmdRecord(1, 0, "a"))
	if err := j.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	var st recoveryStats
	if _, err := readJournal([]string{j.name}, &st); err != nil {
		t.Fatal(err)
	}
	if st.entries != 2 {
		t.Fatalf("%d entries, want 2", st.entries)
	}
}

// TestJournalFailureIsSticky: once a sync fails every wait fails: the
// file may have lost what was written.
func TestJournalFailureIsSticky(t *testing.T) {
	j := newTestJournal(t, nil, journalConfig{noPrealloc: true})
	j.failSync.Store(true)
	j.written(cmdRecord(0, 0, "a"))
	if err := j.waitAt(context.Background(), 0, 0); err == nil {
		t.Fatal("a failed sync made a record durable")
	}
	j.failSync.Store(false)
	j.written(cmdRecord(0, 1, "b"))
	if err := j.wait(context.Background()); err == nil {
		t.Fatal("a wait after a failed sync succeeded")
	}
	if err := j.close(); err == nil {
		t.Fatal("close after a failed sync reported nothing")
	}
}

// TestJournalCheckpoints: a full file is handed to the checkpointer,
// which syncs the broker's files and removes it; close removes the rest.
func TestJournalCheckpoints(t *testing.T) {
	j := newTestJournal(t, nil, journalConfig{checkpointBytes: 512})
	for i := range 200 {
		j.written(cmdRecord(0, int64(i), "a value of some length to fill the file"))
		if err := j.waitAt(context.Background(), 0, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, _, err := journalFiles(j.dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) <= 2 && j.fsSyncs.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d journal files (%v) and %d checkpoints after 200 rounds of a 512-byte limit", len(names), names, j.fsSyncs.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if names, _, _ := journalFiles(j.dir); len(names) != 0 {
		t.Fatalf("a clean close left %v", names)
	}
}

// TestJournalEntryRejectsDamage: every truncation and every flipped byte
// of an entry is refused, never decoded as another record.
func TestJournalEntryRejectsDamage(t *testing.T) {
	entry := appendJournalEntry(nil, cmdRecord(2, 7, "value"))
	if r, n, err := readJournalEntry(entry); err != nil || n != len(entry) || !sameRecord(r, cmdRecord(2, 7, "value")) {
		t.Fatalf("round trip: %+v %d %v", r, n, err)
	}
	for cut := range len(entry) {
		if _, _, err := readJournalEntry(entry[:cut]); err == nil {
			t.Fatalf("an entry cut at %d decoded", cut)
		}
	}
	for i := range entry {
		bad := bytes.Clone(entry)
		bad[i] ^= 0x40
		if _, _, err := readJournalEntry(bad); err == nil {
			t.Fatalf("an entry with byte %d flipped decoded", i)
		}
	}
	if r, _, err := readJournalEntry(appendJournalEntry(nil, &kgo.Record{Topic: "t"})); err != nil || r.Key != nil || r.Value != nil {
		t.Fatalf("nil key and value: %+v %v", r, err)
	}
}

// FuzzJournalEntry: the journal's decoder never panics, and whatever it
// decodes encodes back to the same bytes.
func FuzzJournalEntry(f *testing.F) {
	f.Add(appendJournalEntry(nil, cmdRecord(1, 5, "seed")))
	f.Add(appendJournalEntry(nil, &kgo.Record{Topic: TopicEvents}))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := readJournalEntry(b)
		if err != nil {
			return
		}
		if again := appendJournalEntry(nil, r); !bytes.Equal(again, b[:n]) {
			t.Fatalf("decoded %+v re-encodes differently", r)
		}
	})
}

// batch returns a valid RecordBatch of n records from first, as Kafka and
// the broker store them.
func batch(first int64, n int32) []byte {
	rb := kmsg.RecordBatch{FirstOffset: first, Magic: 2, LastOffsetDelta: n - 1, NumRecords: n, Records: bytes.Repeat([]byte{1}, int(n))}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:12], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:21], crc32.Checksum(raw[21:], castagnoli))
	return raw
}

// TestRepairPartitionCutsAtTheFirstHole: a partition is cut at its first
// damaged or discontinuous batch, and the segments after the cut go, so
// the broker never serves a log with a hole in it.
func TestRepairPartitionCutsAtTheFirstHole(t *testing.T) {
	b0, b1, b2, b3 := batch(0, 5), batch(5, 5), batch(10, 5), batch(15, 5)
	damaged := bytes.Clone(b1)
	damaged[len(damaged)-1] ^= 1
	for _, tc := range []struct {
		name        string
		seg0, seg10 []byte
		want0       int
		want10      bool // 10.dat still holds records
	}{
		{"intact", cat(b0, b1), cat(b2, b3), len(b0) + len(b1), true},
		{"torn tail of the last segment", cat(b0, b1), cat(b2, b3[:20]), len(b0) + len(b1), true},
		{"a lost page before a roll", cat(b0, damaged), cat(b2, b3), len(b0), false},
		{"a discontinuity across the roll", cat(b0, b1), cat(batch(11, 4), b3), len(b0) + len(b1), false},
		{"zeros where a batch was", cat(b0, make([]byte, len(b1))), cat(b2), len(b0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, b []byte) {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write("0.dat", tc.seg0)
			write("0.idx", nil)
			write("10.dat", tc.seg10)
			write("10.idx", nil)
			var st recoveryStats
			if err := repairPartition(dir, &st); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "0.dat"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want0 {
				t.Fatalf("0.dat kept %d bytes, want %d", len(got), tc.want0)
			}
			st10, err := os.Stat(filepath.Join(dir, "10.dat"))
			if kept := err == nil && st10.Size() > 0; kept != tc.want10 {
				t.Fatalf("10.dat kept records = %v, want %v", kept, tc.want10)
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// abandon stops the journal the way a crash does: no checkpoint, the files
// stay.
func (j *journal) abandon() {
	close(j.stop)
	<-j.ended
	<-j.ckDone
	<-j.prepDone
	j.f.Close()
}

// TestJournalRestoresWhatAMachineCrashLost: records acknowledged, reported
// and made durable through the journal survive the loss of the broker's
// unsynced pages, a torn tail in one partition and a damaged batch in the
// middle of another: the restarted broker serves every record at its
// offset, with its key, value, headers and timestamp.
func TestJournalRestoresWhatAMachineCrashLost(t *testing.T) {
	testNoPrealloc = true
	t.Cleanup(func() { testNoPrealloc = false })
	dir := t.TempDir()
	b, err := StartBroker(BrokerConfig{DataDir: dir, Sync: SyncJournal})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(ClientConfig{Brokers: b.Addrs()}.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureTopics(ctx, cl, Topics{Partitions: 2, EventPartitions: 1, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	var sent []*kgo.Record
	for chunk := range 30 {
		var recs []*kgo.Record
		for i := range 10 {
			n := chunk*10 + i
			recs = append(recs, &kgo.Record{
				Topic: TopicCommands, Partition: int32(n % 2), Key: []byte{byte(n)},
				Value: bytes.Repeat([]byte{byte(n)}, 50+n), Timestamp: time.UnixMilli(1_700_000_000_000 + int64(n)),
				Headers: []kgo.RecordHeader{{Key: "n", Value: []byte{byte(n)}}},
			})
		}
		for _, res := range cl.ProduceSync(ctx, recs...) {
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			b.Written(res.Record)
			sent = append(sent, res.Record)
		}
		if err := b.Durable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.c.Close()
	b.j.abandon()
	b.lock.Close() // the process is gone: so is its lock

	// What a machine crash may leave: partition 0 lost its last pages (a
	// torn batch), partition 1 a page in the middle.
	seg := func(p int) string {
		return filepath.Join(partitionDir(filepath.Join(dir, "kafka"), topicPartition{TopicCommands, int32(p)}), segmentName(0))
	}
	st0, err := os.Stat(seg(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg(0), st0.Size()*2/5); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(seg(1))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xFF
	if err := os.WriteFile(seg(1), raw, 0o644); err != nil {
		t.Fatal(err)
	}

	b, err = StartBroker(BrokerConfig{DataDir: dir, Sync: SyncJournal})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err = kgo.NewClient(append(ClientConfig{Brokers: b.Addrs()}.Options(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{TopicCommands: {0: kgo.NewOffset().At(0), 1: kgo.NewOffset().At(0)}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := make(map[topicPartition]map[int64]*kgo.Record)
	for n := 0; n < len(sent); {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			if got[tp] == nil {
				got[tp] = make(map[int64]*kgo.Record)
			}
			got[tp][r.Offset] = r
			n++
		})
	}
	for _, want := range sent {
		r := got[topicPartition{want.Topic, want.Partition}][want.Offset]
		if r == nil || !sameRecord(r, want) {
			t.Fatalf("%s/%d offset %d after recovery: %+v, want %+v", want.Topic, want.Partition, want.Offset, r, want)
		}
	}
	if names, _, _ := journalFiles(filepath.Join(dir, "journal")); len(names) != 1 {
		t.Fatalf("journal files after recovery: %v, want one new file", names)
	}
}

// TestJournalPreallocates: once the preallocated file is ready, rounds
// overwrite its zeros without changing its size, and its entries read
// back up to the zeros, which end the file cleanly.
func TestJournalPreallocates(t *testing.T) {
	const size = 1 << 20
	j := newTestJournal(t, nil, journalConfig{checkpointBytes: size})
	j.written(cmdRecord(0, 0, "into the first, appended file"))
	if err := j.waitAt(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(j.dir, journalFileName(2))
	deadline := time.Now().Add(10 * time.Second)
	for off := int64(1); ; off++ {
		// Each round may be the one that moves to the prepared file.
		j.written(cmdRecord(0, off, "x"))
		if err := j.waitAt(context.Background(), 0, off); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no preallocated file in use after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for off := int64(1000); off < 1010; off++ {
		j.written(cmdRecord(1, off-1000, "into the preallocated file"))
	}
	if err := j.waitAt(context.Background(), 1, 9); err != nil {
		t.Fatal(err)
	}
	j.abandon()
	st, err := os.Stat(second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("preallocated file is %d bytes, want %d", st.Size(), size)
	}
	var rs recoveryStats
	recs, err := readJournal([]string{second}, &rs)
	if err != nil {
		t.Fatal(err)
	}
	if got := recs[topicPartition{TopicCommands, 1}]; len(got) != 10 || rs.tornFiles != 0 {
		t.Fatalf("read back %d entries of partition 1 (want 10), %d torn files", len(got), rs.tornFiles)
	}
}

// TestJournalRefusesLostSyncedData: a broker whose partition ends below
// what the journal covers lost data a checkpoint had made durable (not a
// crash's unsynced tail): recovery refuses, keeps the journal, and a start
// in another sync mode refuses it too rather than ignore it.
func TestJournalRefusesLostSyncedData(t *testing.T) {
	testNoPrealloc = true
	t.Cleanup(func() { testNoPrealloc = false })
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	produce := func(b *Broker, n int) {
		t.Helper()
		cl, err := kgo.NewClient(ClientConfig{Brokers: b.Addrs()}.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, _, err := EnsureTopics(ctx, cl, Topics{Partitions: 1, EventPartitions: 1, Replication: 1}); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			res := cl.ProduceSync(ctx, &kgo.Record{Topic: TopicCommands, Partition: 0, Value: []byte{byte(i)}})
			if err := res.FirstErr(); err != nil {
				t.Fatal(err)
			}
			b.Written(res[0].Record)
		}
		if err := b.Durable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b, err := StartBroker(BrokerConfig{DataDir: dir, Sync: SyncJournal})
	if err != nil {
		t.Fatal(err)
	}
	produce(b, 20)
	if err := b.Close(); err != nil { // checkpointed: the 20 are synced
		t.Fatal(err)
	}
	if b, err = StartBroker(BrokerConfig{DataDir: dir, Sync: SyncJournal}); err != nil {
		t.Fatal(err)
	}
	produce(b, 5)
	b.c.Close()
	b.j.abandon()
	b.lock.Close()
	// The synced records are gone: not something a crash can do.
	seg := filepath.Join(partitionDir(filepath.Join(dir, "kafka"), topicPartition{TopicCommands, 0}), segmentName(0))
	if err := os.Truncate(seg, 0); err != nil {
		t.Fatal(err)
	}
	if b, err := StartBroker(BrokerConfig{DataDir: dir, Sync: SyncJournal}); !errors.Is(err, ErrJournalUnrecoverable) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("recovery over lost synced data: %v, want ErrJournalUnrecoverable", err)
	}
	if names, _, _ := journalFiles(filepath.Join(dir, "journal")); len(names) == 0 {
		t.Fatal("the refused recovery removed the journal")
	}
	if b, err := StartBroker(BrokerConfig{DataDir: dir, Sync: SyncGroup}); err == nil || !strings.Contains(err.Error(), "--broker-sync=journal") {
		if b != nil {
			b.Close()
		}
		t.Fatalf("a group-sync start over an unrecovered journal: %v, want a refusal naming --broker-sync=journal", err)
	}
}

// TestJournalWaitsOutAFullDisk: a write refused for want of space is not a
// failure: the round writes it again once space returns, the waiters are
// answered then, and the journal goes on.
func TestJournalWaitsOutAFullDisk(t *testing.T) {
	var full atomic.Int64
	var told atomic.Int64
	kafkaDir, jdir := journalDirs(t)
	j, err := newJournal(jdir, kafkaDir, nil, 1, journalConfig{noPrealloc: true,
		writeAt: func(f *os.File, b []byte, off int64) (int, error) {
			if full.Add(-1) >= 0 {
				return 0, syscall.ENOSPC
			}
			return f.WriteAt(b, off)
		},
		onNoSpace: func(error) { told.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	full.Store(3) // the next three writes find the disk full
	j.written(cmdRecord(0, 0, "a"))
	if err := j.waitAt(context.Background(), 0, 0); err != nil {
		t.Fatalf("after the disk had room again: %v", err)
	}
	if told.Load() == 0 {
		t.Fatal("the full disk was not reported")
	}
	j.written(cmdRecord(0, 1, "b"))
	if err := j.waitAt(context.Background(), 0, 1); err != nil {
		t.Fatalf("the journal after a full disk: %v", err)
	}
	var st recoveryStats
	recs, err := readJournal([]string{j.name}, &st)
	if err != nil || len(recs[topicPartition{TopicCommands, 0}]) != 2 {
		t.Fatalf("journal after the full disk: %v, %d entries", err, len(recs[topicPartition{TopicCommands, 0}]))
	}
}

// TestJournalRotationWaitsOutAFullDisk: a new journal file whose header
// finds no space is removed, the full file goes on taking rounds, and the
// rotation happens once space returns; nothing fails and nothing is lost.
func TestJournalRotationWaitsOutAFullDisk(t *testing.T) {
	var headersRefused, told atomic.Int64
	full := atomic.Bool{}
	full.Store(true)
	kafkaDir, jdir := journalDirs(t)
	var opened atomic.Int64
	j, err := newJournal(jdir, kafkaDir, nil, 1, journalConfig{noPrealloc: true, checkpointBytes: 256,
		writeAt: func(f *os.File, b []byte, off int64) (int, error) {
			if off == 0 && opened.Add(1) > 1 && full.Load() { // the first file opens; the next ones find the disk full
				headersRefused.Add(1)
				return 0, syscall.ENOSPC
			}
			return f.WriteAt(b, off)
		},
		onNoSpace: func(error) { told.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	first := j.name
	for i := range 20 {
		j.written(cmdRecord(0, int64(i), strings.Repeat("x", 40)))
		if err := j.waitAt(context.Background(), 0, int64(i)); err != nil {
			t.Fatalf("record %d with no room for a new journal file: %v", i, err)
		}
	}
	if headersRefused.Load() == 0 || told.Load() == 0 {
		t.Fatalf("headers refused %d, told %d: the rotation did not meet the full disk", headersRefused.Load(), told.Load())
	}
	full.Store(false)
	for i := 20; i < 30; i++ {
		j.written(cmdRecord(0, int64(i), strings.Repeat("x", 40)))
		if err := j.waitAt(context.Background(), 0, int64(i)); err != nil {
			t.Fatalf("record %d after space returned: %v", i, err)
		}
	}
	names, _, err := journalFiles(jdir)
	if err != nil || len(names) == 0 || names[len(names)-1] == first {
		t.Fatalf("journal files after space returned: %v %v: no rotation", names, err)
	}
	var st recoveryStats
	recs, err := readJournal(names, &st)
	// The checkpointer may have removed full files already: what the
	// files left hold must end at record 29, without gaps.
	got := recs[topicPartition{TopicCommands, 0}]
	if err != nil || len(got) == 0 || got[len(got)-1].Offset != 29 || st.tornFiles != 0 {
		t.Fatalf("journal after the full disk: %v, %d entries, torn %d", err, len(got), st.tornFiles)
	}
	for k := 1; k < len(got); k++ {
		if got[k].Offset != got[k-1].Offset+1 {
			t.Fatalf("a gap after offset %d", got[k-1].Offset)
		}
	}
}

// journalDirs makes a broker directory and a journal directory for a
// journal of the test's own.
func journalDirs(t *testing.T) (kafkaDir, jdir string) {
	t.Helper()
	dir := t.TempDir()
	kafkaDir, jdir = filepath.Join(dir, "kafka"), filepath.Join(dir, "journal")
	for _, d := range []string{kafkaDir, jdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return kafkaDir, jdir
}
