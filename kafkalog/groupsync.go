package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrBrokerClosed is returned by Broker.Durable once the broker is closed.
var ErrBrokerClosed = errors.New("kafkalog: embedded broker closed")

// syncParallelMax bounds the fdatasyncs one round runs at once. The file
// system's journal commits concurrent syncs together, so two files synced
// in parallel cost little more than one (measured here: one fdatasync p50
// 185 µs, two in parallel 262 µs, four 475 µs, four in a row 806 µs).
const syncParallelMax = 16

// perFileMax is the most files a round fdatasyncs one by one; a round with
// more written files syncs the whole file system once (syncfs(2)) instead.
// Each fdatasync flushes the disk's cache on its own, and a file system
// sync costs about as much as one: measured here with 300-byte appends,
// 1 file 238 µs by fdatasync against 176 µs by syncfs, 2 files 341 against
// 211, 8 files 1.41 ms against 333 µs, 64 files (in parallel, 16 at a
// time) 3.9 ms against 740 µs. A file system sync also writes out whatever
// else is dirty on the disk (PostgreSQL's pages: p99 4 ms, max 84 ms under
// load here), which is why a round with few files syncs just those.
const perFileMax = 2

// openFilesMax bounds the segment files a group sync keeps open. Beyond
// it the cache is dropped and files are opened again as they are written.
const openFilesMax = 4096

// topicPartition names one partition of one topic.
type topicPartition struct {
	topic     string
	partition int32
}

// groupSync is a group commit for the embedded broker's files: the broker
// writes without fsync, callers report which partitions were written
// (written), and wait returns once a round that started after the call
// has fdatasynced the active segment file of every partition reported
// before the call. One round covers every caller that arrived meanwhile,
// instead of kfake's two fsyncs per partition per produce request. A round
// with few written files syncs just those, not the whole file system;
// one with many syncs the file system once (see perFileMax).
//
// Only the segment files (<base>.dat) are synced: they hold the record
// batches. The parallel index files (<base>.idx) hold only each batch's
// leader epoch and transaction flag, which a single-node broker never
// changes from 0 and Bursar does not use; kfake rebuilds missing entries
// as epoch 0, non-transactional, when it loads a segment.
type groupSync struct {
	root         string // the broker's data directory
	segmentBytes int64  // the broker's log.segment.bytes: a file this large may have rolled
	syncFile     func(*os.File) error
	syncFS       func(*os.File) error // nil or unsupported: always file by file
	rootDir      *os.File             // open for syncFS
	onSync       func(time.Duration, error)
	kick         chan struct{}
	stop         chan struct{}
	ended        chan struct{} // closed when run has returned

	mu sync.Mutex
	// Written since a round last took them: command partitions, which
	// every round syncs, and the others (events, dead letters), which only
	// rounds that a wait for everything asked for sync.
	commandsDirty, otherDirty map[topicPartition]struct{}
	next                      *syncRound // the round that starts next
	running                   *syncRound // the round in progress, or nil
	failed                    error      // sticky: a failed sync may have lost written pages
	// offsets is, per partition ever reported, the next offset after the
	// highest reported and after the highest known durable (waitAt). One
	// entry per partition of the broker's topics: bounded by them.
	offsets map[topicPartition]*partitionOffsets

	files map[topicPartition]*segmentFile // run's own: no lock
}

// segmentFile is the open active segment of a partition.
type segmentFile struct {
	f    *os.File
	base int64
}

// partitionOffsets are next offsets (one past the highest offset).
type partitionOffsets struct{ reported, durable int64 }

// syncRound is one sync; done is closed when it has finished, with err.
// all is set (under groupSync.mu) when a waiter needs every topic synced.
// covers is, once the round has started, the next offset reported for
// each partition it syncs: what it makes durable.
type syncRound struct {
	done   chan struct{}
	err    error
	all    bool
	covers map[topicPartition]int64
}

func newGroupSync(root string, segmentBytes int64, syncFile, syncFS func(*os.File) error, onSync func(time.Duration, error)) (*groupSync, error) {
	dir, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: open data dir for syncing: %w", err)
	}
	g := &groupSync{
		root: root, rootDir: dir, segmentBytes: segmentBytes, syncFile: syncFile, syncFS: syncFS, onSync: onSync,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{}),
		commandsDirty: make(map[topicPartition]struct{}),
		otherDirty:    make(map[topicPartition]struct{}),
		next:          &syncRound{done: make(chan struct{})},
		files:         make(map[topicPartition]*segmentFile),
		offsets:       make(map[topicPartition]*partitionOffsets),
	}
	go g.run()
	return g, nil
}

