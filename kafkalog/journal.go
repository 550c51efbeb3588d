package kafkalog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// journal is the embedded broker's write-ahead journal
// (--broker-sync=journal): one file that holds a copy of every record the
// node produced to, or fetched from, the broker, made durable by a group
// commit of one write and one fdatasync of that one file per round.
//
// The broker (kfake) keeps a file per partition and writes without fsync.
// Syncing those files themselves (SyncGroup) costs a sync per written
// partition per round, or a sync of the whole file system, which grows
// with the partitions a round touched (measured here: 64 files 2.8 ms by
// syncfs, 6.1 ms by parallel fdatasyncs, against 0.2 ms for one file); and
// the broker's single request loop stalls in write(2) while the file it
// appends to is being synced. With the journal the broker's files are
// synced only at checkpoints, in the background, and a round costs one
// small sequential write and one fdatasync whatever the partition count.
//
// What the journal guarantees is what SyncGroup does: once waitAt returns
// for a record of bursar.commands, that record and every record before it
// in its partition can be restored after a machine crash; once wait
// returns, every record reported before the call can. Recovery (see
// recoverJournal) re-appends to the broker, in offset order, the journaled
// records the broker's own files lost.
//
// Records reach the journal through written, from the producers'
// acknowledgements (the broker wrote the record before acknowledging it)
// and from the engine's fetches (which also catch records other clients
// produced). A record is journaled once: per partition the journal knows
// the offsets below next, and the ones it holds above a gap.
//
// Checkpoints bound the journal: once a file reaches checkpointBytes the
// journal moves on to a new one, and a background sync of the broker's
// files (whose writes happened before they were acknowledged, so before
// their records were journaled) lets the old file go.
//
// Journal files are preallocated: written full of zeros and synced in the
// background before use, so that a round overwrites allocated blocks and
// its fdatasync has no metadata to commit (the file's size does not
// change). Measured here with 2 KB rounds beside unsynced appends to 64
// other files: p50 140 µs against 240 µs appending. The first file of a
// start is appended to until the first preallocated one is ready. A torn
// or zeroed entry ends what a file holds.
type journal struct {
	dir             string // <data>/journal
	kafkaDir        string // the broker's data directory, synced at checkpoints
	checkpointBytes int64
	syncFile        func(*os.File) error
	syncFS          func(*os.File) error // nil: checkpoints sync file by file
	onSync          func(time.Duration, error)
	onCheckpoint    func(time.Duration, error)
	writeAt         func(f *os.File, b []byte, off int64) (int, error)
	onNoSpace       func(error)
	// rotationsRefused counts rotations refused for want of space in a
	// row (run's goroutine only), to tell onNoSpace now and then.
	rotationsRefused int
	kick             chan struct{}
	stop             chan struct{}
	ended            chan struct{}

	mu      sync.Mutex
	buf     []byte // entries appended since the last round took them
	spare   []byte // the buffer the last round wrote, for reuse
	parts   map[topicPartition]*journalPart
	dirty   map[topicPartition]struct{} // appended since the last round took them
	next    *syncRound                  // the round that starts next
	running *syncRound                  // the round in progress, or nil
	failed  error                       // sticky: a failed write or sync may have lost entries

	// run's own.
	f        *os.File
	name     string // f's path (a preallocated file's *os.File keeps its first name)
	seq      int64  // f's sequence number
	size     int64  // bytes of entries in f
	capacity int64  // f's preallocated size; 0: appended to

	prealloc bool
	prepared chan *os.File // a preallocated file, ready (prepareNext)
	prepWake chan struct{}
	prepDone chan struct{}

	ckMu      sync.Mutex
	ckPending []string // full files whose records await a checkpoint
	ckWake    chan struct{}
	ckDone    chan struct{}
	ckMoved   chan struct{} // a checkpoint finished (rotate waits on it when too many files wait)
	ckErr     error         // sticky, under ckMu
}

