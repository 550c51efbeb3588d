package kafkalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncLog is a sync function that numbers its calls and records which
// ones have finished.
type syncLog struct {
	started, finished atomic.Int64
	delay             time.Duration
	fail              atomic.Bool
}

func (l *syncLog) sync(*os.File) error {
	n := l.started.Add(1)
	time.Sleep(l.delay)
	for {
		f := l.finished.Load()
		if f >= n || l.finished.CompareAndSwap(f, n) {
			break
		}
	}
	if l.fail.Load() {
		return errors.New("EIO")
	}
	return nil
}

// testTP is the partition the tests write to.
var testTP = topicPartition{TopicCommands, 3}

// newTestGroupSync returns a group sync over a data directory laid out as
// kfake lays it out, with one segment file in testTP's directory.
func newTestGroupSync(t *testing.T, l *syncLog) *groupSync {
	t.Helper()
	root := t.TempDir()
	writeSegment(t, root, testTP, 0, 10)
	g, err := newGroupSync(root, 1<<20, l.sync, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// writeSegment appends n bytes to the segment file base of tp, creating
// it (and its directory) if needed.
func writeSegment(t *testing.T, root string, tp topicPartition, base int64, n int) {
	t.Helper()
	dir := partitionDir(root, tp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, segmentName(base)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

// waitWritten reports testTP written, then waits.
func waitWritten(ctx context.Context, g *groupSync) error {
	g.written(testTP.topic, testTP.partition, 0)
	return g.wait(ctx, false)
}

// TestGroupSyncWaitsForALaterSync: a wait returns only after a sync that
// started after it was called has finished, even when it arrives while
// another sync runs (that one may have missed its writes).
func TestGroupSyncWaitsForALaterSync(t *testing.T) {
	l := &syncLog{delay: 2 * time.Millisecond}
	g := newTestGroupSync(t, l)
	defer g.close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%7) * 300 * time.Microsecond)
			before := l.started.Load()
			if err := waitWritten(context.Background(), g); err != nil {
				t.Error(err)
				return
			}
			if got := l.finished.Load(); got <= before {
				t.Errorf("wait returned with syncs up to %d finished; %d had started before it was called", got, before)
			}
		}()
	}
	wg.Wait()
	// Waiters that arrive during a sync share the next one.
	if n := l.started.Load(); n >= 50 {
		t.Errorf("%d syncs for 50 waits: no grouping", n)
	}
}

