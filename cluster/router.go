package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Names of the actors every node registers for cross-node traffic.
const (
	repliesActor = "bursar-replies"
	readsActor   = "bursar-reads"
)

// LocalReplies is this node's reply registry (the ingress's).
type LocalReplies interface {
	Deliver(node string, seq uint64, r *ledger.Result)
	Node() string
}

// LocalReader reads an account from this node's engine.
type LocalReader interface {
	Account(ctx context.Context, p int32, id uuid.UUID) (ledger.Account, error)
	Ready() bool
	WaitsForStorage(p int32) bool
}

// RouterConfig wires a Router.
type RouterConfig struct {
	Self    string // this node's ID
	System  *actor.ActorSystem
	Members *Membership
	Replies LocalReplies // nil on a node without the ingress role
	Engine  LocalReader  // nil on a node without the engine role
	// Partitions is the command topic's partition count.
	Partitions int32
	// ErrNotOwner and ErrNotReady are the engine's sentinel errors, returned
	// for remote refusals so callers can tell them apart.
	ErrNotOwner, ErrNotReady error
	// ReadTimeout bounds a remote read. Default 2s.
	ReadTimeout time.Duration
}

// Router delivers answers to the node whose ingress waits for them and
// sends strong reads to the node that owns the account's partition, over
// protoactor-go remote. It implements actors.ReplySink for the engine and
// the ingress's Engine interface.
type Router struct {
	cfg RouterConfig
	log *slog.Logger

	// ForeignDropped counts answers for a node that is not a live member.
	ForeignDropped atomic.Int64
	// Forwarded counts answers sent to another node.
	Forwarded atomic.Int64
}

// NewRouter registers this node's reply and read actors.
func NewRouter(cfg RouterConfig, log *slog.Logger) (*Router, error) {
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	r := &Router{cfg: cfg, log: log}
	if _, err := cfg.System.Root.SpawnNamed(actor.PropsFromFunc(r.receiveReply), repliesActor); err != nil {
		return nil, fmt.Errorf("cluster: reply actor: %w", err)
	}
	if _, err := cfg.System.Root.SpawnNamed(actor.PropsFromFunc(r.receiveRead), readsActor); err != nil {
		return nil, fmt.Errorf("cluster: read actor: %w", err)
	}
	return r, nil
}

// nodeOf returns the node ID part of a ReplyNode ("node/boot").
func nodeOf(replyNode string) string {
	id, _, _ := strings.Cut(replyNode, "/")
	return id
}

// Deliver implements actors.ReplySink: local answers go straight to the
// registry, others to the waiting node's reply actor. It never blocks.
func (r *Router) Deliver(node string, seq uint64, res *ledger.Result) {
	id := nodeOf(node)
	if id == r.cfg.Self {
		if r.cfg.Replies != nil {
			r.cfg.Replies.Deliver(node, seq, res)
		}
		return
	}
	m, ok := r.cfg.Members.Member(id)
	if !ok || m.Remote == "" {
		r.ForeignDropped.Add(1)
		return
	}
	b := binary.AppendUvarint(nil, seq)
	b = binary.AppendUvarint(b, uint64(len(node)))
	b = append(b, node...)
	b = ledger.AppendResult(b, res)
	r.Forwarded.Add(1)
	r.cfg.System.Root.Send(actor.NewPID(m.Remote, repliesActor), &wrapperspb.BytesValue{Value: b})
}

func (r *Router) receiveReply(ctx actor.Context) {
	msg, ok := ctx.Message().(*wrapperspb.BytesValue)
	if !ok || r.cfg.Replies == nil {
		return
	}
	b := msg.Value
	seq, w := binary.Uvarint(b)
	if w <= 0 {
		return
	}
	b = b[w:]
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return
	}
	node := string(b[w : w+int(n)])
	res, err := ledger.DecodeResult(b[w+int(n):])
	if err != nil {
		r.log.Warn("undecodable answer from a peer", "err", err)
		return
	}
	r.cfg.Replies.Deliver(node, seq, &res)
}

// Read statuses on the wire.
const (
	readOK byte = iota
	readNotOwner
	readNotReady
	readFailed
)

// Account implements the ingress's strong read: from the local engine when
// it owns the partition, else from the owner by rendezvous.
func (r *Router) Account(ctx context.Context, p int32, id uuid.UUID) (ledger.Account, error) {
	if r.cfg.Engine != nil {
		acc, err := r.cfg.Engine.Account(ctx, p, id)
		if !errors.Is(err, r.cfg.ErrNotOwner) {
			return acc, err
		}
	}
	owner := Owner(p, EngineNodes(r.cfg.Members.Members()))
	m, ok := r.cfg.Members.Member(owner)
	if !ok || owner == r.cfg.Self {
		return ledger.Account{}, r.cfg.ErrNotOwner
	}
	req := binary.BigEndian.AppendUint32(nil, uint32(p))
	req = append(req, id[:]...)
	timeout := r.cfg.ReadTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	res, err := r.cfg.System.Root.RequestFuture(actor.NewPID(m.Remote, readsActor), &wrapperspb.BytesValue{Value: req}, timeout).Result()
	if err != nil {
		return ledger.Account{}, fmt.Errorf("cluster: read from %s: %w", owner, err)
	}
	b, ok := res.(*wrapperspb.BytesValue)
	if !ok || len(b.Value) == 0 {
		return ledger.Account{}, fmt.Errorf("cluster: read from %s: unexpected answer %T", owner, res)
	}
	switch b.Value[0] {
	case readOK:
		return ledger.DecodeAccount(b.Value[1:])
	case readNotOwner:
		return ledger.Account{}, r.cfg.ErrNotOwner
	case readNotReady:
		return ledger.Account{}, r.cfg.ErrNotReady
	}
	return ledger.Account{}, fmt.Errorf("cluster: read from %s failed: %s", owner, b.Value[1:])
}

func (r *Router) receiveRead(ctx actor.Context) {
	msg, ok := ctx.Message().(*wrapperspb.BytesValue)
	if !ok {
		return
	}
	if len(msg.Value) != 4+16 || r.cfg.Engine == nil {
		ctx.Respond(&wrapperspb.BytesValue{Value: []byte{readNotOwner}})
		return
	}
	p := int32(binary.BigEndian.Uint32(msg.Value))
	id := uuid.UUID(msg.Value[4:])
	// Answer off the actor's goroutine: a read may wait on an account actor.
	sender := ctx.Sender()
	root := ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), r.cfg.ReadTimeout)
		defer cancel()
		acc, err := r.cfg.Engine.Account(c, p, id)
		var out []byte
		switch {
		case err == nil:
			out = ledger.AppendAccount([]byte{readOK}, &acc)
		case errors.Is(err, r.cfg.ErrNotOwner):
			out = []byte{readNotOwner}
		case errors.Is(err, r.cfg.ErrNotReady):
			out = []byte{readNotReady}
		default:
			out = append([]byte{readFailed}, err.Error()...)
		}
		root.Send(sender, &wrapperspb.BytesValue{Value: out})
	}()
}

// WaitsForStorage reports whether partition p is owned by the local
// engine and applies nothing until PostgreSQL answers. A partition owned
// elsewhere is its owner's to judge: false.
func (r *Router) WaitsForStorage(p int32) bool {
	return r.cfg.Engine != nil && r.cfg.Engine.WaitsForStorage(p)
}

// Ready reports the local engine's readiness (true without one).
func (r *Router) Ready() bool {
	if r.cfg.Engine == nil {
		return true
	}
	return r.cfg.Engine.Ready()
}
