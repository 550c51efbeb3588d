// Package cluster makes Bursar nodes a cluster: membership and node
// metadata through hashicorp/memberlist, partition ownership by rendezvous
// hashing over the live engine nodes with fenced acquisition (the epoch in
// PostgreSQL decides, never gossip alone), and cross-node answers and reads
// over protoactor-go remote.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node gossips about itself. It must stay within
// memberlist's meta limit (512 bytes); Encode checks.
type Meta struct {
	ID     string   `json:"id"`
	Roles  []string `json:"roles"`
	HTTP   string   `json:"http"`
	Remote string   `json:"remote"`
	// Admin is the node's admin listener (/internal/*, profiles), which
	// the operator commands reach every node at.
	Admin string `json:"admin,omitempty"`
	// Records is the newest command record version the node's engine
	// decodes (ledger.RecordVersionMax); absent (0) on releases before
	// version 2, which decode version 1 only.
	Records int `json:"records,omitempty"`
	// SlotMap is the version of the slot map the node routes by
	// (ledger.SlotMap.Version); absent on releases before slot maps.
	SlotMap  int64 `json:"slot_map"`
	Draining bool  `json:"draining,omitempty"`
}

// HasRole reports whether the node runs role.
func (m *Meta) HasRole(role string) bool { return slices.Contains(m.Roles, role) }

// Member is a live node as this node sees it.
type Member struct {
	Meta
	Gossip string `json:"gossip"`
	State  string `json:"state"` // alive or suspect
}

// MembershipConfig configures gossip.
type MembershipConfig struct {
	// Meta describes this node. ID is required and names the memberlist node.
	Meta Meta
	// BindAddr is host:port to gossip on. Default ":7946".
	BindAddr string
	// AdvertiseAddr is the host:port others reach this node's gossip at.
	// Default: BindAddr when it names a host, else memberlist's choice.
	AdvertiseAddr string
	// Join lists seed nodes' gossip addresses.
	Join []string
	// ProbeInterval is how often a random peer is probed. Default 1s; a
	// dead node is declared after a few intervals (SuspicionMult).
	ProbeInterval time.Duration
	// SuspicionMult scales how long a suspect node has to refute before it
	// is declared dead. Default 4.
	SuspicionMult int
	// Keys, when set, encrypt and authenticate every gossip message
	// (memberlist's keyring, AES-GCM): Keys[0] encrypts, every key
	// decrypts, so a key is rotated by adding the new one second, then
	// first, then removing the old one. Each is 16, 24 or 32 bytes. A
	// message no key opens is dropped and counted (Rejected).
	Keys [][]byte
}

// Membership is this node's view of the cluster.
type Membership struct {
	ml       *memberlist.Memberlist
	log      *slog.Logger
	changed  chan struct{}
	id       string                    // this node's ID (meta.ID, never changes)
	conflict atomic.Pointer[[2]string] // addresses of a name conflict memberlist reported

	mu   sync.Mutex
	meta Meta

	rejected atomic.Uint64 // gossip messages no key opened (gossipLog)
	hold     atomic.Pointer[recordHold]
	reindex  chan struct{} // notify → indexLoop
	stop     chan struct{} // closed by Leave
	stopOnce sync.Once

	// Member lookups (one per answer forwarded to another node) read a
	// map built from Members, rebuilt when gen has moved on: every
	// join, leave and metadata update bumps it.
	gen  atomic.Uint64
	byID atomic.Pointer[memberIndex]
}

type memberIndex struct {
	gen     uint64
	byID    map[string]Member
	records int // RecordVersion: the least among the engine members (0: none)
}