// journalPart is one bursar.commands partition's journal state (only
// commands are waited on one record at a time). Offsets below next are
// journaled (or were in the broker's synced files when the journal
// started); above holds the journaled offsets past a gap (records reported
// out of order: two producers' acknowledgements, or a fetch that saw a
// record before its producer's acknowledgement arrived); offsets below
// durable are on disk.
type journalPart struct {
	next, durable int64
	above         map[int64]struct{}
}

// journalCheckpointBytes is the journal file size at which the journal
// moves to a new file and checkpoints the broker's files; files are
// preallocated to it.
const journalCheckpointBytes = 32 << 20

// journalPrepSuffix ends the name of a file preallocated for a next
// journal file (next-<n>.prep) until it is renamed into use.
const journalPrepSuffix = ".prep"

// journalPendingMax bounds the full files awaiting a checkpoint; a round
// that would leave more waits for the checkpoint in progress (the disk
// cannot keep up with the broker's writes).
const journalPendingMax = 4

// journalFilePrefix and journalFileSuffix name the journal's files:
// journal-<sequence>.log.
const (
	journalFilePrefix = "journal-"
	journalFileSuffix = ".log"
)

// errNoSpaceWrite marks a journal write refused for want of space
// (ENOSPC, EDQUOT): nothing was synced, so the round retries it.
var errNoSpaceWrite = errors.New("kafkalog: journal write: no space left on device")

// noSpaceRetry is how long a round waits before writing again into a
// full disk.
const noSpaceRetry = 100 * time.Millisecond

// journalConfig configures newJournal.
type journalConfig struct {
	checkpointBytes      int64 // default journalCheckpointBytes
	noPrealloc           bool  // append to every file (tests)
	onSync, onCheckpoint func(time.Duration, error)
	syncFile, syncFS     func(*os.File) error                               // default dataSync, syncFS (tests count them)
	writeAt              func(f *os.File, b []byte, off int64) (int, error) // default f.WriteAt (tests fail it)
	onNoSpace            func(error)                                        // told, now and then, that a round waits for space
}

// newJournal starts a journal in dir, after recovery: parts gives each
// known partition's next offset (the broker's end offsets, all on disk).
func newJournal(dir, kafkaDir string, parts map[topicPartition]int64, seq int64, cfg journalConfig) (*journal, error) {
	if cfg.checkpointBytes <= 0 {
		cfg.checkpointBytes = journalCheckpointBytes
	}
	if cfg.syncFile == nil {
		cfg.syncFile = dataSync
	}
	if cfg.syncFS == nil {
		cfg.syncFS = syncFS
	}
	if cfg.writeAt == nil {
		cfg.writeAt = func(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }
	}
	j := &journal{
		dir: dir, kafkaDir: kafkaDir, checkpointBytes: cfg.checkpointBytes,
		syncFile: cfg.syncFile, syncFS: cfg.syncFS, onSync: cfg.onSync, onCheckpoint: cfg.onCheckpoint,
		writeAt: cfg.writeAt, onNoSpace: cfg.onNoSpace,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{}),
		parts:  make(map[topicPartition]*journalPart, len(parts)),
		dirty:  make(map[topicPartition]struct{}),
		next:   &syncRound{done: make(chan struct{})},
		ckWake: make(chan struct{}, 1), ckDone: make(chan struct{}), ckMoved: make(chan struct{}, 1),
		prepared: make(chan *os.File, 1), prepWake: make(chan struct{}, 1), prepDone: make(chan struct{}),
	}
	for tp, next := range parts {
		j.parts[tp] = &journalPart{next: next, durable: next}
	}
	// Preallocated files an earlier run left unused.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: journal: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), journalPrepSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("kafkalog: journal: %w", err)
			}
		}
	}
	if err := j.open(seq, nil); err != nil {
		return nil, err
	}
	j.prealloc = !cfg.noPrealloc
	go j.run()
	go j.checkpointer()
	go j.prepareNext()
	if j.prealloc {
		j.prepWake <- struct{}{}
	}
	return j, nil
}

