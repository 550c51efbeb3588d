// Package actors runs one protoactor-go actor per active account. An actor
// is a thin shell over the ledger core: it takes a command, makes sure the
// account's key index can answer for it, calls ledger.Apply, and hands the
// effect on. It holds the account's state between commands; the engine
// spawns it with state loaded from storage and passivates it once idle and
// flushed.
package actors

import (
	"context"
	"github.com/bursar/bursar/retry"
	"math"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// KeyLookup finds keys' recorded outcomes in storage (the newest per key
// since sinceUs; keys never used are absent). It backs accounts whose
// in-memory key index is incomplete (see ledger.KeyIndex).
type KeyLookup interface {
	LookupKeys(ctx context.Context, account uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error)
}

// ReplySink receives the answer to a client command. Deliver must not
// block. The engine delivers the answers (Answers decides which), once what
// they reflect is durable; actors only apply.
type ReplySink interface {
	Deliver(node string, seq uint64, r *ledger.Result)
}

// Applied is the outcome of one command, filled in by its actor.
type Applied struct {
	Effect ledger.Effect
	// Account is a copy of the account without its key index, set on the
	// last command of an Apply message that changed the account (the state
	// after it is the state after all of them; earlier copies would be
	// written over unread).
	Account *ledger.Account
	// Err is an operational failure (storage unreachable during a key
	// lookup, while the engine stops). No command of the message was
	// applied; the engine must retry them.
	Err error
}

// Apply asks an account actor to apply, in order, the commands of Cmds at
// the positions Idx (all of them on this actor's account), write each
// outcome to the same position of Outs, and call Done.Done() once. One
// message per account per fetch batch: a hot account's thousand commands
// cost one mailbox hand-off, not a thousand. Distinct actors write
// distinct positions of Outs.
type Apply struct {
	Cmds []*ledger.Command
	Outs []Applied
	Idx  []int32
	Done *sync.WaitGroup
}

// Read asks an account actor for a copy of its state (without keys). The
// answer is a ledger.Account value.
type Read struct{}

// Config configures account actors.
type Config struct {
	// Lookup backs incomplete key indexes. Required.
	Lookup KeyLookup
	// LookupTimeout bounds one key lookup. Default 5s.
	LookupTimeout time.Duration
	// Ctx stops lookup retries when the engine shuts down. Required.
	Ctx context.Context
	// OnLookupError, if set, is told of each failed lookup (for logs and
	// metrics).
	OnLookupError func(error)
	// OnLookup, if set, is told of each storage lookup: a command whose key
	// the bounded in-memory index could not answer (--keys-per-account).
	OnLookup func()
}

type account struct {
	cfg *Config
	acc *ledger.Account
}

// Props returns the props of an actor owning acc. The mailbox is
// unbounded because the engine bounds it: it sends at most one fetch
// batch of commands before waiting for all of them to be applied.
func Props(cfg *Config, acc *ledger.Account) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &account{cfg: cfg, acc: acc} },
		actor.WithDispatcher(dispatcher()))
}

// Receive implements actor.Actor.
func (a *account) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *Apply:
		a.apply(m)
	case *Read:
		snap := *a.acc
		snap.Keys = ledger.KeyIndex{}
		ctx.Respond(snap)
	}
}

func (a *account) apply(m *Apply) {
	defer m.Done.Done()
	saved, repeats, err := a.prepareKeys(m)
	if err != nil {
		for _, i := range m.Idx {
			m.Outs[i].Err = err
		}
		return
	}
	last := int32(-1) // the last position that changed the account
	for _, i := range m.Idx {
		c, out := m.Cmds[i], &m.Outs[i]
		key := ""
		if saved != nil || repeats != nil {
			key = ledger.DedupeKey(c)
		}
		// The index is bounded: the commands before this one in the
		// message may have evicted this key's outcome. Put it back, so
		// that a retry is answered as a retry.
		if rec, ok := saved[key]; ok {
			if _, hit := a.acc.Keys.Lookup(key, c.TimestampUs); !hit {
				a.acc.Keys.Remember(key, rec.Hash, rec.Result)
			}
		}
		out.Effect = ledger.Apply(a.acc, c)
		if _, again := repeats[key]; again {
			if rec, ok := a.acc.Keys.Record(key, c.TimestampUs); ok {
				if saved == nil {
					saved = make(map[string]ledger.KeyRecord)
				}
				saved[key] = rec
			}
		}
		if out.Effect.Changed {
			last = i
		}
	}
	if last >= 0 {
		snap := *a.acc
		snap.Keys = ledger.KeyIndex{}
		m.Outs[last].Account = &snap
	}
}

