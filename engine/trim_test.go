package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
)

// startOffset is the first offset partition p of bursar.commands still holds.
func (r *rig) startOffset(p int32) int64 {
	r.t.Helper()
	lo, err := kadm.NewClient(r.client).ListStartOffsets(context.Background(), kafkalog.TopicCommands)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	o, ok := lo.Lookup(kafkalog.TopicCommands, p)
	if !ok {
		r.t.Fatalf("no start offset for partition %d", p)
	}
	return o.Offset
}

// waitStart waits until partition p's log starts at want.
func (r *rig) waitStart(p int32, want int64) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.startOffset(p)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("partition %d starts at %d, want %d", p, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) endOffset(p int32) int64 {
	r.t.Helper()
	ends, err := kafkalog.EndOffsets(context.Background(), r.client)
	if err != nil {
		r.t.Fatal(err)
	}
	return ends[p]
}

// trimAll makes the engine trim every committed record at once: every
// record is old enough, and trims run often.
func trimAll(c *engine.Config) {
	c.CommandsRetention = time.Millisecond
	c.TrimInterval = 20 * time.Millisecond
}

// creditsTrimmed opens an account in partition p, credits it n times by
// 10, waits for the flush and for the trim (which keeps the last committed
// record), and returns the account and the partition's end offset.
func (r *rig) creditsTrimmed(p int32, n int) (uuid.UUID, int64) {
	r.t.Helper()
	a := accountIn(p, r.slots)
	r.apply(openCmd(a))
	for i := range n {
		r.apply(money(ledger.KindCredit, a, 10, "c"+string(rune('a'+i))))
	}
	r.waitCommitted(r.t)
	end := r.endOffset(p)
	r.waitStart(p, end-1)
	return a, end
}

// TestTrimDeletesOnlyCommittedCommands: with a commands retention, the
// engine deletes old records from bursar.commands once PostgreSQL has
// them, never those it has not committed (they stay however old they
// are), and a restart after a trim rebuilds the accounts from PostgreSQL.
func TestTrimDeletesOnlyCommittedCommands(t *testing.T) {
	r := newRig(t)
	if err := r.eng.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.tweak = trimAll
	r.start()
	p := int32(2)
	a, committed := r.creditsTrimmed(p, 20)

	ctx := context.Background()
	release := r.holdFlushes(t)
	for i := range 5 {
		if res := r.apply(money(ledger.KindCredit, a, 1, "h"+string(rune('a'+i)))); res.Status != ledger.StatusCompleted {
			t.Fatalf("credit while flushes wait = %+v", res)
		}
	}
	end := r.endOffset(p)
	if end <= committed {
		t.Fatalf("end offset %d, want past %d", end, committed)
	}
	// Many trim rounds pass; the applied but uncommitted records stay.
	time.Sleep(300 * time.Millisecond)
	if got := r.startOffset(p); got != committed-1 {
		t.Fatalf("log starts at %d while PostgreSQL has up to %d", got, committed)
	}
	release()
	r.waitCommitted(t)
	r.waitStart(p, end-1)

	// A new engine starts at the committed offset, the log's start now,
	// and knows the account from PostgreSQL.
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.start()
	if res := r.apply(money(ledger.KindCredit, a, 1, "after")); res.Balance != 206 || res.Version != 27 {
		t.Fatalf("credit after a trim and a restart = %+v", res)
	}
	if res := r.apply(money(ledger.KindCredit, a, 10, "ca")); !res.Replayed || res.Balance != 10 {
		t.Fatalf("retry of a trimmed command = %+v", res)
	}
}

// TestTrimSurvivesBrokerRestart: the embedded broker on disk, trimmed as
// far as the engine may go while the partition is idle, then restarted on
// the same directory: the partition still ends where it did (the trim keeps
// its last committed record, so the broker can rebuild it from its files),
// and new commands continue after it.
func TestTrimSurvivesBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	broker, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := broker.Addrs()[0]
	t.Cleanup(func() { broker.Close() }) // after the rig's cleanups, which stop the engine
	r := newRigOn(t, []string{addr}, parts, trimAll)
	p := int32(3)
	a, end := r.creditsTrimmed(p, 5)

	ctx := context.Background()
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	broker.Close()
	if broker, err = kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: dir, Listen: addr}); err != nil {
		t.Fatal(err)
	}
	if got := r.endOffset(p); got != end {
		t.Fatalf("after a restart the partition ends at %d, want %d", got, end)
	}
	r.start()
	if res := r.apply(money(ledger.KindCredit, a, 1, "after")); res.Status != ledger.StatusCompleted || res.Balance != 51 {
		t.Fatalf("credit after a trim and a broker restart = %+v", res)
	}
	if got := r.endOffset(p); got != end+1 {
		t.Fatalf("the credit went to offset %d, want %d", got-1, end)
	}
}

// TestAcquireRefusesALogBehindPostgreSQL: a partition whose log ends before
// the offset PostgreSQL has applied (the log was reset or lost) is not
// acquired: consuming it would skip the commands appended up to there.
func TestAcquireRefusesALogBehindPostgreSQL(t *testing.T) {
	r := newRig(t)
	p := int32(1)
	r.apply(openCmd(accountIn(p, r.slots)))
	r.waitCommitted(t)
	ctx := context.Background()
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE partitions SET next_offset = next_offset + 100 WHERE partition = $1`, p); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Config{NodeID: "test", Partitions: parts}, testLogger(), r.store, r.newClient(), r.sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Stop(ctx) //nolint:errcheck // the test's outcome is Start's error
	err = eng.Start(ctx, []int32{p})
	if err == nil || !strings.Contains(err.Error(), "lost records") {
		t.Fatalf("Start = %v, want a refusal naming the lost records", err)
	}
	// Fatal too, so a node whose coordinator acquires stops instead of
	// retrying for ever.
	select {
	case ferr := <-eng.Fatal():
		if !strings.Contains(ferr.Error(), "lost records") {
			t.Fatalf("fatal error %v", ferr)
		}
	default:
		t.Fatal("a log behind PostgreSQL did not stop the engine")
	}
}