// open starts journal file seq: the preallocated file prep, renamed, or
// with prep nil a new file to append to.
func (j *journal) open(seq int64, prep *os.File) error {
	name := filepath.Join(j.dir, journalFileName(seq))
	f, capacity := prep, int64(0)
	if prep != nil {
		if err := os.Rename(prep.Name(), name); err != nil {
			prep.Close()
			os.Remove(prep.Name()) //nolint:errcheck // zeros only; a leftover is removed at the next start
			return noSpaceOr(err)
		}
		capacity = j.checkpointBytes
	} else {
		var err error
		if f, err = os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err != nil {
			return noSpaceOr(err) // no inode, no directory block
		}
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return fmt.Errorf("kafkalog: journal: %w", err)
	}
	// The file starts with what it covers: per command partition, the
	// offset from which its records are in this file or a later one (those
	// below are in older files, which a checkpoint removes only once the
	// broker's files hold them). Recovery refuses a broker whose partition
	// ends below it: that would be synced data lost, not a crash's tail.
	header := appendJournalEntry(nil, j.coverage())
	if _, err := j.writeAt(f, header, 0); err != nil {
		f.Close()
		if NoSpace(err) {
			// Nothing is in the new file yet: remove it, keep the full
			// one, and rotate again at a later round (retriable). A
			// failed sync stays fatal: after one, what the page cache
			// held may be gone without a trace (PostgreSQL's fsync rule).
			os.Remove(name) //nolint:errcheck // a leftover without a header ends recovery's read of it, harmlessly
			syncDir(j.dir)  //nolint:errcheck // as above
		}
		return noSpaceOr(err)
	}
	if err := j.syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("kafkalog: journal: %w", err)
	}
	// Only now the journal's file: a file that failed above leaves the
	// one in use as it was.
	j.f, j.name, j.seq, j.size, j.capacity = f, name, seq, int64(len(header)), capacity
	return nil
}

// noSpaceOr wraps an error of starting a journal file: retriable
// (errNoSpaceWrite) when it is for want of space or quota, else fatal.
func noSpaceOr(err error) error {
	if NoSpace(err) {
		return fmt.Errorf("%w: %w", errNoSpaceWrite, err)
	}
	return fmt.Errorf("kafkalog: journal: %w", err)
}

// coverageTopic names a journal file's coverage entry: no Kafka topic can
// have this name (topic names are [a-zA-Z0-9._-]).
const coverageTopic = "\x00coverage"

// coverage is the coverage entry for a file opened now: per command
// partition the offset below which every record is durable in an older
// file (a round has written it: records reported since are in the buffer,
// bound for this file).
func (j *journal) coverage() *kgo.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	var v []byte
	for tp, p := range j.parts {
		v = binary.BigEndian.AppendUint16(v, uint16(len(tp.topic)))
		v = append(v, tp.topic...)
		v = binary.BigEndian.AppendUint32(v, uint32(tp.partition))
		v = binary.BigEndian.AppendUint64(v, uint64(p.durable))
	}
	return &kgo.Record{Topic: coverageTopic, Value: v}
}

// decodeCoverage reads a coverage entry's value.
func decodeCoverage(v []byte) (map[topicPartition]int64, bool) {
	out := make(map[topicPartition]int64)
	d := entryDecoder{b: v}
	for len(d.b) > 0 && !d.bad {
		topic := string(d.bytes(int(d.u16())))
		p := int32(d.u32())
		out[topicPartition{topic, p}] = int64(d.u64())
	}
	return out, !d.bad
}

// prepareNext preallocates the next journal file whenever asked: zeros
// written and synced, size and blocks included, then handed over on
// prepared.
func (j *journal) prepareNext() {
	defer close(j.prepDone)
	zeros := make([]byte, 1<<20)
	for n := 0; ; n++ {
		select {
		case <-j.prepWake:
		case <-j.ended:
			return
		}
		f, err := j.preallocate(filepath.Join(j.dir, "next-"+strconv.Itoa(n)+journalPrepSuffix), zeros)
		if err != nil {
			// Not fatal: the journal appends to new files meanwhile.
			continue
		}
		select {
		case j.prepared <- f:
		case <-j.ended:
			f.Close()
			os.Remove(f.Name())
			return
		}
	}
}

