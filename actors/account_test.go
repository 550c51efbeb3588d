package actors

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/engine/ledger"
	"github.com/google/uuid"
)

type replies struct {
	mu  sync.Mutex
	got []ledger.Result
}

func (r *replies) Deliver(_ string, _ uint64, res *ledger.Result) {
	r.mu.Lock()
	r.got = append(r.got, *res)
	r.mu.Unlock()
}

// lookup answers from a fixed map, failing the first failures calls.
type lookup struct {
	mu       sync.Mutex
	calls    int
	failures int
	found    map[string]ledger.Result
}

func (l *lookup) LookupKey(_ context.Context, _ uuid.UUID, key string, _ int64) (uint64, ledger.Result, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls <= l.failures {
		return 0, ledger.Result{}, false, errors.New("storage down")
	}
	r, ok := l.found[key]
	return 7, r, ok, nil
}

func applyOne(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, c *ledger.Command, reply bool) Applied {
	t.Helper()
	var out Applied
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmd: c, Out: &out, Done: &wg, Reply: reply})
	wg.Wait()
	return out
}

func TestAccountActorAppliesAndAnswers(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	rep := &replies{}
	cfg := &Config{Lookup: &lookup{}, Replies: rep, Ctx: context.Background()}
	id := uuid.New()
	pid := sys.Root.Spawn(Props(cfg, &ledger.Account{ID: id, Keys: ledger.NewKeyIndex(16, true)}))

	open := &ledger.Command{Kind: ledger.KindOpen, TxID: uuid.New(), AccountID: id, Currency: "USD", ReplyNode: "n/1", ReplySeq: 1}
	if out := applyOne(t, sys, pid, open, true); out.Err != nil || out.Account == nil || !out.Account.Exists {
		t.Fatalf("open: %+v", out)
	}
	credit := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 5, Currency: "USD", ReplyNode: "n/1", ReplySeq: 2}
	out := applyOne(t, sys, pid, credit, true)
	if out.Effect.Result.Balance != 5 || out.Account.Balance != 5 {
		t.Fatalf("credit: %+v", out)
	}
	// A transfer's pending debit leg is not the answer; its credit leg is.
	tr := &ledger.Command{Kind: ledger.KindTransferDebit, TxID: uuid.New(), AccountID: id, Counterparty: uuid.New(), Amount: 2, Currency: "USD", ReplyNode: "n/1", ReplySeq: 3}
	if out := applyOne(t, sys, pid, tr, true); out.Effect.Emit == nil {
		t.Fatalf("transfer debit emitted nothing: %+v", out)
	}
	res, err := sys.Root.RequestFuture(pid, &Read{}, time.Second).Result()
	if err != nil || res.(ledger.Account).Balance != 3 {
		t.Fatalf("read = %+v %v", res, err)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if len(rep.got) != 2 || rep.got[1].Balance != 5 {
		t.Fatalf("answers = %+v, want the open and the credit only", rep.got)
	}
}

func TestIncompleteIndexLooksUpAndRetries(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	id := uuid.New()
	prior := ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, AccountID: id, Status: ledger.StatusCompleted, Amount: 9, Currency: "USD", Balance: 9, TimestampUs: time.Now().UnixMicro()}
	lk := &lookup{failures: 2, found: map[string]ledger.Result{"old-key": prior}}
	var lookupErrors int
	cfg := &Config{Lookup: lk, Replies: &replies{}, Ctx: context.Background(), OnLookupError: func(error) { lookupErrors++ }}
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Balance: 9, Keys: ledger.NewKeyIndex(16, false)}
	pid := sys.Root.Spawn(Props(cfg, acc))
	c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 9, Currency: "USD", IdemKey: "old-key", TimestampUs: time.Now().UnixMicro()}
	c.RequestHash = 7 // as stored
	out := applyOne(t, sys, pid, c, false)
	if out.Err != nil || !out.Effect.Result.Replayed || out.Effect.Result.TxID != prior.TxID {
		t.Fatalf("key found in storage was not replayed: %+v", out)
	}
	if lk.calls != 3 || lookupErrors != 2 {
		t.Fatalf("lookups %d (errors %d), want 3 with 2 failures retried", lk.calls, lookupErrors)
	}
}