// TestGroupSyncFailureIsSticky: once a sync fails, written pages may be
// lost, so every later wait fails too, even if a later sync succeeds.
func TestGroupSyncFailureIsSticky(t *testing.T) {
	l := &syncLog{}
	g := newTestGroupSync(t, l)
	defer g.close()
	if err := waitWritten(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	l.fail.Store(true)
	if err := waitWritten(context.Background(), g); err == nil {
		t.Fatal("a failed sync reported success")
	}
	l.fail.Store(false)
	if err := waitWritten(context.Background(), g); err == nil {
		t.Fatal("a wait after a failed sync succeeded")
	}
}

// TestGroupSyncCancelAndClose: a cancelled wait returns its context's
// error; closing runs a last sync for the waits in progress, and later
// waits get ErrBrokerClosed.
func TestGroupSyncCancelAndClose(t *testing.T) {
	l := &syncLog{delay: 50 * time.Millisecond}
	g := newTestGroupSync(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := waitWritten(ctx, g); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- waitWritten(context.Background(), g) }()
	time.Sleep(5 * time.Millisecond)
	g.close()
	if err := <-done; err != nil {
		t.Fatalf("wait in progress at close = %v", err)
	}
	if err := g.wait(context.Background(), true); !errors.Is(err, ErrBrokerClosed) {
		t.Fatalf("wait after close = %v", err)
	}
}

// fileLog is a sync function that records the files it synced.
type fileLog struct {
	mu    sync.Mutex
	names []string
}

func (l *fileLog) sync(f *os.File) error {
	l.mu.Lock()
	l.names = append(l.names, filepath.Base(filepath.Dir(f.Name()))+"/"+filepath.Base(f.Name()))
	l.mu.Unlock()
	return nil
}

func (l *fileLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.names
	l.names = nil
	slices.Sort(out)
	return out
}

// TestGroupSyncSyncsWrittenSegments: a round fdatasyncs the active segment
// of exactly the partitions reported written since the last round (not
// the others, not index files), a round with nothing written syncs
// nothing, and a segment that reached the roll size is followed into the
// segments after it.
func TestGroupSyncSyncsWrittenSegments(t *testing.T) {
	root := t.TempDir()
	cmd0, cmd1, ev0 := topicPartition{TopicCommands, 0}, topicPartition{TopicCommands, 1}, topicPartition{TopicEvents, 0}
	for _, tp := range []topicPartition{cmd0, cmd1, ev0} {
		writeSegment(t, root, tp, 0, 10)
		if err := os.WriteFile(filepath.Join(partitionDir(root, tp), "0.idx"), []byte("i"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := &fileLog{}
	const roll = 100
	g, err := newGroupSync(root, roll, l.sync, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	ctx := context.Background()
	steps := []struct {
		name    string
		prepare func()
		written []topicPartition
		all     bool
		want    []string
	}{
		{"one partition", nil, []topicPartition{cmd1}, false, []string{"bursar.commands-1/0.dat"}},
		{"two topics, everything", nil, []topicPartition{cmd0, ev0}, true, []string{"bursar.commands-0/0.dat", "bursar.events-0/0.dat"}},
		{"two topics, commands only", nil, []topicPartition{cmd0, ev0}, false, []string{"bursar.commands-0/0.dat"}},
		{"the events left for a wait for everything", nil, nil, true, []string{"bursar.events-0/0.dat"}},
		{"nothing written", nil, nil, true, nil},
		// Events: a command's report starts a round at once, which could
		// sync it between the two reports.
		{"reported twice, synced once", nil, []topicPartition{ev0, ev0}, true, []string{"bursar.events-0/0.dat"}},
		{"rolled segment", func() {
			writeSegment(t, root, cmd0, 0, roll) // reaches the roll size
			writeSegment(t, root, cmd0, 17, 5)   // the next segment
			writeSegment(t, root, cmd0, 9, 5)    // sorts before 17 by name, after 0 by number
		}, []topicPartition{cmd0}, false, []string{"bursar.commands-0/0.dat", "bursar.commands-0/17.dat", "bursar.commands-0/9.dat"}},
		{"after a roll, the newest segment", nil, []topicPartition{cmd0}, false, []string{"bursar.commands-0/17.dat"}},
	}
	for _, st := range steps {
		if st.prepare != nil {
			st.prepare()
		}
		for _, tp := range st.written {
			g.written(tp.topic, tp.partition, 0)
		}
		if err := g.wait(ctx, st.all); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := l.take(); !slices.Equal(got, st.want) {
			t.Errorf("%s: synced %v, want %v", st.name, got, st.want)
		}
	}
}

// TestGroupSyncMissingSegmentFails: a partition reported written whose
// directory holds no segment is an error (and sticky), never a silent
// success.
func TestGroupSyncMissingSegmentFails(t *testing.T) {
	l := &fileLog{}
	g, err := newGroupSync(t.TempDir(), 1<<20, l.sync, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	g.written(TopicCommands, 0, 0)
	if err := g.wait(context.Background(), false); err == nil {
		t.Fatal("durable with no file to sync")
	}
}

// TestGroupSyncManyFilesSyncTheFileSystem: a round with more than
// perFileMax written partitions syncs the file system once instead of each
// file; with at most perFileMax it syncs each file.
func TestGroupSyncManyFilesSyncTheFileSystem(t *testing.T) {
	root := t.TempDir()
	var tps []topicPartition
	for p := range int32(perFileMax + 1) {
		// Events: a command's write starts a round by itself, which could
		// split the writes below across rounds.
		tp := topicPartition{TopicEvents, p}
		writeSegment(t, root, tp, 0, 10)
		tps = append(tps, tp)
	}
	files := &fileLog{}
	var fsSyncs atomic.Int64
	g, err := newGroupSync(root, 1<<20, files.sync, func(*os.File) error { fsSyncs.Add(1); return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for _, tc := range []struct {
		written       []topicPartition
		files, fsyncs int
	}{
		{tps[:perFileMax], perFileMax, 0},
		{tps, 0, 1},
	} {
		before := fsSyncs.Load()
		for _, tp := range tc.written {
			g.written(tp.topic, tp.partition, 0)
		}
		if err := g.wait(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		if got, fs := len(files.take()), int(fsSyncs.Load()-before); got != tc.files || fs != tc.fsyncs {
			t.Errorf("%d written: %d files and %d file-system syncs, want %d and %d", len(tc.written), got, fs, tc.files, tc.fsyncs)
		}
	}
}

// TestGroupSyncWaitAt: a command's write starts a round by itself; waitAt
// for a record a finished round covered returns without another sync, and
// waitAt for one written while a sync is held returns only after a round
// covering it finishes.
func TestGroupSyncWaitAt(t *testing.T) {
	root := t.TempDir()
	writeSegment(t, root, testTP, 0, 10)
	gate := make(chan struct{}, 100)
	var syncs atomic.Int64
	g, err := newGroupSync(root, 1<<20, func(*os.File) error { <-gate; syncs.Add(1); return nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(gate); g.close() }()
	ctx := context.Background()

	g.written(testTP.topic, testTP.partition, 4) // starts a round, held at the gate
	done := make(chan error, 1)
	go func() { done <- g.waitAt(ctx, testTP.partition, 4) }()
	select {
	case err := <-done:
		t.Fatalf("waitAt returned (%v) before its sync finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n := syncs.Load()
	// Covered: no further sync, even though the gate holds any.
	if err := g.waitAt(ctx, testTP.partition, 3); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() != n {
		t.Fatal("waitAt synced again for a covered record")
	}
	// A later record is not covered by that round.
	g.written(testTP.topic, testTP.partition, 9)
	go func() { done <- g.waitAt(ctx, testTP.partition, 9) }()
	select {
	case err := <-done:
		t.Fatalf("waitAt for a later record returned (%v) without its sync", err)
	case <-time.After(50 * time.Millisecond):
	}
	gate <- struct{}{}
	gate <- struct{}{} // in case a second round was asked for
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestGroupSyncFollowsADeletedSegment: when retention deletes a
// partition's active segment and the next record starts a new file, the
// round syncs the new file, not only the deleted one it had open.
func TestGroupSyncFollowsADeletedSegment(t *testing.T) {
	root := t.TempDir()
	ev := topicPartition{TopicEvents, 0}
	writeSegment(t, root, ev, 0, 10)
	l := &fileLog{}
	g, err := newGroupSync(root, 1<<20, l.sync, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	ctx := context.Background()
	g.written(ev.topic, ev.partition, 0)
	if err := g.wait(ctx, true); err != nil {
		t.Fatal(err)
	}
	l.take()
	if err := os.Remove(filepath.Join(partitionDir(root, ev), segmentName(0))); err != nil {
		t.Fatal(err)
	}
	writeSegment(t, root, ev, 7, 10)
	g.written(ev.topic, ev.partition, 7)
	if err := g.wait(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := l.take(); !slices.Contains(got, "bursar.events-0/7.dat") {
		t.Fatalf("synced %v after the active segment was deleted; want the new 7.dat", got)
	}
	// The next round uses the new file.
	g.written(ev.topic, ev.partition, 8)
	if err := g.wait(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := l.take(); !slices.Equal(got, []string{"bursar.events-0/7.dat"}) {
		t.Fatalf("then synced %v", got)
	}
}