// written notes that the record at offset was written to the partition
// (the broker acknowledged it, or a consumer fetched it): the next round
// syncs it. A command starts a round at once if none runs, so that its
// sync overlaps the work between its append and whoever waits for it
// (waitAt): under load rounds run back to back anyway.
func (g *groupSync) written(topic string, partition int32, offset int64) {
	tp := topicPartition{topic, partition}
	g.mu.Lock()
	g.reportLocked(tp, offset)
	g.mu.Unlock()
	if topic == TopicCommands {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
}

func (g *groupSync) reportLocked(tp topicPartition, offset int64) {
	if tp.topic == TopicCommands {
		g.commandsDirty[tp] = struct{}{}
	} else {
		g.otherDirty[tp] = struct{}{}
	}
	o := g.offsets[tp]
	if o == nil {
		o = &partitionOffsets{}
		g.offsets[tp] = o
	}
	o.reported = max(o.reported, offset+1)
}

// waitAt returns once the record at offset of a bursar.commands partition,
// and everything before it there, is on disk: at once when a round has
// already synced it (written started one when it was acknowledged),
// after the round in progress when that one covers it, else after the
// next round.
func (g *groupSync) waitAt(ctx context.Context, partition int32, offset int64) error {
	tp := topicPartition{TopicCommands, partition}
	for {
		g.mu.Lock()
		if g.failed != nil {
			g.mu.Unlock()
			return g.failed
		}
		o := g.offsets[tp]
		if o != nil && o.durable > offset {
			g.mu.Unlock()
			return nil
		}
		if o == nil || o.reported <= offset {
			// The caller knows the offset, so the record is in the log.
			g.reportLocked(tp, offset)
		}
		r := g.next
		if g.running != nil && g.running.covers[tp] > offset {
			r = g.running
		}
		g.mu.Unlock()
		select {
		case g.kick <- struct{}{}:
		default:
		}
		select {
		case <-r.done:
			if r.err != nil {
				return r.err
			}
		case <-g.ended:
			select {
			case <-r.done:
				if r.err != nil {
					return r.err
				}
			default:
				return ErrBrokerClosed
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wait returns once a round that started after the call has finished:
// what was written, and reported, before the call is then on disk: in
// bursar.commands, and with all in every topic. Answers and the records
// commands cause depend only on commands; an offset commit depends on
// the events and dead letters its commands caused too, and asks for all.
func (g *groupSync) wait(ctx context.Context, all bool) error {
	g.mu.Lock()
	r := g.next
	if all {
		r.all = true
	}
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default: // a round is already asked for; r is at the latest that one
	}
	select {
	case <-r.done:
		return r.err
	case <-g.ended:
		// The last round ran before r was taken, or r was its round.
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

func (g *groupSync) run() {
	defer close(g.ended)
	for {
		select {
		case <-g.kick:
			g.round()
		case <-g.stop:
			g.round() // for whoever waits, and the broker's last writes
			return
		}
	}
}

func (g *groupSync) round() {
	g.mu.Lock()
	r := g.next
	g.next = &syncRound{done: make(chan struct{})}
	dirty := g.commandsDirty
	g.commandsDirty = make(map[topicPartition]struct{}, len(dirty))
	if r.all {
		for tp := range g.otherDirty {
			dirty[tp] = struct{}{}
		}
		g.otherDirty = make(map[topicPartition]struct{}, len(g.otherDirty))
	}
	r.covers = make(map[topicPartition]int64, len(dirty))
	for tp := range dirty {
		r.covers[tp] = g.offsets[tp].reported
	}
	g.running = r
	failed := g.failed
	g.mu.Unlock()
	var err error
	if len(dirty) > 0 {
		start := time.Now()
		err = g.syncAll(dirty)
		if g.onSync != nil {
			g.onSync(time.Since(start), err)
		}
	}
	g.mu.Lock()
	g.running = nil
	if err != nil {
		err = fmt.Errorf("kafkalog: syncing the broker's files: %w", err)
		if g.failed == nil {
			g.failed = err
		}
	} else if failed == nil {
		for tp, next := range r.covers {
			o := g.offsets[tp]
			o.durable = max(o.durable, next)
		}
	}
	g.mu.Unlock()
	if failed != nil {
		err = failed
	}
	r.err = err
	close(r.done)
}

// syncAll syncs the partitions' files, up to syncParallelMax at once, and
// returns the first error.
func (g *groupSync) syncAll(dirty map[topicPartition]struct{}) error {
	if len(dirty) > perFileMax && g.syncFS != nil {
		err := g.syncFS(g.rootDir)
		if !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
		g.syncFS = nil
	}
	if len(g.files)+len(dirty) > openFilesMax {
		g.closeFiles()
	}
	// Opening files touches the map: resolve them here, sync in parallel.
	type job struct {
		tp  topicPartition
		seg *segmentFile
	}
	jobs := make([]job, 0, len(dirty))
	for tp := range dirty {
		seg, err := g.file(tp)
		if err != nil {
			return err
		}
		jobs = append(jobs, job{tp, seg})
	}
	if len(jobs) == 1 {
		return g.syncSegment(jobs[0].tp, jobs[0].seg)
	}
	errs := make(chan error, len(jobs))
	sem := make(chan struct{}, syncParallelMax)
	for _, j := range jobs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- g.syncSegment(j.tp, j.seg)
		}()
	}
	var first error
	for range jobs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// syncSegment fdatasyncs a partition's active segment. A segment that has
// reached the roll size, or that retention deleted, may have been followed
// by a new one, which may hold records too: then the newer segments are
// found, their directory entries synced, and they are synced as well.
func (g *groupSync) syncSegment(tp topicPartition, seg *segmentFile) error {
	if err := g.syncFile(seg.f); err != nil {
		return fmt.Errorf("%s: %w", seg.f.Name(), err)
	}
	st, err := seg.f.Stat()
	if err != nil {
		return err
	}
	// Retention may have removed every segment, the active one included
	// (an events partition idle for its retention.ms): the next record
	// then goes to a new file, and the handle is of a deleted one.
	onDisk, err := os.Stat(seg.f.Name())
	current := err == nil && os.SameFile(st, onDisk)
	if st.Size() < g.segmentBytes && current {
		return nil
	}
	dir := partitionDir(g.root, tp)
	bases, err := segmentBases(dir)
	if err != nil {
		return err
	}
	newer := false
	for _, b := range bases {
		if b <= seg.base {
			continue
		}
		newer = true
		f, err := os.Open(filepath.Join(dir, segmentName(b)))
		if err != nil {
			return err
		}
		err = g.syncFile(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if newer {
		// The roll created files: their names must survive too. The
		// cached handle is replaced at the next round's lookup.
		if err := syncDir(dir); err != nil {
			return err
		}
		seg.base = -1 // stale: reopen next time
	}
	return nil
}

// file returns the open active segment of tp, opening the newest one on
// first use (and syncing the directories that name it: a new partition's
// directory and first segment are new entries too).
func (g *groupSync) file(tp topicPartition) (*segmentFile, error) {
	if seg := g.files[tp]; seg != nil && seg.base >= 0 {
		return seg, nil
	} else if seg != nil {
		seg.f.Close()
		delete(g.files, tp)
	}
	dir := partitionDir(g.root, tp)
	bases, err := segmentBases(dir)
	if err != nil {
		return nil, err
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("%s: no segment file after a write", dir)
	}
	base := bases[len(bases)-1]
	f, err := os.Open(filepath.Join(dir, segmentName(base)))
	if err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := syncDir(d); err != nil {
			f.Close()
			return nil, err
		}
	}
	seg := &segmentFile{f: f, base: base}
	g.files[tp] = seg
	return seg, nil
}

func (g *groupSync) closeFiles() {
	for tp, seg := range g.files {
		seg.f.Close()
		delete(g.files, tp)
	}
}

func (g *groupSync) close() {
	close(g.stop)
	<-g.ended
	g.closeFiles()
	g.rootDir.Close()
}

// partitionDir is where kfake keeps a partition's files:
// <root>/partitions/<topic, path-escaped>-<partition>.
func partitionDir(root string, tp topicPartition) string {
	return filepath.Join(root, "partitions", url.PathEscape(tp.topic)+"-"+strconv.FormatInt(int64(tp.partition), 10))
}

func segmentName(base int64) string { return strconv.FormatInt(base, 10) + ".dat" }

// segmentBases lists the base offsets of a partition directory's segment
// files, ascending.
func segmentBases(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".dat")
		if !ok {
			continue
		}
		if b, err := strconv.ParseInt(name, 10, 64); err == nil {
			bases = append(bases, b)
		}
	}
	slices.Sort(bases) // ReadDir sorts by name, not by number
	return bases, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
