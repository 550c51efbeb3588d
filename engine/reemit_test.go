package engine_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// refuseCausedIn makes the broker answer every produce request that
// carries caused records of bursar.events partition only (-1: any; legs
// travel in the same requests) with code while refusing is set:
// UNKNOWN_SERVER_ERROR is what the embedded broker answers when a write
// of its files fails (a full disk). It returns how many requests it
// refused. Produce requests name topics by ID from version 13 on:
// eventsID holds bursar.events' once the topic exists.
func refuseCausedIn(broker *kfake.Cluster, refusing *atomic.Bool, eventsID *atomic.Value, code int16, only int32) *atomic.Int64 {
	var refused atomic.Int64
	broker.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		broker.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if !refusing.Load() {
			return nil, nil, false
		}
		events := false
		id, _ := eventsID.Load().([16]byte)
		for _, tp := range pr.Topics {
			if tp.Topic != kafkalog.TopicEvents && tp.TopicID != id {
				continue
			}
			for _, p := range tp.Partitions {
				events = events || only < 0 || p.Partition == only
			}
		}
		if !events {
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return &refused
}

// refusingRig is a rig on a kfake cluster of brokers brokers whose
// produce requests carrying records of bursar.events partition only (-1:
// any) are answered with code while refusing is set; refused counts them,
// events is bursar.events as the broker describes it.
type refusingRig struct {
	*rig
	refusing *atomic.Bool
	refused  *atomic.Int64
	events   kadm.TopicDetail
}

func newRefusingRig(t *testing.T, brokers int, code int16, only int32) *refusingRig {
	t.Helper()
	broker, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	var (
		refusing atomic.Bool
		eventsID atomic.Value
	)
	refused := refuseCausedIn(broker, &refusing, &eventsID, code, only)
	r := newRigOn(t, broker.ListenAddrs(), parts, nil)
	adm := kadm.NewClient(r.client)
	if brokers > 1 {
		// kfake picks leaders at random; spread the events partitions over
		// the brokers so that a test can count on two leaders.
		for p := range int32(parts) {
			if err := broker.MoveTopicPartition(kafkalog.TopicEvents, p, p%int32(brokers)); err != nil {
				t.Fatal(err)
			}
		}
	}
	topics, err := adm.ListTopics(context.Background(), kafkalog.TopicEvents)
	if err != nil || topics[kafkalog.TopicEvents].Err != nil {
		t.Fatalf("listing %s: %v %v", kafkalog.TopicEvents, err, topics)
	}
	eventsID.Store([16]byte(topics[kafkalog.TopicEvents].ID))
	// The client may answer from metadata it cached before the moves; the
	// broker itself knows the leaders.
	for p, pd := range topics[kafkalog.TopicEvents].Partitions {
		pd.Leader = broker.LeaderFor(kafkalog.TopicEvents, p)
		topics[kafkalog.TopicEvents].Partitions[p] = pd
	}
	return &refusingRig{rig: r, refusing: &refusing, refused: refused, events: topics[kafkalog.TopicEvents]}
}

// TestRefusedCausedRecordsAreProducedAgain: while the log refuses the
// records applied commands caused, the engine does not stop: commands are
// applied and answered, balances are read from memory, and nothing
// commits past them (rule 3). Once the log takes records again, they are
// produced again and everything commits; the audit is clean and the
// balances are exact.
func TestRefusedCausedRecordsAreProducedAgain(t *testing.T) {
	rr := newRefusingRig(t, 1, kerr.UnknownServerError.Code, -1)
	r, refusing, refused := rr.rig, rr.refusing, rr.refused
	ctx := context.Background()
	a, b := accountIn(0, r.slots), accountIn(2, r.slots)
	r.apply(openCmd(a))
	r.apply(openCmd(b))
	r.apply(money(ledger.KindCredit, a, 1000, "fund"))
	r.waitCommitted(t)
	before, err := r.store.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}

	refusing.Store(true)
	for i, key := range []string{"c1", "c2", "c3"} {
		if res := r.apply(money(ledger.KindCredit, a, 10, key)); res.Status != ledger.StatusCompleted {
			t.Fatalf("credit %d while the log refuses caused records: %+v", i, res)
		}
	}
	// A transfer's credit leg is a caused record too: it waits.
	seq := r.produce(transferCmd(a, b, 100, "t1"))
	deadline := time.Now().Add(10 * time.Second)
	for refused.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the broker refused %d produce requests; the test wants 3", refused.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.waitBalance(a, 930) // read from memory: the debit leg is applied

	if r.eng.Stopped() {
		t.Fatal("the engine stopped because the log refused caused records")
	}
	after, err := r.store.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if after[i].Partition == 0 && after[i].NextOffset != before[i].NextOffset {
			t.Fatalf("partition 0 committed past commands whose caused records were refused: %d → %d", before[i].NextOffset, after[i].NextOffset)
		}
	}

	refusing.Store(false)
	if res := r.sink.wait(t, seq); res.Status != ledger.StatusCompleted || res.Kind != ledger.KindTransferCredit {
		t.Fatalf("transfer once the log takes records: %+v", res)
	}
	r.waitBalance(b, 100)
	r.waitCommitted(t)
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := r.store.Audit(ctx, nil)
	if err != nil || !rep.Clean {
		t.Fatalf("audit: %v %+v", err, rep)
	}
	acc, err := r.store.Account(ctx, a)
	if err != nil || acc.Balance != 930 {
		t.Fatalf("stored balance of the source: %d %v, want 930", acc.Balance, err)
	}
}

