package actors

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// flushedKeys is a storage stand-in for the model test: the recorded
// outcome of every key, newest last, as the transactions and leg_refusals
// tables hold them after a flush.
type flushedKeys struct {
	mu   sync.Mutex
	keys map[string]ledger.KeyRecord
}

func (f *flushedKeys) LookupKeys(_ context.Context, _ uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]ledger.KeyRecord{}
	for _, k := range keys {
		if rec, ok := f.keys[k]; ok && rec.Result.TimestampUs >= sinceUs {
			out[k] = rec
		}
	}
	return out, nil
}

// TestActorMatchesUnboundedLedger is a model test of the actor's key
// handling: random streams of commands on one account (keyed and keyless
// credits and debits, retries, reused keys, duplicated transfer legs,
// refusals recorded and not, timestamps that jump past the window, or just
// past it, or step back by less than the clock-skew margin), sent in messages of 1 to 8
// commands to an actor whose key index holds 1 to 4 keys and falls back to
// storage, must give exactly the results of ledger.Apply run in order with
// an index that never evicts. Storage is written after every message, as
// a flush would; keys evicted before their flush are the documented limit.
func TestActorMatchesUnboundedLedger(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	const seeds, perSeed = 500, 80
	var lookups, replays, refusals int
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 99))
		id := uuid.New()
		newAcc := func(keys ledger.KeyIndex) *ledger.Account {
			return &ledger.Account{ID: id, Exists: true, Currency: "USD", Status: ledger.AccountActive, Keys: keys}
		}
		ref := newAcc(ledger.NewKeyIndex(1<<20, true))
		store := &flushedKeys{keys: map[string]ledger.KeyRecord{}}
		acc := newAcc(ledger.NewKeyIndex(1+rng.IntN(4), true))
		pid := sys.Root.Spawn(Props(&Config{Lookup: store, Ctx: context.Background(),
			OnLookup: func() { lookups++ }}, acc))

		ts := int64(1_700_000_000_000_000)
		last := map[string]*ledger.Command{} // the last command of each key, for retries
		source := uuid.New()                 // the paying account of the transfers
		legs := make([]uuid.UUID, 4)
		for i := range legs {
			legs[i] = uuid.New()
		}
		var cmds []*ledger.Command
		for range perSeed {
			switch r := rng.IntN(100); {
			case r < 3:
				ts += ledger.IdempotencyWindowUs + ledger.ClockSkewUs + 1_000_000
			case r < 6: // just past the window of what came before
				ts += ledger.IdempotencyWindowUs + rng.Int64N(300_000_000)
			case r < 11:
				ts -= rng.Int64N(600_000_000) // back by up to ten minutes
			default:
				ts += rng.Int64N(1_000)
			}
			var c ledger.Command
			switch r := rng.IntN(100); {
			case r < 15: // a credit leg of one of a few transfers: copies recur
				c = ledger.Command{Kind: ledger.KindTransferCredit, TxID: legs[rng.IntN(len(legs))], Counterparty: source, Amount: 5}
			case r < 45: // a retry of a keyed command, or the key reused for another request
				if len(last) > 0 {
					k := "k" + string(rune('0'+rng.IntN(6)))
					if prev, ok := last[k]; ok {
						c = *prev
						c.TxID = uuid.New()
						if rng.IntN(4) == 0 {
							c.Amount++
						}
						break
					}
				}
				fallthrough
			default:
				kind := ledger.KindCredit
				if rng.IntN(2) == 0 {
					kind = ledger.KindDebit
				}
				c = ledger.Command{Kind: kind, TxID: uuid.New(), Amount: rng.Int64N(25)} // 0: refused, unrecorded
				if rng.IntN(10) < 7 {
					c.IdemKey = "k" + string(rune('0'+rng.IntN(6)))
				}
			}
			c.AccountID, c.Currency, c.TimestampUs = id, "USD", ts
			c.RequestHash = ledger.HashRequest(&c)
			cp := c
			if cp.IdemKey != "" {
				last[cp.IdemKey] = &cp
			}
			cmds = append(cmds, &cp)
		}

		for start := 0; start < len(cmds); {
			n := min(1+rng.IntN(8), len(cmds)-start)
			msg := cmds[start : start+n]
			outs := sendAll(t, sys, pid, msg)
			for i, c := range msg {
				want := ledger.Apply(ref, c).Result
				got := outs[i].Effect.Result
				if outs[i].Err != nil || got.Status != want.Status || got.Code != want.Code || got.Replayed != want.Replayed ||
					got.TxID != want.TxID || got.Balance != want.Balance || got.Seq != want.Seq {
					t.Fatalf("seed %d, command %d (%v key %q at %d): actor %+v (err %v)\nwant %+v",
						seed, start+i, c.Kind, ledger.DedupeKey(c), c.TimestampUs, got, outs[i].Err, want)
				}
				if got.Replayed {
					replays++
				}
				if got.Status == ledger.StatusFailed {
					refusals++
				}
				if key := ledger.DedupeKey(c); key != "" && !got.Replayed && (!got.Unrecorded || got.Tombstone) {
					store.mu.Lock()
					store.keys[key] = ledger.KeyRecord{Hash: c.RequestHash, Result: got}
					store.mu.Unlock()
				}
			}
			start += n
		}
		sys.Root.Poison(pid)
	}
	// The streams did reach the paths under test.
	if lookups == 0 || replays == 0 || refusals == 0 {
		t.Fatalf("storage lookups %d, replays %d, refusals %d: the model exercised too little", lookups, replays, refusals)
	}
	t.Logf("storage lookups %d, replays %d, refusals %d", lookups, replays, refusals)
}
