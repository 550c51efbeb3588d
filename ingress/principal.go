package ingress

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// What a customer may reach. A customer's credential (a user token with
// the customer role) reaches only the accounts whose owner is that user:
//
//   - it opens accounts for itself (the open records the user as owner);
//   - its withdrawals and transfers are refused as ACCOUNT_NOT_FOUND,
//     before anything is appended, unless the source account is the
//     user's (the ingress asks the account's owner node, and remembers
//     the answer: an account's owner never changes); the command then
//     carries the user as the owner the account must have, which the core
//     checks again, before any idempotency lookup (ledger.Apply). The
//     destination of a transfer may be anyone's;
//   - it cannot deposit: a deposit brings money from outside the ledger,
//     which a teller or a payment service records, not the customer;
//   - its reads of another owner's account, history or transaction are
//     answered as if the account or transaction did not exist (404), so
//     reads tell nothing of other owners' accounts. (A transfer tells
//     what a bank transfer does: whether the destination exists, is
//     closed or takes another currency, by the refund's code.)
//
// Every other principal (API keys, admins, tellers) reaches any account.

// principalOf is the principal authorize let in, or nil (auth off).
func principalOf(ctx *fasthttp.RequestCtx) *auth.Principal {
	p, _ := ctx.UserValue(principalKey).(*auth.Principal)
	return p
}

// customerOf is the user ID a request is restricted to ("" if none).
func customerOf(ctx *fasthttp.RequestCtx) string {
	if p := principalOf(ctx); p != nil {
		return p.Owner()
	}
	return ""
}

// restrict applies the request's principal to a write's command c: the
// owner a customer's withdrawal or transfer requires, the refusal of a
// customer's deposit, and the record version the cluster must read.
func (s *Server) restrict(ctx *fasthttp.RequestCtx, c *ledger.Command) *apiError {
	if owner := customerOf(ctx); owner != "" {
		switch c.Kind {
		case ledger.KindCredit:
			s.rejected.WithLabelValues("forbidden").Inc()
			return bad(ledger.CodeForbidden, "a customer cannot deposit: deposits are recorded by a teller or a payment service")
		case ledger.KindDebit, ledger.KindTransferDebit:
			if aerr := s.checkOwner(ctx, c.AccountID); aerr != nil {
				if aerr.code == ledger.CodeAccountNotFound {
					s.rejected.WithLabelValues("not_owner").Inc()
				}
				return aerr
			}
			c.Owner = owner
		case ledger.KindOpen:
			// decodeOpenAs has set it.
		}
	} else if c.Kind == ledger.KindOpen && c.Owner != "" && s.cfg.Directory != nil {
		// A teller or a service names the owner: it must be a customer,
		// or the account would be out of every customer's reach for good.
		ctx2, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ok, err := s.cfg.Directory.IsCustomer(ctx2, c.Owner)
		if err != nil {
			return s.readFailed("users", err)
		}
		if !ok {
			return bad(ledger.CodeInvalidField, "owner_id names no customer user (bursar user ls, or GET /api/v1/users on the admin listener, lists them)")
		}
	}
	if c.Owner != "" && s.cfg.RecordVersion != nil && s.cfg.RecordVersion() < c.RecordVersion() {
		// An engine of an older release would refuse the record as
		// unreadable (a lost command); the owner cannot be left out
		// as created_by can, since it guards the account.
		s.rejected.WithLabelValues("record_version").Inc()
		return bad(ledger.CodeUnavailable, "an engine node of an older release is in the cluster and cannot read owned accounts' commands; retry once the upgrade is done")
	}
	return nil
}

// hides reports whether the request may not see an account of owner.
func hides(ctx *fasthttp.RequestCtx, owner string) bool {
	c := customerOf(ctx)
	return c != "" && c != owner
}

// checkOwner answers whether account id exists and the request may see
// it, for the reads that come from PostgreSQL (history): the owner's
// memory says, or PostgreSQL where this node has no engine. A nil error
// means visible; an unknown or hidden account is ACCOUNT_NOT_FOUND alike.
func (s *Server) checkOwner(ctx *fasthttp.RequestCtx, id uuid.UUID) *apiError {
	// Only the customer's own accounts are answered from the cache: any
	// other is read each time, as a missing one is, so that the time an
	// answer takes tells nothing of whether another owner's account
	// exists.
	if owner, ok := s.owners.get(id); ok && !hides(ctx, owner) {
		return nil
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var (
		owner  string
		exists bool
	)
	if s.engine != nil {
		acc, aerr := s.ownerMemory(c, id)
		if aerr != nil {
			return aerr
		}
		owner, exists = acc.Owner, acc.Exists
	} else {
		owners, err := s.store.AccountOwners(c, []uuid.UUID{id})
		if err != nil {
			return s.readFailed("accounts", err)
		}
		owner, exists = owners[id]
	}
	if !exists || hides(ctx, owner) {
		return bad(ledger.CodeAccountNotFound, "no account "+id.String())
	}
	// The owner's memory may hold an open the log has not made durable
	// yet (a broker crash could lose it, and the ID be opened again by
	// another): remember the owner only once it is durable.
	if s.cfg.Durable == nil || s.cfg.Durable(c) == nil {
		s.owners.put(id, owner)
	}
	return nil
}

// ownerMemory reads account id from its owner's memory, for a check
// before a read of PostgreSQL (the owner knows an account opened but not
// yet flushed), with the answers a failed read gets.
func (s *Server) ownerMemory(c context.Context, id uuid.UUID) (ledger.Account, *apiError) {
	acc, err := s.readAccount(c, id)
	switch {
	case errors.Is(err, engine.ErrNotReady), errors.Is(err, engine.ErrNotOwner):
		return acc, bad(ledger.CodeUnavailable, "the account's partition is moving or recovering; retry shortly")
	case err != nil:
		return acc, s.readFailed("accounts", err) // one not in memory is loaded from PostgreSQL
	}
	return acc, nil
}

// ownerCache remembers the owners of accounts that exist: an account's
// owner is set when it opens and never changes, and accounts are never
// deleted, so an entry never goes stale. It holds at most max entries;
// when full it is emptied (counted), which costs only reads.
type ownerCache struct {
	mu      sync.Mutex
	max     int
	by      map[uuid.UUID]string
	Cleared atomic.Uint64
}

// ownerCacheMax bounds the accounts whose owner an ingress remembers.
const ownerCacheMax = 100_000

func newOwnerCache(max int) *ownerCache {
	return &ownerCache{max: max, by: make(map[uuid.UUID]string)}
}

func (o *ownerCache) get(id uuid.UUID) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	owner, ok := o.by[id]
	return owner, ok
}

func (o *ownerCache) put(id uuid.UUID, owner string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.by) >= o.max {
		clear(o.by)
		o.Cleared.Add(1)
	}
	o.by[id] = owner
}

// ownedAccounts returns which of accounts (those of a transaction's rows)
// the customer making the request owns: it sees the transaction when it
// owns one of them (a transfer to it included), and the balances only of
// those (rowView).
func (s *Server) ownedAccounts(ctx *fasthttp.RequestCtx, accounts []uuid.UUID) (map[uuid.UUID]bool, *apiError) {
	owner := customerOf(ctx)
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Every account of a stored row is stored: the flush that wrote the
	// row wrote its account in the same transaction.
	owners, err := s.store.AccountOwners(c, accounts)
	if err != nil {
		return nil, s.readFailed("transactions", err)
	}
	owned := map[uuid.UUID]bool{}
	for id, o := range owners {
		if o == owner {
			owned[id] = true
		}
	}
	return owned, nil
}