// TestRejectedCausedRecordsRestartThePartition: a caused record the log
// rejects for good (here MESSAGE_TOO_LARGE) no longer stops the engine:
// the partition alone is dropped, its unflushed effects forgotten and its
// offset left before the commands; acquired again after its backoff, it
// replays them and produces the records again. Nothing is lost or applied
// twice.
func TestRejectedCausedRecordsRestartThePartition(t *testing.T) {
	rr := newRefusingRig(t, 1, kerr.MessageTooLarge.Code, -1)
	r, refusing, refused := rr.rig, rr.refusing, rr.refused
	ctx := context.Background()
	a := accountIn(1, r.slots)
	r.apply(openCmd(a))
	r.apply(money(ledger.KindCredit, a, 1000, "fund"))
	r.waitCommitted(t)

	refusing.Store(true)
	r.apply(money(ledger.KindCredit, a, 10, "rejected"))
	deadline := time.Now().Add(10 * time.Second)
	for slices.Contains(r.eng.Owned(), 1) {
		if time.Now().After(deadline) {
			t.Fatalf("partition 1 still owned after %d rejected produce requests", refused.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	refusing.Store(false)
	if r.eng.Stopped() {
		t.Fatal("the engine stopped on a rejected caused record")
	}
	// The coordinator acquires it again; here the test does, once the
	// backoff has passed.
	deadline = time.Now().Add(10 * time.Second)
	for !slices.Contains(r.eng.Owned(), 1) {
		if err := r.eng.Acquire(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("partition 1 not acquired again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.apply(money(ledger.KindCredit, a, 5, "after"))
	r.waitBalance(a, 1015)
	r.waitCommitted(t)
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := r.store.Audit(ctx, nil)
	if err != nil || !rep.Clean {
		t.Fatalf("audit: %v %+v", err, rep)
	}
	if acc, err := r.store.Account(ctx, a); err != nil || acc.Balance != 1015 {
		t.Fatalf("stored balance %d %v, want 1015", acc.Balance, err)
	}
}

// TestOneStuckPartitionDoesNotHoldTheOthers: while the log refuses the
// records one partition's commands caused, the other partitions' flushes
// commit as usual (one flush serves every partition; it leaves the stuck
// one for later instead of waiting for it).
func TestOneStuckPartitionDoesNotHoldTheOthers(t *testing.T) {
	// Two brokers: a produce request goes to one partition's leader, so the
	// refused partition's requests are not the others'.
	rr := newRefusingRig(t, 2, kerr.UnknownServerError.Code, 0)
	r, refusing, detail := rr.rig, rr.refusing, rr.events
	ctx := context.Background()
	other := int32(-1)
	for p, pd := range detail.Partitions {
		if p != 0 && pd.Leader != detail.Partitions[0].Leader {
			other = p
		}
	}
	if other < 0 {
		t.Fatalf("every events partition has the same leader: %+v", detail.Partitions)
	}
	stuck, free := accountIn(0, r.slots), accountIn(other, r.slots)
	r.apply(openCmd(stuck))
	r.apply(openCmd(free))
	r.waitCommitted(t)
	refusing.Store(true)
	r.apply(money(ledger.KindCredit, stuck, 10, "s1"))
	for i := range 3 {
		r.apply(money(ledger.KindCredit, free, 10, "f"+strconv.Itoa(i)))
	}
	// The free partition commits everything it applied; the stuck one
	// stays before its credit.
	ends, err := kafkalog.EndOffsets(ctx, r.client)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := r.store.Partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		committed := map[int32]int64{}
		for _, row := range rows {
			committed[row.Partition] = row.NextOffset
		}
		if committed[0] >= ends[0] {
			t.Fatalf("partition 0 committed past a command whose records the log refused: %d of %d", committed[0], ends[0])
		}
		if committed[other] >= ends[other] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d committed %d of %d while partition 0 is stuck", other, committed[other], ends[other])
		}
		time.Sleep(20 * time.Millisecond)
	}
	refusing.Store(false)
	r.waitCommitted(t)
	if err := r.eng.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := r.store.Audit(ctx, nil); err != nil || !rep.Clean {
		t.Fatalf("audit: %v %+v", err, rep)
	}
}
