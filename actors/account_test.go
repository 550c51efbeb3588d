package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// lookup answers from a fixed map, failing the first failures calls.
type lookup struct {
	mu       sync.Mutex
	calls    int
	failures int
	found    map[string]ledger.Result
	asked    [][]string // the keys of each call
}

func (l *lookup) LookupKeys(_ context.Context, _ uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.asked = append(l.asked, keys)
	if l.calls <= l.failures {
		return nil, errors.New("storage down")
	}
	out := map[string]ledger.KeyRecord{}
	for _, k := range keys {
		if r, ok := l.found[k]; ok && r.TimestampUs >= sinceUs {
			out[k] = ledger.KeyRecord{Hash: 7, Result: r}
		}
	}
	return out, nil
}

func applyOne(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, c *ledger.Command) Applied {
	t.Helper()
	outs := make([]Applied, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmds: []*ledger.Command{c}, Outs: outs, Idx: []int32{0}, Done: &wg})
	wg.Wait()
	return outs[0]
}

func TestAccountActorAppliesAndAnswers(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	cfg := &Config{Lookup: &lookup{}, Ctx: context.Background()}
	id := uuid.New()
	pid := sys.Root.Spawn(Props(cfg, &ledger.Account{ID: id, Keys: ledger.NewKeyIndex(16, true)}))

	open := &ledger.Command{Kind: ledger.KindOpen, TxID: uuid.New(), AccountID: id, Currency: "USD", ReplyNode: "n/1", ReplySeq: 1}
	if out := applyOne(t, sys, pid, open); out.Err != nil || out.Account == nil || !out.Account.Exists || !Answers(open, &out.Effect.Result) {
		t.Fatalf("open: %+v", out)
	}
	credit := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 5, Currency: "USD", ReplyNode: "n/1", ReplySeq: 2}
	out := applyOne(t, sys, pid, credit)
	if out.Effect.Result.Balance != 5 || out.Account.Balance != 5 || !Answers(credit, &out.Effect.Result) {
		t.Fatalf("credit: %+v", out)
	}
	// A transfer's pending debit leg is not the answer; its credit leg is.
	tr := &ledger.Command{Kind: ledger.KindTransferDebit, TxID: uuid.New(), AccountID: id, Counterparty: uuid.New(), Amount: 2, Currency: "USD", ReplyNode: "n/1", ReplySeq: 3}
	if out := applyOne(t, sys, pid, tr); out.Effect.Emit == nil || Answers(tr, &out.Effect.Result) {
		t.Fatalf("transfer debit: %+v (emitted nothing, or answers)", out)
	}
	res, err := sys.Root.RequestFuture(pid, &Read{}, time.Second).Result()
	if err != nil || res.(ledger.Account).Balance != 3 {
		t.Fatalf("read = %+v %v", res, err)
	}
}

func TestIncompleteIndexLooksUpAndRetries(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	id := uuid.New()
	prior := ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, AccountID: id, Status: ledger.StatusCompleted, Amount: 9, Currency: "USD", Balance: 9, TimestampUs: time.Now().UnixMicro()}
	lk := &lookup{failures: 2, found: map[string]ledger.Result{"old-key": prior}}
	var lookupErrors int
	cfg := &Config{Lookup: lk, Ctx: context.Background(), OnLookupError: func(error) { lookupErrors++ }}
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Balance: 9, Keys: ledger.NewKeyIndex(16, false)}
	pid := sys.Root.Spawn(Props(cfg, acc))
	c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 9, Currency: "USD", IdemKey: "old-key", TimestampUs: time.Now().UnixMicro()}
	c.RequestHash = 7 // as stored
	out := applyOne(t, sys, pid, c)
	if out.Err != nil || !out.Effect.Result.Replayed || out.Effect.Result.TxID != prior.TxID {
		t.Fatalf("key found in storage was not replayed: %+v", out)
	}
	if lk.calls != 3 || lookupErrors != 2 {
		t.Fatalf("lookups %d (errors %d), want 3 with 2 failures retried", lk.calls, lookupErrors)
	}
}

