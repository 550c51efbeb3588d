package ingress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bursar/bursar/engine/kafkalog"
	"github.com/bursar/bursar/engine/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// echoEngine answers every command appended to bursar.commands as
// completed, through the replies, as an owning engine would; and serves
// balance reads of any account.
type echoEngine struct{ replies *Replies }

func (echoEngine) Ready() bool { return true }
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
			e.replies.Deliver(c.ReplyNode, c.ReplySeq, &ledger.Result{
				AccountID: c.AccountID, TxID: c.TxID, Kind: c.Kind, Status: ledger.StatusCompleted,
				Amount: c.Amount, Currency: c.Currency, Balance: c.Amount, Version: 2, TimestampUs: c.TimestampUs,
			})
		})
	}
}

// TestAnswersWaitForDurableLog: with Config.Durable (the embedded broker's
// group sync), a write is answered only once it returns, and a failed wait
// is answered 503 UNAVAILABLE with the retry advice, for writes and
// balance reads alike; a command a client was told about is never lost to
// a power cut.
func TestAnswersWaitForDurableLog(t *testing.T) {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	producer, err := kgo.NewClient(kafkalog.ClientConfig{Brokers: broker.ListenAddrs()}.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, _, err := kafkalog.EnsureTopics(ctx, producer, kafkalog.Topics{Partitions: 8, EventPartitions: 8, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	replies := NewReplies("n/1", 10)
	eng := echoEngine{replies: replies}
	go eng.run(ctx, t, broker.ListenAddrs())

	gate := make(chan struct{})
	var fail atomic.Bool
	var waits atomic.Int64
	srv, err := New(Config{Partitions: 8, WaitTimeout: 5 * time.Second, Durable: func(ctx context.Context) error {
		waits.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		if fail.Load() {
			return errors.New("syncfs: input/output error")
		}
		return nil
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)), producer, replies, eng, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := serveTestAPI(t, srv)
	credit := testReq{method: "POST", path: "/api/v1/transactions/credit", body: moneyJSON(`"1.00"`, "USD")}

	answered := make(chan testResp, 1)
	go func() { answered <- api.do(t, credit) }()
	select {
	case r := <-answered:
		t.Fatalf("answered %d %s before the log was durable", r.status, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	if waits.Load() == 0 {
		t.Fatal("the answer did not wait for durability")
	}
	close(gate)
	if r := <-answered; r.status != 201 {
		t.Fatalf("credit = %d %s", r.status, r.body)
	}
	if r := api.do(t, testReq{method: "GET", path: "/api/v1/accounts/" + uuid.NewString() + "/balance"}); r.status != 200 {
		t.Fatalf("balance = %d %s", r.status, r.body)
	}

	fail.Store(true)
	assertError(t, api.do(t, credit), ledger.CodeUnavailable)
	assertError(t, api.do(t, testReq{method: "GET", path: "/api/v1/accounts/" + uuid.NewString() + "/balance"}), ledger.CodeUnavailable)
}