func (j *journal) preallocate(name string, zeros []byte) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	for n := int64(0); n < j.checkpointBytes; n += int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(int64(len(zeros)), j.checkpointBytes-n)]); err != nil {
			f.Close()
			os.Remove(name)
			return nil, err
		}
		select {
		case <-j.ended:
			f.Close()
			os.Remove(name)
			return nil, ErrBrokerClosed
		default:
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	return f, nil
}

func journalFileName(seq int64) string {
	return journalFilePrefix + fmt.Sprintf("%012d", seq) + journalFileSuffix
}

// journalFiles lists the journal files in dir with their sequence
// numbers, oldest first.
func journalFiles(dir string) ([]string, []int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var seqs []int64
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), journalFilePrefix)
		if !ok {
			continue
		}
		if s, ok = strings.CutSuffix(s, journalFileSuffix); !ok {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		names = append(names, filepath.Join(dir, e.Name()))
		seqs = append(seqs, n)
	}
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(seqs[a] - seqs[b]) })
	sortedNames := make([]string, len(idx))
	sortedSeqs := make([]int64, len(idx))
	for i, k := range idx {
		sortedNames[i], sortedSeqs[i] = names[k], seqs[k]
	}
	return sortedNames, sortedSeqs, nil
}

func (j *journal) part(tp topicPartition) *journalPart {
	p := j.parts[tp]
	if p == nil {
		// A partition unknown at start has been created since: it began
		// at offset 0.
		p = &journalPart{}
		j.parts[tp] = p
	}
	return p
}

