package ingress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// echoEngine answers every command appended to bursar.commands as
// completed, through the replies, as an owning engine would; and serves
// balance reads of any account. A command whose reference_id is "silent"
// gets no answer, one whose reference_id is "late" is answered after late.
type echoEngine struct {
	replies *Replies
	late    time.Duration
}

func (echoEngine) Ready() bool                { return true }
func (echoEngine) WaitsForStorage(int32) bool { return false }
func (echoEngine) Account(_ context.Context, _ int32, id uuid.UUID) (ledger.Account, error) {
	return ledger.Account{ID: id, Exists: true, Currency: "USD", Balance: 100, Version: 1}, nil
}

func (e echoEngine) run(ctx context.Context, t *testing.T, addrs []string) {
	cl, err := kgo.NewClient(append(kafkalog.ClientConfig{Brokers: addrs}.Options(),
		kgo.ConsumeTopics(kafkalog.TopicCommands), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			c, err := ledger.DecodeCommand(r.Value)
			if err != nil {
				t.Error(err)
				return
			}
			res := &ledger.Result{
				AccountID: c.AccountID, TxID: c.TxID, Kind: c.Kind, Status: ledger.StatusCompleted,
				Amount: c.Amount, Currency: c.Currency, Balance: c.Amount, Version: 2, TimestampUs: c.TimestampUs,
			}
			switch c.ReferenceID {
			case "silent":
			case "late":
				time.AfterFunc(e.late, func() { e.replies.Deliver(c.ReplyNode, c.ReplySeq, res) })
			default:
				e.replies.Deliver(c.ReplyNode, c.ReplySeq, res)
			}
		})
	}
}

// newTestBroker starts a Kafka-protocol broker (kfake over TCP) with the
// topics of 8 partitions, and returns its addresses and a producer.
func newTestBroker(t *testing.T) ([]string, *kgo.Client) {
	t.Helper()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	producer, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: broker.ListenAddrs()}.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	if _, _, err := kafkalog.EnsureTopics(context.Background(), producer, kafkalog.Topics{Partitions: 8, EventPartitions: 8, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	return broker.ListenAddrs(), producer
}

// durableRig is an ingress over a real Kafka-protocol broker, an
// echoEngine, and a Durable hook held by a gate.
type durableRig struct {
	api   *testAPI
	gate  chan struct{}
	fail  atomic.Bool
	waits atomic.Int64
	delay time.Duration // each Durable call takes this long once the gate is open
}

func newDurableRig(t *testing.T, wait, late time.Duration) *durableRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addrs, producer := newTestBroker(t)
	replies := NewReplies("n/1", 10)
	eng := echoEngine{replies: replies, late: late}
	go eng.run(ctx, t, addrs)
	d := &durableRig{gate: make(chan struct{})}
	srv, err := New(Config{Partitions: 8, WaitTimeout: wait, Durable: func(ctx context.Context) error {
		d.waits.Add(1)
		select {
		case <-d.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		time.Sleep(d.delay)
		if d.fail.Load() {
			return errors.New("syncfs: input/output error")
		}
		return nil
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)), producer, replies, eng, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.api = serveTestAPI(t, srv)
	return d
}

// heldUntilOpen sends r while the gate is closed, waits until the request
// is waiting for durability, checks that no answer comes meanwhile, then
// opens the gate and returns the answer.
func (d *durableRig) heldUntilOpen(t *testing.T, r testReq) testResp {
	t.Helper()
	answered := make(chan testResp, 1)
	go func() { answered <- d.api.do(t, r) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.waits.Load() == 0 {
		select {
		case got := <-answered:
			t.Fatalf("answered %d %s without waiting for durability", got.status, got.body)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never waited for durability")
		}
	}
	select {
	case got := <-answered:
		t.Fatalf("answered %d %s before the log was durable", got.status, got.body)
	case <-time.After(100 * time.Millisecond):
	}
	close(d.gate)
	return <-answered
}

func creditWithRef(ref string) testReq {
	return testReq{method: "POST", path: "/api/v1/transactions/credit",
		body: `{"account_id":"` + testAccount + `","amount":"1.00","currency":"USD","reference_id":"` + ref + `"}`}
}

// TestAnswersWaitForDurableLog: with Config.Durable (the embedded broker's
// group sync), a write is answered only once it returns, and a failed wait
// is answered 503 UNAVAILABLE with the retry advice, for writes and
// balance reads alike: nothing a client was told can be lost to a power
// cut.
func TestAnswersWaitForDurableLog(t *testing.T) {
	d := newDurableRig(t, 5*time.Second, 0)
	if r := d.heldUntilOpen(t, creditWithRef("r1")); r.status != 201 {
		t.Fatalf("credit = %d %s", r.status, r.body)
	}
	balance := testReq{method: "GET", path: "/api/v1/accounts/" + uuid.NewString() + "/balance"}
	if r := d.api.do(t, balance); r.status != 200 {
		t.Fatalf("balance = %d %s", r.status, r.body)
	}
	d.fail.Store(true)
	assertError(t, d.api.do(t, creditWithRef("r2")), ledger.CodeUnavailable)
	assertError(t, d.api.do(t, balance), ledger.CodeUnavailable)
}

// TestAcceptedWaitsForDurableLog: a 202 Accepted (appended, no answer
// within the wait) promises the command exists, so it waits for the log
// to be on disk too, and becomes 503 when that fails.
func TestAcceptedWaitsForDurableLog(t *testing.T) {
	d := newDurableRig(t, time.Second, 0)
	if r := d.heldUntilOpen(t, creditWithRef("silent")); r.status != 202 {
		t.Fatalf("unanswered credit = %d %s", r.status, r.body)
	}
	d.fail.Store(true)
	assertError(t, d.api.do(t, creditWithRef("silent")), ledger.CodeUnavailable)
}

// TestLateAnswerGetsItsOwnDurableWait: an answer arriving near the end of
// the request's wait still gets a full wait for the sync, rather than a
// 503 a client might retry without a key (a second credit).
func TestLateAnswerGetsItsOwnDurableWait(t *testing.T) {
	d := newDurableRig(t, time.Second, 700*time.Millisecond)
	d.delay = 500 * time.Millisecond // ends past the request's deadline
	close(d.gate)
	if r := d.api.do(t, creditWithRef("late")); r.status != 201 {
		t.Fatalf("late answer = %d %s", r.status, r.body)
	}
}