// prepareKeys makes sure every command of m meets its key's outcome in the
// bounded key index when its turn comes. Before anything is applied it
// notes, per key of the message:
//   - an outcome the index holds now (saved: the commands before it in the
//     message may evict it; apply puts it back);
//   - when the index is incomplete, an outcome storage holds for a key the
//     index does not (one query for all of them; saved and remembered); a
//     key absent from both is new;
//   - a key used again later in the message (repeats: apply saves its
//     outcome once the first use is applied).
//
// While the index is complete and has room for every command of the
// message, none of this is needed, and nothing is done.
func (a *account) prepareKeys(m *Apply) (saved map[string]ledger.KeyRecord, repeats map[string]struct{}, err error) {
	incomplete := !a.acc.Keys.Complete()
	if !incomplete && a.acc.Keys.Room() >= len(m.Idx) {
		// Every miss is a real miss, and the message's commands cannot
		// evict anything: the index answers for all of them as it is.
		return nil, nil, nil
	}
	var missing []string
	var seen map[string]bool // the message's keys so far: true when looked up in storage
	since := int64(math.MaxInt64)
	save := func(key string, rec ledger.KeyRecord) {
		if saved == nil {
			saved = make(map[string]ledger.KeyRecord)
		}
		saved[key] = rec
	}
	for _, i := range m.Idx {
		c := m.Cmds[i]
		key := ledger.DedupeKey(c) // never empty: keyless commands have a leg key
		if len(m.Idx) > 1 {
			if seen == nil {
				seen = make(map[string]bool, len(m.Idx))
			}
			if lookedUp, dup := seen[key]; dup {
				if repeats == nil {
					repeats = make(map[string]struct{})
				}
				repeats[key] = struct{}{}
				// Timestamps of one partition may go backwards (ingress
				// clocks differ): an outcome out of the first use's window
				// may be in this one's.
				if _, ok := saved[key]; !ok {
					if rec, ok := a.acc.Keys.Record(key, c.TimestampUs); ok {
						save(key, rec)
					}
				}
				if lookedUp {
					since = min(since, c.TimestampUs-ledger.IdempotencyWindowUs)
				}
				continue
			}
			seen[key] = false
		}
		if rec, ok := a.acc.Keys.Record(key, c.TimestampUs); ok {
			if len(m.Idx) > 1 { // a single command cannot evict its own key
				save(key, rec)
			}
			continue
		}
		if !incomplete {
			continue // a miss in a complete index is a real miss
		}
		if seen != nil {
			seen[key] = true
		}
		missing = append(missing, key)
		since = min(since, c.TimestampUs-ledger.IdempotencyWindowUs)
		if a.cfg.OnLookup != nil {
			a.cfg.OnLookup()
		}
	}
	if len(missing) == 0 {
		return saved, repeats, nil
	}
	found, err := a.lookup(m.Cmds[m.Idx[0]].AccountID, missing, since)
	if err != nil {
		return nil, nil, err
	}
	for _, key := range missing { // in command order: the index evicts oldest first
		if rec, ok := found[key]; ok {
			rec.Result.Available = rec.Result.Balance + a.acc.OverdraftLimit
			a.acc.Keys.Remember(key, rec.Hash, rec.Result)
			save(key, rec)
		}
	}
	return saved, repeats, nil
}

// lookup asks storage for keys. It retries until storage answers or the
// engine stops: skipping the lookup could apply a duplicate, and failing
// the commands would break the account's order, so the partition waits
// (its commands stay in Kafka) while storage is down.
func (a *account) lookup(account uuid.UUID, keys []string, sinceUs int64) (map[string]ledger.KeyRecord, error) {
	// This may take a round trip, or much longer while storage is down:
	// let the pool replace this worker meanwhile.
	defer dispatcher().blocking()()
	timeout := a.cfg.LookupTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var found map[string]ledger.KeyRecord
	err := retry.Do(a.cfg.Ctx, retry.Policy{OnRetry: func(err error, _ time.Duration) {
		if a.cfg.OnLookupError != nil {
			a.cfg.OnLookupError(err)
		}
	}}, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var err error
		found, err = a.cfg.Lookup.LookupKeys(ctx, account, keys, sinceUs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// Answers reports whether the outcome r of c is sent to the client waiting
// for c: final outcomes, and replays of a client's own command. A retried
// transfer whose debit replays as pending is answered by the credit leg
// it sent again (ledger.Apply), replayed or applied at the destination; a
// replayed refund answers nobody.
func Answers(c *ledger.Command, r *ledger.Result) bool {
	if r.Replayed {
		switch {
		case c.Kind == ledger.KindTransferRefund:
			return false
		case r.Kind == ledger.KindTransferDebit && r.Status == ledger.StatusPending:
			return false
		}
		return true
	}
	return Final(r)
}

// Final reports whether r is the answer the client waits for. A transfer is
// answered by its credit leg (completed, or failed with the reason), or by
// its debit leg when the debit itself is refused; a refund answers nobody,
// the failed credit leg already did.
func Final(r *ledger.Result) bool {
	switch r.Kind {
	case ledger.KindTransferDebit:
		return r.Status != ledger.StatusPending
	case ledger.KindTransferRefund:
		return false
	}
	return true
}