// written journals r (acknowledged by the broker, or fetched from it)
// unless it already is. A command starts a round at once if none runs, so
// that its sync overlaps the work between its append and whoever waits.
func (j *journal) written(r *kgo.Record) {
	if r.Topic != TopicCommands {
		// Events and dead letters come only from this node's producers,
		// each acknowledged once, and nothing waits on one record of
		// them: no per-offset bookkeeping (recovery drops duplicates).
		j.mu.Lock()
		j.buf = appendJournalEntry(j.buf, r)
		j.mu.Unlock()
		return
	}
	tp := topicPartition{r.Topic, r.Partition}
	j.mu.Lock()
	p := j.part(tp)
	if r.Offset < p.next {
		j.mu.Unlock()
		return
	}
	if _, dup := p.above[r.Offset]; dup {
		j.mu.Unlock()
		return
	}
	j.buf = appendJournalEntry(j.buf, r)
	if r.Offset == p.next {
		p.next++
		for len(p.above) > 0 {
			if _, ok := p.above[p.next]; !ok {
				break
			}
			delete(p.above, p.next)
			p.next++
		}
	} else {
		if p.above == nil {
			p.above = make(map[int64]struct{})
		}
		p.above[r.Offset] = struct{}{}
	}
	j.dirty[tp] = struct{}{}
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// errNotJournaled is waitAt's answer for an offset no one reported.
var errNotJournaled = errors.New("kafkalog: journal: waiting for a record that was never reported")

// waitAt returns once the record at offset of a bursar.commands partition,
// and everything before it there, is on disk. The record must have been
// reported (written) first.
func (j *journal) waitAt(ctx context.Context, partition int32, offset int64) error {
	tp := topicPartition{TopicCommands, partition}
	for {
		j.mu.Lock()
		if j.failed != nil {
			j.mu.Unlock()
			return j.failed
		}
		p := j.part(tp)
		if p.durable > offset {
			j.mu.Unlock()
			return nil
		}
		gap := false
		if p.next <= offset {
			if _, ok := p.above[offset]; !ok {
				j.mu.Unlock()
				return fmt.Errorf("%w: %s/%d offset %d", errNotJournaled, tp.topic, tp.partition, offset)
			}
			// Journaled past a gap: durable once the missing records are
			// reported (the engine's fetch reports every record it takes)
			// and a round has run. That report starts the round.
			gap = true
		}
		r := j.next
		if !gap && j.running != nil && j.running.covers[tp] > offset {
			r = j.running
		}
		j.mu.Unlock()
		if !gap {
			select {
			case j.kick <- struct{}{}:
			default:
			}
		}
		if err := j.await(ctx, r); err != nil {
			return err
		}
	}
}

// await waits for round r.
func (j *journal) await(ctx context.Context, r *syncRound) error {
	select {
	case <-r.done:
		return r.err
	case <-j.ended:
		select {
		case <-r.done:
			return r.err
		default:
			return ErrBrokerClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns once every record reported before the call is on disk.
func (j *journal) wait(ctx context.Context) error {
	j.mu.Lock()
	if j.failed != nil {
		j.mu.Unlock()
		return j.failed
	}
	r := j.next
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return j.await(ctx, r)
}

func (j *journal) run() {
	defer close(j.ended)
	for {
		select {
		case <-j.kick:
			j.round()
		case <-j.stop:
			j.round() // for whoever waits
			return
		}
	}
}

func (j *journal) round() {
	j.mu.Lock()
	r := j.next
	j.next = &syncRound{done: make(chan struct{})}
	buf := j.buf
	j.buf = j.spare[:0]
	r.covers = make(map[topicPartition]int64, len(j.dirty))
	for tp := range j.dirty {
		r.covers[tp] = j.parts[tp].next
	}
	clear(j.dirty)
	j.running = r
	failed := j.failed
	j.mu.Unlock()

	var err error
	if len(buf) > 0 && failed == nil {
		// An empty round covers nothing new: every entry reported before it
		// was in a round that has finished.
		start := time.Now()
		err = j.append(buf)
		// Out of space, nothing of buf is on disk and nothing is lost: wait
		// for space (the node refuses new writes meanwhile,
		// --disk-reserve-bytes) and write it again at the same place.
		// Whoever waits on this round waits with it, as for a slow sync.
		for n := 0; errors.Is(err, errNoSpaceWrite); n++ {
			if j.onNoSpace != nil && n%50 == 0 {
				j.onNoSpace(err)
			}
			stopping := false
			select {
			case <-j.stop:
				stopping = true
			case <-time.After(noSpaceRetry):
			}
			if stopping {
				err = fmt.Errorf("kafkalog: journal closed while its disk was full (%v)", err)
				break
			}
			err = j.append(buf)
		}
		if j.onSync != nil {
			j.onSync(time.Since(start), err)
		}
	}

	j.mu.Lock()
	j.running = nil
	j.spare = buf
	if err != nil {
		if j.failed == nil {
			j.failed = err
		}
	} else if failed == nil {
		for tp, next := range r.covers {
			p := j.parts[tp]
			p.durable = max(p.durable, next)
		}
	}
	j.mu.Unlock()
	if failed != nil {
		err = failed
	}
	r.err = err
	close(r.done)
	if err != nil {
		return
	}
	var prep *os.File
	if j.capacity == 0 || j.size >= j.checkpointBytes {
		select {
		case prep = <-j.prepared:
		default:
		}
	}
	if j.size >= j.checkpointBytes || (j.capacity == 0 && prep != nil) {
		// Full, or appended to while the preallocated file was prepared.
		if err := j.rotate(prep); errors.Is(err, errNoSpaceWrite) {
			// The full file goes on taking rounds (a write past its
			// size that finds no space waits, above) until a rotation
			// finds room; told now and then, as a waiting write is.
			if j.onNoSpace != nil && j.rotationsRefused%50 == 0 {
				j.onNoSpace(err)
			}
			j.rotationsRefused++
		} else if err == nil {
			j.rotationsRefused = 0
		} else {
			j.mu.Lock()
			if j.failed == nil {
				j.failed = err
			}
			j.mu.Unlock()
		}
	}
}

// append writes buf to the journal file and syncs it.
func (j *journal) append(buf []byte) error {
	if _, err := j.writeAt(j.f, buf, j.size); err != nil {
		if NoSpace(err) {
			// Written in part at most, and only past j.size: retriable.
			return fmt.Errorf("%w: %w", errNoSpaceWrite, err)
		}
		return fmt.Errorf("kafkalog: journal write: %w", err)
	}
	j.size += int64(len(buf))
	if err := j.syncFile(j.f); err != nil {
		return fmt.Errorf("kafkalog: journal sync: %w", err)
	}
	return nil
}

// rotate moves on to the next journal file (prep, or a new one to append
// to) and hands the full one to the checkpointer. With journalPendingMax
// files already waiting, it waits for the checkpoint in progress first.
func (j *journal) rotate(prep *os.File) error {
	for {
		j.ckMu.Lock()
		n, err := len(j.ckPending), j.ckErr
		j.ckMu.Unlock()
		if err != nil {
			return err
		}
		if n < journalPendingMax {
			break
		}
		select {
		case <-j.ckDone:
			return ErrBrokerClosed
		case <-j.ckMoved:
		}
	}
	full, fullName := j.f, j.name
	if err := j.open(j.seq+1, prep); err != nil {
		return err
	}
	if j.prealloc {
		select {
		case j.prepWake <- struct{}{}:
		default:
		}
	}
	if err := full.Close(); err != nil {
		return fmt.Errorf("kafkalog: journal: %w", err)
	}
	j.ckMu.Lock()
	j.ckPending = append(j.ckPending, fullName)
	j.ckMu.Unlock()
	select {
	case j.ckWake <- struct{}{}:
	default:
	}
	return nil
}

// checkpointer syncs the broker's files whenever journal files are full,
// then deletes those files: every record they hold was written to the
// broker's files before it was journaled.
func (j *journal) checkpointer() {
	defer close(j.ckDone)
	for {
		select {
		case <-j.ckWake:
		case <-j.ended:
			return
		}
		j.ckMu.Lock()
		names := slices.Clone(j.ckPending)
		j.ckMu.Unlock()
		if len(names) == 0 {
			continue
		}
		start := time.Now()
		err := j.checkpoint(names)
		if j.onCheckpoint != nil {
			j.onCheckpoint(time.Since(start), err)
		}
		j.ckMu.Lock()
		if err != nil {
			j.ckErr = err
		} else {
			j.ckPending = j.ckPending[len(names):]
		}
		j.ckMu.Unlock()
		select {
		case j.ckMoved <- struct{}{}:
		default:
		}
		if err != nil {
			j.mu.Lock()
			if j.failed == nil {
				j.failed = err
			}
			j.mu.Unlock()
			return
		}
	}
}

// checkpoint syncs the broker's files and removes the named journal files.
func (j *journal) checkpoint(names []string) error {
	if err := syncTree(j.kafkaDir, j.syncFS); err != nil {
		return fmt.Errorf("kafkalog: journal checkpoint: %w", err)
	}
	for _, name := range names {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kafkalog: journal checkpoint: %w", err)
		}
	}
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("kafkalog: journal checkpoint: %w", err)
	}
	return nil
}

// syncTree makes every file under dir durable: one syncfs(2) of its file
// system, or, where that is unsupported, an fsync of every file and
// directory.
func syncTree(dir string, fsSync func(*os.File) error) error {
	if fsSync != nil {
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		err = fsSync(d)
		d.Close()
		if !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // retention removed it meanwhile
			}
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// close runs a last round, checkpoints everything and removes the
// journal's files: a clean stop leaves nothing to recover. It is called
// after the broker has stopped writing.
func (j *journal) close() error {
	close(j.stop)
	<-j.ended
	<-j.ckDone
	<-j.prepDone
	select {
	case f := <-j.prepared:
		f.Close()
		os.Remove(f.Name())
	default:
	}
	j.mu.Lock()
	failed := j.failed
	j.mu.Unlock()
	if failed != nil {
		j.f.Close()
		return failed
	}
	j.f.Close()
	j.ckMu.Lock()
	names := append(slices.Clone(j.ckPending), j.name)
	j.ckMu.Unlock()
	return j.checkpoint(names)
}

// Journal entries: [4 length][4 CRC-32C of the body][body]; body:
// [1 version][2 topic length][topic][4 partition][8 offset]
// [8 timestamp, Unix ms][4 key length, -1 nil][key][4 value length, -1 nil]
// [value][2 header count]([2 key length][key][4 value length][value])*.
const (
	journalEntryVersion = 1
	journalHeaderSize   = 8
	// journalEntryMax bounds one entry: Kafka's default max.message.bytes is
	// 1 MiB; anything longer is a torn or corrupt length.
	journalEntryMax = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendJournalEntry(buf []byte, r *kgo.Record) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	buf = append(buf, journalEntryVersion)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.Topic)))
	buf = append(buf, r.Topic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(r.Partition))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Offset))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Timestamp.UnixMilli()))
	buf = appendBytes32(buf, r.Key)
	buf = appendBytes32(buf, r.Value)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.Headers)))
	for _, h := range r.Headers {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(h.Key)))
		buf = append(buf, h.Key...)
		buf = appendBytes32(buf, h.Value)
	}
	body := buf[start+journalHeaderSize:]
	binary.BigEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf
}