// TestApplyMessageOfManyCommands: one message carries an account's
// commands from a shared batch; they apply in Idx order, each outcome
// lands at its own position (other positions untouched), the account copy
// rides on the last command that changed it, and each final outcome is
// answered.
func TestApplyMessageOfManyCommands(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	cfg := &Config{Lookup: &lookup{}, Ctx: context.Background()}
	id := uuid.New()
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Keys: ledger.NewKeyIndex(16, true)}
	pid := sys.Root.Spawn(Props(cfg, acc))
	other := uuid.New()
	cmd := func(kind ledger.Kind, account uuid.UUID, amount int64, seq uint64) *ledger.Command {
		return &ledger.Command{Kind: kind, TxID: uuid.New(), AccountID: account, Amount: amount, Currency: "USD",
			ReplyNode: "n/1", ReplySeq: seq, IdemKey: "k" + uuid.NewString()}
	}
	cmds := []*ledger.Command{
		cmd(ledger.KindCredit, id, 10, 1),
		cmd(ledger.KindCredit, other, 99, 2), // another actor's position
		cmd(ledger.KindDebit, id, 4, 3),
		cmd(ledger.KindDebit, id, 50, 4), // refused, but recorded: the account's seq moves
	}
	outs := make([]Applied, len(cmds))
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmds: cmds, Outs: outs, Idx: []int32{0, 2, 3}, Done: &wg})
	wg.Wait()
	if outs[0].Effect.Result.Balance != 10 || outs[2].Effect.Result.Balance != 6 {
		t.Fatalf("balances %d, %d; want 10, 6", outs[0].Effect.Result.Balance, outs[2].Effect.Result.Balance)
	}
	if outs[3].Effect.Result.Code != ledger.CodeInsufficientFunds || outs[3].Effect.Result.Seq != 3 {
		t.Fatalf("overdraw: %+v", outs[3].Effect)
	}
	if outs[1] != (Applied{}) {
		t.Fatalf("another account's position was written: %+v", outs[1])
	}
	if outs[0].Account != nil || outs[2].Account != nil || outs[3].Account == nil || outs[3].Account.Balance != 6 || outs[3].Account.Seq != 3 {
		t.Fatalf("account copies: %v %v %v; want only the last change's (balance 6, seq 3)", outs[0].Account, outs[2].Account, outs[3].Account)
	}
	for _, i := range []int{0, 2, 3} {
		if !Answers(cmds[i], &outs[i].Effect.Result) {
			t.Fatalf("command %d is not answered: %+v", i, outs[i].Effect.Result)
		}
	}
}

// TestLookupFailureStopsTheMessage: when storage cannot answer a key
// lookup and the engine is stopping, that command and the ones after it
// are marked failed, not applied.
func TestLookupFailureStopsTheMessage(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the engine is stopping
	id := uuid.New()
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Keys: ledger.NewKeyIndex(16, false)}
	cfg := &Config{Lookup: &lookup{failures: 1 << 30}, Ctx: ctx}
	pid := sys.Root.Spawn(Props(cfg, acc))
	cmds := []*ledger.Command{
		{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 1, Currency: "USD", IdemKey: "a", TimestampUs: time.Now().UnixMicro()},
		{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 2, Currency: "USD", IdemKey: "b", TimestampUs: time.Now().UnixMicro()},
	}
	outs := make([]Applied, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmds: cmds, Outs: outs, Idx: []int32{0, 1}, Done: &wg})
	wg.Wait()
	for i, o := range outs {
		if o.Err == nil || o.Effect.Result.Status != 0 {
			t.Fatalf("command %d: %+v, want an error and nothing applied", i, o)
		}
	}
	if acc.Balance != 0 {
		t.Fatalf("balance %d after failed lookups", acc.Balance)
	}
}

// TestIncompleteIndexLooksUpABatchOnce: for one message, the keys the
// incomplete index cannot answer are looked up in a single call (each key
// once); a key found there replays, the others apply as new, and a key
// repeated within the message is a duplicate of its first use.
func TestIncompleteIndexLooksUpABatchOnce(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	id := uuid.New()
	now := time.Now().UnixMicro()
	prior := ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, AccountID: id, Status: ledger.StatusCompleted, Amount: 9, Currency: "USD", Balance: 9, TimestampUs: now}
	lk := &lookup{found: map[string]ledger.Result{"old": prior}}
	lookups := 0
	cfg := &Config{Lookup: lk, Ctx: context.Background(), OnLookup: func() { lookups++ }}
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Balance: 9, Keys: ledger.NewKeyIndex(16, false)}
	pid := sys.Root.Spawn(Props(cfg, acc))
	credit := func(key string, amount int64) *ledger.Command {
		c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: amount, Currency: "USD", IdemKey: key, TimestampUs: now}
		c.RequestHash = 7
		return c
	}
	cmds := []*ledger.Command{credit("new1", 1), credit("old", 9), credit("new2", 2), credit("new1", 1)}
	outs := make([]Applied, len(cmds))
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmds: cmds, Outs: outs, Idx: []int32{0, 1, 2, 3}, Done: &wg})
	wg.Wait()
	if len(lk.asked) != 1 || fmt.Sprint(lk.asked[0]) != "[new1 old new2]" || lookups != 3 {
		t.Fatalf("lookups %v (counted %d), want one call for [new1 old new2]", lk.asked, lookups)
	}
	if r := outs[1].Effect.Result; !r.Replayed || r.TxID != prior.TxID {
		t.Fatalf("key found in storage: %+v, want its replay", r)
	}
	if r := outs[3].Effect.Result; !r.Replayed || r.TxID != cmds[0].TxID {
		t.Fatalf("repeated key: %+v, want the replay of its first use", r)
	}
	if acc.Balance != 12 {
		t.Fatalf("balance %d, want 9 + 1 + 2", acc.Balance)
	}
	// The keys are remembered now: a retry of new2 needs no lookup.
	if out := applyOne(t, sys, pid, credit("new2", 2)); !out.Effect.Result.Replayed || len(lk.asked) != 1 {
		t.Fatalf("retry of new2: %+v after %v", out.Effect.Result, lk.asked)
	}
}

