package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRetriedFlushLeavesOutWhatCommitted: a flush retried after an error
// that may have been a lost COMMIT answer, with more buffers joined since,
// writes only the buffers PostgreSQL does not hold yet (their rows would
// break the primary keys and stop the engine) and still marks the
// partition at its newest offset.
func TestRetriedFlushLeavesOutWhatCommitted(t *testing.T) {
	ctx := context.Background()
	s, err := storage.Open(ctx, storage.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	epoch, _, err := s.Acquire(ctx, 0, "n")
	if err != nil {
		t.Fatal(err)
	}
	// The first buffer's commit landed: the partition stands at 5.
	if err := s.Flush(ctx, &storage.Batch{Marks: []storage.PartitionMark{{Partition: 0, Epoch: epoch, NextOffset: 5}}}); err != nil {
		t.Fatal(err)
	}
	first, second := newBuffer(5), newBuffer(9)
	first.rows = make([]storage.TxRow, 3)
	second.rows = make([]storage.TxRow, 2)
	work := []taken{{p: &partition{id: 0, epoch: epoch}, bufs: []*buffer{first, second}}}
	e := &Engine{store: s}
	if err := e.findCommitted(ctx, work); err != nil {
		t.Fatal(err)
	}
	if work[0].committed != 1 {
		t.Fatalf("%d buffers found committed, want 1", work[0].committed)
	}
	b := buildBatch(work)
	if len(b.Rows) != 2 || len(b.Marks) != 1 || b.Marks[0].NextOffset != 9 {
		t.Fatalf("batch: %d rows, marks %+v; want the second buffer's 2 rows and a mark at 9", len(b.Rows), b.Marks)
	}
	// Under another epoch nothing counts as committed: that is a fence.
	work[0].p.epoch++
	if err := e.findCommitted(ctx, work); err != nil || work[0].committed != 0 {
		t.Fatalf("another epoch: committed %d, %v; want 0", work[0].committed, err)
	}
}

func TestReemittable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unknown server error (kfake's failed file write)", kerr.UnknownServerError, true},
		{"storage error", kerr.KafkaStorageError, true},
		{"retriable Kafka error", kerr.NotEnoughReplicas, true},
		{"wrapped", fmt.Errorf("produce: %w", kerr.UnknownServerError), true},
		{"delivery timeout", kgo.ErrRecordTimeout, true},
		{"retries exhausted", kgo.ErrRecordRetries, true},
		{"record too large", kerr.MessageTooLarge, false},
		{"not authorized", kerr.TopicAuthorizationFailed, false},
		{"client closed", kgo.ErrClientClosed, false},
		{"canceled", context.Canceled, false},
		{"anything else", errors.New("boom"), false},
	} {
		if got := reemittable(tc.err); got != tc.want {
			t.Errorf("%s: reemittable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