// Join starts gossiping and joins the seeds (if any). It keeps trying the
// seeds in the background when none answers, so nodes can start in any
// order.
func Join(cfg MembershipConfig, logger *slog.Logger) (*Membership, error) {
	if cfg.Meta.ID == "" {
		return nil, errors.New("cluster: node ID is required")
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = ":7946"
	}
	m := &Membership{log: logger, changed: make(chan struct{}, 1), meta: cfg.Meta, id: cfg.Meta.ID,
		reindex: make(chan struct{}, 1), stop: make(chan struct{})}
	if _, err := m.encodeMeta(cfg.Meta); err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	if host == "" {
		mc.BindAddr = "0.0.0.0"
	}
	adv := cfg.AdvertiseAddr
	if adv == "" && host != "" && host != "0.0.0.0" {
		adv = cfg.BindAddr
	}
	if adv != "" {
		ah, ap, err := splitHostPort(adv)
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
		mc.ProbeTimeout = cfg.ProbeInterval / 2
		mc.GossipInterval = min(mc.GossipInterval, cfg.ProbeInterval/5)
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	mc.Conflict = (*conflicts)(m)
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip keys: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	// memberlist's chatter is dropped, but for the messages it refused to
	// open: those are counted and logged. Our events are logged below.
	mc.Logger = log.New(&gossipLog{m: m}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip: %w", err)
	}
	m.ml = ml
	go m.indexLoop()
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			logger.Warn("no seed answered; retrying in the background", "seeds", cfg.Join, "err", err)
			go m.rejoin(cfg.Join)
		}
	}
	// The join's state exchange has run: a live member with this ID at
	// another address was reported to NotifyConflict meanwhile.
	if addrs := m.conflict.Load(); addrs != nil {
		other := addrs[0]
		if other == ml.LocalNode().Address() {
			other = addrs[1]
		}
		m.stopOnce.Do(func() { close(m.stop) })
		ml.Shutdown() //nolint:errcheck // refusing anyway
		return nil, fmt.Errorf("%w: node %q is alive at %s; give each node its own --node-id", ErrNodeIDInUse, cfg.Meta.ID, other)
	}
	return m, nil
}

// gossipLog takes memberlist's log lines: it counts and logs (at most
// once per gossipLogEvery) those that report a message no key opened, a
// plain message where encryption is required, or an encrypted one where
// it is not; everything else is memberlist's chatter, dropped.
type gossipLog struct {
	m    *Membership
	mu   sync.Mutex
	last time.Time
}

const gossipLogEvery = 10 * time.Second

var gossipRefusals = []string{
	"Decrypt packet failed", "No installed keys could decrypt",
	"encryption is configured but remote state is not encrypted",
	"remote state is encrypted and encryption is not configured",
}

func (g *gossipLog) Write(p []byte) (int, error) {
	line := string(p)
	for _, r := range gossipRefusals {
		if strings.Contains(line, r) {
			n := g.m.rejected.Add(1)
			g.mu.Lock()
			due := time.Since(g.last) >= gossipLogEvery
			if due {
				g.last = time.Now()
			}
			g.mu.Unlock()
			if due {
				g.m.log.Warn("refused a gossip message that is not authenticated with this cluster's key (--gossip-key): membership unchanged",
					"detail", strings.TrimSpace(line), "refused_total", n)
			}
			break
		}
	}
	return len(p), nil
}

// Rejected returns how many gossip messages were refused as not
// authenticated.
func (m *Membership) Rejected() uint64 { return m.rejected.Load() }

// ErrNodeIDInUse is Join's error when another live member has this node's
// ID: two processes with one ID would take each other's partitions and
// answers.
var ErrNodeIDInUse = errors.New("cluster: the node ID is in use")

// conflicts is memberlist's ConflictDelegate: another node claims this
// node's name from another address.
type conflicts Membership

func (c *conflicts) NotifyConflict(existing, other *memberlist.Node) {
	m := (*Membership)(c)
	if existing.Name != m.id {
		return
	}
	m.conflict.CompareAndSwap(nil, &[2]string{existing.Address(), other.Address()})
	m.log.Error("another process claims this node's ID", "node_id", existing.Name, "addresses", []string{existing.Address(), other.Address()})
}