func appendBytes32(buf, b []byte) []byte {
	if b == nil {
		return binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}

// errJournalEntry marks a torn or corrupt entry, and errJournalEnd the
// zeros of a preallocated file: either ends what a file holds.
var (
	errJournalEntry = errors.New("kafkalog: journal: torn or corrupt entry")
	errJournalEnd   = errors.New("kafkalog: journal: end of entries")
)

// readJournalEntry decodes the entry at the start of b and returns it with
// its length, or errJournalEntry.
func readJournalEntry(b []byte) (*kgo.Record, int, error) {
	if len(b) < journalHeaderSize {
		return nil, 0, errJournalEntry
	}
	n := int(binary.BigEndian.Uint32(b))
	if n == 0 {
		return nil, 0, errJournalEnd // a preallocated file's zeros
	}
	if n > journalEntryMax || len(b) < journalHeaderSize+n {
		return nil, 0, errJournalEntry
	}
	body := b[journalHeaderSize : journalHeaderSize+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return nil, 0, errJournalEntry
	}
	d := entryDecoder{b: body}
	if d.u8() != journalEntryVersion {
		return nil, 0, errJournalEntry
	}
	r := &kgo.Record{}
	r.Topic = string(d.bytes(int(d.u16())))
	r.Partition = int32(d.u32())
	r.Offset = int64(d.u64())
	r.Timestamp = time.UnixMilli(int64(d.u64()))
	r.Key = d.bytes32()
	r.Value = d.bytes32()
	nh := int(d.u16())
	for range nh {
		k := string(d.bytes(int(d.u16())))
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: d.bytes32()})
	}
	if d.bad || len(d.b) != 0 {
		return nil, 0, errJournalEntry
	}
	return r, journalHeaderSize + n, nil
}

// entryDecoder reads a journal entry's body; bad is set on a short read.
type entryDecoder struct {
	b   []byte
	bad bool
}

func (d *entryDecoder) take(n int) []byte {
	if d.bad || n < 0 || len(d.b) < n {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *entryDecoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *entryDecoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *entryDecoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *entryDecoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *entryDecoder) bytes(n int) []byte {
	v := d.take(n)
	if v == nil {
		return nil
	}
	return slices.Clone(v)
}

func (d *entryDecoder) bytes32() []byte {
	n := d.u32()
	if n == 0xFFFFFFFF {
		return nil
	}
	if n == 0 {
		if d.bad {
			return nil
		}
		return []byte{}
	}
	return d.bytes(int(n))
}
