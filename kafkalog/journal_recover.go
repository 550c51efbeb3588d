package kafkalog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Recovery of SyncJournal, in two steps around the broker's start.
//
// A journal file left in the journal directory means the last stop was not
// clean (a clean stop checkpoints and removes them all), so the broker's
// files may have lost pages that were never synced: after a machine crash
// any page written since the last checkpoint may be missing, in any order.
// The broker truncates a segment at its first bad batch, but a segment
// could lose its tail while the next one, created by a roll, kept its
// records: a hole in the middle of a partition. repairSegments, before the
// broker starts, cuts every partition at its first bad or discontinuous
// batch and removes the segments after the cut.
//
// replayJournal, once the broker runs, re-appends every journaled record
// from each partition's end offset on, in offset order: the broker assigns
// them the offsets they had. Where a record that was never journaled is
// missing as well (a gap: nothing waited on it, so nothing acknowledged
// depends on it), the records after it get offsets one lower per missing
// record; nothing that waited on them was answered or committed either
// (durability is per partition up to the first gap). Then the broker's
// files are synced and the journal files removed.

// ErrJournalUnrecoverable is StartBroker's error when the broker's files
// lost more than a crash can (synced data, topic metadata): the journal
// files are kept for an operator.
var ErrJournalUnrecoverable = errors.New("kafkalog: journal recovery: the broker's files lost durable data")

// recoveryStats says what a recovery did, for the log.
type recoveryStats struct {
	segmentsCut, segmentsRemoved int
	bytesCut                     int64
	entries, replayed, shifted   int
	tornFiles                    int
	// coverage is, per command partition, the lowest offset the journal
	// files cover (their coverage entries): below it records were synced
	// to the broker's files at a checkpoint.
	coverage map[topicPartition]int64
}