func (m *Membership) rejoin(seeds []string) {
	for len(m.ml.Members()) < 2 {
		time.Sleep(time.Second)
		if _, err := m.ml.Join(seeds); err == nil {
			return
		}
	}
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

func (m *Membership) encodeMeta(meta Meta) ([]byte, error) {
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node metadata is %d bytes, more than memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// Self returns this node's metadata.
func (m *Membership) Self() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}

// SetDraining marks this node as draining (its engine keeps no partitions)
// and gossips the change.
func (m *Membership) SetDraining(d bool) error {
	m.mu.Lock()
	m.meta.Draining = d
	m.mu.Unlock()
	m.notify()
	return m.ml.UpdateNode(5 * time.Second)
}

// SetSlotMap gossips the slot map version this node routes by.
func (m *Membership) SetSlotMap(v int64) error {
	m.mu.Lock()
	if m.meta.SlotMap == v {
		m.mu.Unlock()
		return nil
	}
	m.meta.SlotMap = v
	m.mu.Unlock()
	return m.ml.UpdateNode(5 * time.Second)
}

// Members returns the nodes memberlist has not declared dead or left, this
// one included, sorted by ID.
func (m *Membership) Members() []Member {
	var out []Member
	for _, n := range m.ml.Members() {
		var meta Meta
		if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.ID == "" {
			continue // a node still starting, or not ours
		}
		state := "alive"
		if n.State == memberlist.StateSuspect {
			state = "suspect"
		}
		out = append(out, Member{Meta: meta, Gossip: n.Address(), State: state})
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Member returns the live member with the given ID.
func (m *Membership) Member(id string) (Member, bool) {
	mem, ok := m.index().byID[id]
	return mem, ok
}

// index returns the member index of the current view, rebuilt when gen
// has moved on.
func (m *Membership) index() *memberIndex {
	g := m.gen.Load()
	idx := m.byID.Load()
	if idx == nil || idx.gen != g {
		prev := idx
		// Built from a view at least as new as g; a change during the
		// build bumps gen again, so the next lookup rebuilds.
		idx = &memberIndex{gen: g, byID: make(map[string]Member), records: 0}
		for _, mem := range m.Members() {
			idx.byID[mem.ID] = mem
			if mem.HasRole("engine") {
				v := max(mem.Records, 1)
				if idx.records == 0 || v < idx.records {
					idx.records = v
				}
			}
		}
		// An older engine was in view up to this change and is not now:
		// hold its version (RecordVersion).
		if prev != nil && prev.records > 0 && idx.records != prev.records && prev.records < m.ownRecords() &&
			(idx.records == 0 || idx.records > prev.records) {
			m.hold.Store(&recordHold{low: prev.records, until: time.Now().Add(recordVersionHold)})
		}
		m.byID.Store(idx)
	}
	return idx
}

// ownRecords is the record version this node reads.
func (m *Membership) ownRecords() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(m.meta.Records, 1)
}

// recordHold keeps RecordVersion at low until until: an older engine left
// the view then.
type recordHold struct {
	low   int
	until time.Time
}

// RecordVersion is the newest command record version every engine node
// decodes: what an ingress may write without a node of an older release
// dead-lettering it during a rolling upgrade. It is 1 while no engine is
// in view (gossip has not converged yet), and stays at an older engine's
// version for recordVersionHold after that engine left the view: an old
// node that restarts, or is declared dead for a while, must not come back
// to records it cannot read. It takes no lock: the ingress asks on every
// write.
func (m *Membership) RecordVersion() int {
	v := m.index().records
	if v == 0 {
		return 1
	}
	if h := m.hold.Load(); h != nil && time.Now().Before(h.until) {
		return min(v, h.low)
	}
	return v
}

// recordVersionHold is how long an ingress keeps writing the records an
// older engine reads after it last saw one.
const recordVersionHold = 10 * time.Minute

// Changed signals membership or metadata changes (coalesced).
func (m *Membership) Changed() <-chan struct{} { return m.changed }

func (m *Membership) notify() {
	m.gen.Add(1)
	select {
	case m.changed <- struct{}{}:
	default:
	}
	select {
	case m.reindex <- struct{}{}:
	default:
	}
}

// Leave tells the cluster this node is going (so it is not suspected) and
// stops gossiping.
func (m *Membership) Leave(timeout time.Duration) {
	if err := m.ml.Leave(timeout); err != nil {
		m.log.Warn("leaving the cluster", "err", err)
	}
	m.ml.Shutdown() //nolint:errcheck // shutting down anyway
	m.stopOnce.Do(func() { close(m.stop) })
}

// indexLoop rebuilds the member index at every membership change, off
// memberlist's event goroutine (which holds memberlist's lock): the
// record-version hold must see an older engine leave even when no write
// asked in between.
func (m *Membership) indexLoop() {
	for {
		select {
		case <-m.stop:
			return
		case <-m.reindex:
			m.index()
		}
	}
}

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	m := (*Membership)(d)
	b, err := m.encodeMeta(m.Self())
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                    {}
func (d *delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *delegate) LocalState(bool) []byte              { return nil }
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {}

type events Membership

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.log.Info("node joined", "peer", n.Name, "gossip", n.Address())
	(*Membership)(e).notify()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.log.Info("node left or declared dead", "peer", n.Name)
	(*Membership)(e).notify()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	(*Membership)(e).notify()
}