// sendAll applies cmds as one message and returns the outcomes.
func sendAll(t *testing.T, sys *actor.ActorSystem, pid *actor.PID, cmds []*ledger.Command) []Applied {
	t.Helper()
	outs := make([]Applied, len(cmds))
	idx := make([]int32, len(cmds))
	for i := range idx {
		idx[i] = int32(i)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	sys.Root.Send(pid, &Apply{Cmds: cmds, Outs: outs, Idx: idx, Done: &wg})
	wg.Wait()
	return outs
}

// TestRetryEvictedWithinAMessageIsStillARetry: the key index is bounded,
// so the new keys applied earlier in a message can evict the outcome of a
// key a later command of the same message retries. The retry must still
// be answered as a retry, whether its key was in memory before the message
// (the index is incomplete) or first used earlier in the same message.
func TestRetryEvictedWithinAMessageIsStillARetry(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	now := time.Now().UnixMicro()
	credit := func(id uuid.UUID, key string) *ledger.Command {
		c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: 1, Currency: "USD", IdemKey: key, TimestampUs: now}
		c.RequestHash = ledger.HashRequest(c)
		return c
	}
	newAccount := func() (uuid.UUID, *ledger.Account, *actor.PID) {
		id := uuid.New()
		acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Keys: ledger.NewKeyIndex(2, true)}
		cfg := &Config{Lookup: &lookup{}, Ctx: context.Background()}
		return id, acc, sys.Root.Spawn(Props(cfg, acc))
	}

	t.Run("key held before the message", func(t *testing.T) {
		id, acc, pid := newAccount()
		for _, k := range []string{"a", "b", "c"} { // a is evicted: the index is incomplete
			applyOne(t, sys, pid, credit(id, k))
		}
		b := credit(id, "b")
		outs := sendAll(t, sys, pid, []*ledger.Command{credit(id, "x"), b})
		if !outs[1].Effect.Result.Replayed {
			t.Fatalf("retry of b applied again: %+v", outs[1].Effect.Result)
		}
		if acc.Balance != 4 {
			t.Fatalf("balance %d, want 4 (a, b, c, x)", acc.Balance)
		}
	})
	t.Run("key first used in the message", func(t *testing.T) {
		id, acc, pid := newAccount()
		cmds := []*ledger.Command{credit(id, "k"), credit(id, "n1"), credit(id, "n2"), credit(id, "n3"), credit(id, "k")}
		outs := sendAll(t, sys, pid, cmds)
		if r := outs[4].Effect.Result; !r.Replayed || r.TxID != cmds[0].TxID {
			t.Fatalf("second use of k: %+v, want the replay of the first", r)
		}
		if acc.Balance != 4 {
			t.Fatalf("balance %d, want 4 (k, n1, n2, n3)", acc.Balance)
		}
	})
}

// TestRepeatedKeyWithAnEarlierTimestamp: timestamps in one partition may go
// backwards (ingress clocks differ). A key's second use in a message may be
// within the window of an outcome in storage that its first use, later in
// time, is not: the storage lookup must reach back for the earlier one.
func TestRepeatedKeyWithAnEarlierTimestamp(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	id := uuid.New()
	t0 := time.Now().UnixMicro() - 2*ledger.IdempotencyWindowUs
	prior := ledger.Result{TxID: uuid.New(), Kind: ledger.KindCredit, AccountID: id, Status: ledger.StatusCompleted,
		Amount: 10, Delta: 10, Currency: "USD", Balance: 11, TimestampUs: t0}
	lk := &lookup{found: map[string]ledger.Result{"K": prior}}
	cfg := &Config{Lookup: lk, Ctx: context.Background()}
	acc := &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Balance: 11, Keys: ledger.NewKeyIndex(1, false)}
	pid := sys.Root.Spawn(Props(cfg, acc))
	at := func(ts, amount int64) *ledger.Command {
		c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: id, Amount: amount, Currency: "USD", IdemKey: "K", TimestampUs: ts}
		c.RequestHash = 7 // as stored
		return c
	}
	second := at(t0+ledger.IdempotencyWindowUs-1_000_000, 10) // within the prior's window
	outs := sendAll(t, sys, pid, []*ledger.Command{at(t0+ledger.IdempotencyWindowUs+1_000_000, 0), second})
	if r := outs[1].Effect.Result; !r.Replayed || r.TxID != prior.TxID {
		t.Fatalf("second use of K: %+v, want the replay of the outcome in storage", r)
	}
	if acc.Balance != 11 {
		t.Fatalf("balance %d, want 11", acc.Balance)
	}
}