// repairSegments cuts every partition under root/partitions at its first
// invalid or discontinuous batch.
func repairSegments(root string, st *recoveryStats) error {
	dirs, err := os.ReadDir(filepath.Join(root, "partitions"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if err := repairPartition(filepath.Join(root, "partitions", d.Name()), st); err != nil {
			return err
		}
	}
	return nil
}

// repairPartition validates a partition's segments in order and cuts at
// the first bad batch: that segment is truncated there and every later
// segment removed.
func repairPartition(dir string, st *recoveryStats) error {
	bases, err := segmentBases(dir)
	if err != nil {
		return err
	}
	expected := int64(-1)
	for i, base := range bases {
		name := filepath.Join(dir, segmentName(base))
		raw, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		good, next, ok := validBatches(raw, expected)
		expected = next
		if ok {
			continue
		}
		if good < int64(len(raw)) {
			if err := os.Truncate(name, good); err != nil {
				return err
			}
			st.segmentsCut++
			st.bytesCut += int64(len(raw)) - good
		}
		for _, later := range bases[i+1:] {
			for _, n := range []string{segmentName(later), indexName(later)} {
				if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			st.segmentsRemoved++
		}
		return syncDir(dir)
	}
	return nil
}

func indexName(base int64) string { return segmentName(base)[:len(segmentName(base))-4] + ".idx" }

// validBatches walks raw's record batches (Kafka's RecordBatch: base offset
// 8, length 4, leader epoch 4, magic 1, CRC-32C 4 of the rest, attributes 2,
// last offset delta 4, ...). It returns the length of the valid prefix,
// the offset after it, and whether all of raw is valid. expected, unless
// negative, is the offset the first batch must start at.
func validBatches(raw []byte, expected int64) (good, next int64, ok bool) {
	pos := 0
	next = expected
	for pos < len(raw) {
		if len(raw)-pos < 27 {
			return int64(pos), next, false
		}
		b := raw[pos:]
		length := int(int32(binary.BigEndian.Uint32(b[8:12])))
		if length < 15 || length > len(b)-12 {
			return int64(pos), next, false
		}
		batch := b[:12+length]
		if crc32.Checksum(batch[21:], castagnoli) != binary.BigEndian.Uint32(batch[17:21]) {
			return int64(pos), next, false
		}
		first := int64(binary.BigEndian.Uint64(batch[0:8]))
		if next >= 0 && first != next {
			return int64(pos), next, false
		}
		next = first + int64(int32(binary.BigEndian.Uint32(batch[23:27]))) + 1
		pos += len(batch)
	}
	return int64(pos), next, true
}

// readJournal reads every entry of the journal files, oldest file first,
// per partition in offset order without duplicates. A torn or corrupt
// entry ends its file.
func readJournal(names []string, st *recoveryStats) (map[topicPartition][]*kgo.Record, error) {
	out := make(map[topicPartition][]*kgo.Record)
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		for len(raw) > 0 {
			r, n, err := readJournalEntry(raw)
			if err != nil {
				if !errors.Is(err, errJournalEnd) {
					st.tornFiles++
				}
				break
			}
			raw = raw[n:]
			if r.Topic == coverageTopic {
				cov, ok := decodeCoverage(r.Value)
				if !ok {
					return nil, fmt.Errorf("kafkalog: journal recovery: %s: a damaged coverage entry", name)
				}
				if st.coverage == nil {
					st.coverage = make(map[topicPartition]int64)
				}
				for tp, c := range cov {
					if old, seen := st.coverage[tp]; !seen || c < old {
						st.coverage[tp] = c
					}
				}
				continue
			}
			tp := topicPartition{r.Topic, r.Partition}
			out[tp] = append(out[tp], r)
			st.entries++
		}
	}
	for tp, recs := range out {
		slices.SortStableFunc(recs, func(a, b *kgo.Record) int {
			switch {
			case a.Offset < b.Offset:
				return -1
			case a.Offset > b.Offset:
				return 1
			}
			return 0
		})
		out[tp] = slices.CompactFunc(recs, func(a, b *kgo.Record) bool { return a.Offset == b.Offset })
	}
	return out, nil
}

// replayJournal re-appends the journaled records the broker lost and
// returns every partition's end offset afterwards.
func replayJournal(ctx context.Context, addrs []string, recs map[topicPartition][]*kgo.Record, st *recoveryStats) (map[topicPartition]int64, error) {
	cl, err := kgo.NewClient(ClientConfig{Brokers: addrs, ClientID: "bursar-journal-recovery"}.Options()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := endOffsets(ctx, adm)
	if err != nil {
		return nil, err
	}
	// Synced data must still be there: a partition that ends below what
	// the journal covers lost records a checkpoint had made durable (or
	// its topic is gone); re-appending would give the journal's records
	// other offsets than PostgreSQL knows them by.
	for tp, c := range st.coverage {
		if end, known := ends[tp]; (!known && c > 0) || end < c {
			return nil, fmt.Errorf("%w: %s partition %d ends at %d (known: %v), below offset %d, which the broker's files held durably at the last checkpoint; the journal is kept: restore the data directory",
				ErrJournalUnrecoverable, tp.topic, tp.partition, end, known, c)
		}
	}
	for tp, rs := range recs {
		end, known := ends[tp]
		if !known {
			return nil, fmt.Errorf("%w: the journal holds %d records of %s partition %d, which the broker does not have (its topic metadata was lost); the journal is kept: restore the data directory",
				ErrJournalUnrecoverable, len(rs), tp.topic, tp.partition)
		}
		i, _ := slices.BinarySearchFunc(rs, end, func(r *kgo.Record, off int64) int {
			switch {
			case r.Offset < off:
				return -1
			case r.Offset > off:
				return 1
			}
			return 0
		})
		missing := rs[i:]
		if len(missing) == 0 {
			continue
		}
		want := make([]int64, len(missing))
		for k, r := range missing {
			want[k] = r.Offset
			r.Offset = 0
		}
		results := cl.ProduceSync(ctx, missing...)
		if err := results.FirstErr(); err != nil {
			return nil, fmt.Errorf("kafkalog: journal recovery: re-appending to %s/%d: %w", tp.topic, tp.partition, err)
		}
		for k, res := range results {
			st.replayed++
			if res.Record.Offset != want[k] {
				st.shifted++
			}
		}
	}
	if st.replayed > 0 {
		if ends, err = endOffsets(ctx, adm); err != nil {
			return nil, err
		}
	}
	return ends, nil
}

// endOffsets lists every partition's end offset.
func endOffsets(ctx context.Context, adm *kadm.Client) (map[topicPartition]int64, error) {
	listed, err := adm.ListEndOffsets(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: journal: listing end offsets: %w", err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("kafkalog: journal: listing end offsets: %w", err)
	}
	ends := make(map[topicPartition]int64)
	listed.Each(func(o kadm.ListedOffset) {
		ends[topicPartition{o.Topic, o.Partition}] = o.Offset
	})
	return ends, nil
}

// startJournal is StartBroker's journal step once the broker runs: replay
// what an unclean stop left (repairSegments ran before the broker
// started), checkpoint, and start the journal at the end offsets.
func startJournal(dataDir, kafkaDir string, addrs []string, names []string, seqs []int64, st *recoveryStats, log *slog.Logger, onSync, onCheckpoint func(time.Duration, error), onNoSpace func(error)) (*journal, error) {
	dir := filepath.Join(dataDir, "journal")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := readJournal(names, st)
	if err != nil {
		return nil, err
	}
	ends, err := replayJournal(ctx, addrs, recs, st)
	if err != nil {
		return nil, err
	}
	// The journal starts at the broker's end offsets and takes everything
	// below as durable: make it so, whatever wrote it (a replay now, a run
	// with --broker-sync=none before).
	if err := syncTree(kafkaDir, syncFS); err != nil {
		return nil, fmt.Errorf("kafkalog: journal: syncing the broker's files: %w", err)
	}
	if len(names) > 0 {
		for _, n := range names {
			if err := os.Remove(n); err != nil {
				return nil, fmt.Errorf("kafkalog: journal recovery: %w", err)
			}
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		log.Warn("embedded broker recovered from an unclean stop through its journal",
			"journal_files", len(names), "entries", st.entries, "torn_files", st.tornFiles,
			"segments_cut", st.segmentsCut, "bytes_cut", st.bytesCut, "segments_removed", st.segmentsRemoved,
			"records_restored", st.replayed, "records_shifted", st.shifted)
	}
	seq := int64(1)
	if len(seqs) > 0 {
		seq = seqs[len(seqs)-1] + 1
	}
	return newJournal(dir, kafkaDir, ends, seq, journalConfig{onSync: onSync, onCheckpoint: onCheckpoint, noPrealloc: testNoPrealloc,
		onNoSpace: func(err error) {
			log.Error("embedded broker's journal: out of space (or quota) on its disk; the round waits for space and writes again (nothing is lost)", "err", err)
			if onNoSpace != nil {
				onNoSpace(err)
			}
		}})
}

// testNoPrealloc, set by tests only, keeps StartBroker's journal in its
// first file: no preallocated file to move to, so no checkpoint, so a
// test may drop any of the broker's pages as a machine crash would
// (after a checkpoint they are on disk and cannot be lost).
var testNoPrealloc bool
