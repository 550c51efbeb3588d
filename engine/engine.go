// Package engine owns partitions of bursar.commands: it consumes each owned
// partition in order, dispatches every command to its account's actor,
// collects the effects, produces the records they cause (credit legs,
// refunds, dead letters), and writes everything behind to PostgreSQL in
// batches together with each partition's next offset under a fenced epoch.
//
// Lock order: partition.mu before buffer fields; the flusher never holds a
// partition lock while talking to PostgreSQL or Kafka.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bursar/bursar/actors"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Ack modes.
const (
	AckApplied = "applied"
	AckFlushed = "flushed"
)

// Config configures the engine.
type Config struct {
	// NodeID names this node in the partitions table. Required.
	NodeID string
	// Partitions is the partition count of bursar.commands. Required.
	Partitions int32
	// Routing routes accounts to partitions (the slot maps and the
	// migration in flight PostgreSQL holds); nil: version 0 over
	// Partitions, never refreshed.
	Routing *Routing
	// Ack is AckApplied (answer once applied; default) or AckFlushed
	// (answer once the PostgreSQL commit includes the command).
	Ack string
	// FlushRows starts a flush once this many rows wait. Default 5000.
	FlushRows int
	// FlushInterval is the longest a row waits for its flush. Default 10ms.
	FlushInterval time.Duration
	// MaxUnflushedRows bounds each partition's unflushed rows; the partition
	// stops consuming at the limit (bursar_engine_backpressure_waits_total).
	// Default 50000.
	MaxUnflushedRows int
	// MaxBufferedRecords is the Kafka client's bound on records waiting to
	// be produced (kafkalog.ClientConfig); at it, producing the records an
	// applied batch caused waits (bursar_engine_produce_buffer_full_total).
	// Default kafkalog.DefaultMaxBufferedRecords.
	MaxBufferedRecords int
	// FetchMaxRecords bounds one poll, and so one dispatch batch and every
	// actor's mailbox. Default 4096.
	FetchMaxRecords int
	// IdleTimeout passivates an actor idle this long once flushed.
	// Default 60s.
	IdleTimeout time.Duration
	// MaxResidentActors bounds resident actors per node; beyond it the
	// least recently used flushed ones are passivated early
	// (bursar_engine_passivations_total{reason="limit"}). Default 1,000,000.
	MaxResidentActors int
	// DisableEvents stops producing bursar.events (default: produce them).
	DisableEvents bool
	// EventPartitions is the partition count of bursar.events. Default
	// Partitions.
	EventPartitions int32
	// KeysPerAccount bounds each account's in-memory idempotency keys.
	// Default ledger.DefaultKeysPerAccount.
	KeysPerAccount int
	// CommandsRetention is how long committed commands stay in
	// bursar.commands: every TrimInterval the engine deletes, in each
	// owned partition, the records older than this that PostgreSQL has
	// committed (bursar_engine_commands_trimmed_total). Records not yet
	// committed stay however old they are, and the last committed one
	// stays. 0 never deletes.
	CommandsRetention time.Duration
	// LogDurable, when set, returns once everything written to Kafka before
	// the call is durable (the embedded broker's group sync). Every flush
	// waits for it before committing offsets: the records it applied and
	// the records they caused must not be lost to a power cut once
	// PostgreSQL says they were applied (rule 3). nil: the broker's
	// acknowledgement is durability enough.
	LogDurable func(context.Context) error
	// CommandsDurableAt, if set, returns once the record at offset of a
	// bursar.commands partition, and all before it there, is durable
	// (kafkalog.Broker.DurableAt): at once when a sync already covered it.
	// The emitter waits on it, for the last record of each batch, before it
	// produces what the batch caused and delivers its answers; nil: it
	// waits on LogDurable.
	CommandsDurableAt func(ctx context.Context, partition int32, offset int64) error
	// LogWritten, set with LogDurable, is told every record (topic,
	// partition, offset) the engine fetched or produced, before it waits
	// on LogDurable for it: the embedded broker syncs only the partitions
	// reported (kafkalog.Broker.Written).
	LogWritten func(r *kgo.Record)
	// AccountsCommitted, if set, is given the account states of each
	// flush once PostgreSQL committed them, with the commit's time, in
	// commit order (ingress.BalanceCache.Publish). It runs on the flusher
	// and must not block or keep the map.
	AccountsCommitted func(accounts map[uuid.UUID]*ledger.Account, at time.Time)
	// EventsProducer, if set, produces bursar.events: a client keeps one
	// produce request in flight per broker, and the events (two per
	// command) would otherwise hold up the credit legs a transfer's answer
	// waits for. nil: the engine's client.
	EventsProducer *kgo.Client
	// Stages, if set, observes the engine's stages of each client command
	// (bursar_stage_seconds).
	Stages *Stages
	// TrimInterval is how often CommandsRetention is applied. Default a
	// quarter of it, between 1s and 1m.
	TrimInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.Ack == "" {
		c.Ack = AckApplied
	}
	if c.FlushRows <= 0 {
		c.FlushRows = 5000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 10 * time.Millisecond
	}
	if c.MaxUnflushedRows <= 0 {
		c.MaxUnflushedRows = 50_000
	}
	if c.FetchMaxRecords <= 0 {
		c.FetchMaxRecords = 4096
	}
	if c.MaxBufferedRecords <= 0 {
		c.MaxBufferedRecords = kafkalog.DefaultMaxBufferedRecords
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxResidentActors <= 0 {
		c.MaxResidentActors = 1_000_000
	}
	if c.EventPartitions <= 0 {
		c.EventPartitions = c.Partitions
	}
	if c.KeysPerAccount <= 0 {
		c.KeysPerAccount = ledger.DefaultKeysPerAccount
	}
	if c.TrimInterval <= 0 {
		c.TrimInterval = min(max(c.CommandsRetention/4, time.Second), time.Minute)
	}
}

func (c *Config) validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("engine: node ID is required")
	case c.Partitions <= 0:
		return errors.New("engine: partition count must be positive")
	case c.Ack != AckApplied && c.Ack != AckFlushed:
		return fmt.Errorf("engine: ack must be %q or %q, got %q", AckApplied, AckFlushed, c.Ack)
	case c.CommandsRetention < 0:
		return fmt.Errorf("engine: commands retention must not be negative, got %v", c.CommandsRetention)
	case c.MaxUnflushedRows < c.FetchMaxRecords*2:
		return fmt.Errorf("engine: max unflushed rows (%d) must be at least twice the fetch batch (%d)", c.MaxUnflushedRows, c.FetchMaxRecords)
	}
	return nil
}

// Store is what the engine needs from storage.
type Store interface {
	actors.KeyLookup
	Acquire(ctx context.Context, p int32, node string) (epoch, nextOffset int64, err error)
	Release(ctx context.Context, p int32, node string, epoch int64) error
	LoadAccounts(ctx context.Context, ids []uuid.UUID, sinceUs int64, keysCap int) (map[uuid.UUID]*ledger.Account, error)
	Flush(ctx context.Context, b *storage.Batch) error
	Account(ctx context.Context, id uuid.UUID) (ledger.Account, error)
	// Partitions reads every partition's epoch and committed offset (a
	// flush retried after an error finds what did commit).
	Partitions(ctx context.Context) ([]storage.PartitionRow, error)
}

// Errors returned to readers.
var (
	ErrNotOwner = errors.New("engine: partition not owned by this node")
	ErrNotReady = errors.New("engine: partition is recovering")
)

// Engine consumes and applies owned partitions.
type Engine struct {
	failed atomic.Bool // a fatal error was reported (fail)
	// commitFailing: the last flush could not commit to PostgreSQL.
	commitFailing atomic.Bool
	cfg           Config
	log           *slog.Logger
	store         Store
	client        *kgo.Client
	system        *actor.ActorSystem
	// ownSystem: the engine created system and shuts it down.
	ownSystem bool
	actors    *actors.Config
	replies   actors.ReplySink
	m         *Metrics
	routing   *Routing

	mu    sync.RWMutex
	parts map[int32]*partition
	// restarts: partitions restartPartition dropped, with their backoff
	// (at most one entry per partition).
	restarts map[int32]restart

	kick   chan struct{}
	fatal  chan error
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// unflushed is work a flush took but could not commit; only the
	// flusher (and Stop, after it) touches it.
	unflushed []taken

	emitter *emitter
	reemit  *reemitter

	stopOnce sync.Once
	stopErr  error
}

// New returns an engine; Start begins consuming. system is the actor
// system account actors run in; nil creates (and Stop shuts down) one.
func New(cfg Config, log *slog.Logger, store Store, client *kgo.Client, replies actors.ReplySink, m *Metrics, system *actor.ActorSystem) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Routing == nil {
		cfg.Routing = NewRouting(NewRoutes(ledger.NewSlotMap(cfg.Partitions)), nil, log)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	e := &Engine{
		cfg: cfg, log: log, store: store, client: client, replies: replies, m: m,
		parts: make(map[int32]*partition), restarts: make(map[int32]restart),
		routing: cfg.Routing,
		kick:    make(chan struct{}, 1),
		fatal:   make(chan error, 1),
	}
	e.emitter = newEmitter(e)
	e.reemit = newReemitter(e)
	e.system = system
	if system == nil {
		e.ownSystem = true
		e.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return log.With("component", "actors")
		}))
	}
	return e, nil
}

// Start starts the engine and acquires the given partitions (a cluster
// coordinator passes none and calls Acquire and Release as ownership
// moves). It returns once they are acquired; recovery (replay) continues in
// the background and Ready reports its end.
func (e *Engine) Start(ctx context.Context, partitions []int32) error {
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.actors = &actors.Config{
		Lookup: unflushedFirst{e}, Ctx: e.ctx,
		OnLookup: e.m.keyLookups.Inc,
		OnLookupError: func(err error) {
			e.m.storageErrors.Inc()
			e.log.Warn("key lookup failed; retrying", "err", err)
		},
	}
	if e.cfg.LogDurable != nil {
		go e.emitter.run()
	}
	e.wg.Add(3)
	go e.fetchLoop()
	go e.flushLoop()
	go e.reemit.run()
	if e.cfg.CommandsRetention > 0 {
		e.wg.Add(1)
		go e.trimLoop()
	}
	return e.Acquire(ctx, partitions...)
}

// Acquire takes the given partitions: bump each one's epoch in PostgreSQL
// (fencing any earlier owner), start consuming at its committed offset and
// replay to the log end seen now before reporting it ready. Partitions
// already owned are skipped.
func (e *Engine) Acquire(ctx context.Context, partitions ...int32) error {
	// Not the ones owned, nor the ones restarted and still in their
	// backoff.
	partitions = slices.DeleteFunc(slices.Clone(partitions), func(p int32) bool { return e.partition(p) != nil || !e.restartDue(p) })
	if len(partitions) == 0 {
		return nil
	}
	ends, err := e.endOffsets(ctx)
	if err != nil {
		return err
	}
	for _, p := range partitions {
		if err := e.acquire(ctx, p, ends[p]); err != nil {
			return err
		}
	}
	return nil
}

// Release hands partition p off gracefully: stop fetching it, let its worker
// finish the batch in hand, flush everything it applied, clear the owner in
// PostgreSQL (keeping the epoch, so the next acquisition still fences) and
// stop its actors.
func (e *Engine) Release(ctx context.Context, id int32) error {
	p := e.partition(id)
	if p == nil {
		return nil
	}
	e.client.RemoveConsumePartitions(map[string][]int32{kafkalog.TopicCommands: {id}})
	p.halt()
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		p.mu.Lock()
		flushed := p.committed >= p.applied && p.buf.size() == 0
		changed := p.changed
		p.mu.Unlock()
		if flushed || p.stopped.Load() {
			break
		}
		e.kickFlush()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
	if p.stopped.Load() {
		return nil // fenced meanwhile: nothing of ours to release
	}
	e.mu.Lock()
	if e.parts[id] == p {
		delete(e.parts, id)
		// Again: a hold that ended before the worker did may have added
		// the partition back.
		e.client.RemoveConsumePartitions(map[string][]int32{kafkalog.TopicCommands: {id}})
	}
	e.mu.Unlock()
	p.stop()
	if err := e.store.Release(ctx, id, e.cfg.NodeID, p.epoch); err != nil {
		return err
	}
	e.log.Info("partition released", "partition", id, "epoch", p.epoch, "offset", p.committed)
	return nil
}

func (e *Engine) endOffsets(ctx context.Context) (map[int32]int64, error) {
	for {
		ends, err := kafkalog.EndOffsets(ctx, e.client)
		if err == nil {
			return ends, nil
		}
		e.log.Warn("listing end offsets failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// acquire takes partition p: bump the epoch, start consuming at the
// committed offset, and replay up to end before reporting ready.
func (e *Engine) acquire(ctx context.Context, p int32, end int64) error {
	epoch, next, err := e.store.Acquire(ctx, p, e.cfg.NodeID)
	if err != nil {
		return err
	}
	// The routes as PostgreSQL has them now: every handover an earlier
	// owner of p committed is in them, so a replay from past a barrier
	// forwards the group's records instead of applying them (rule: a
	// barrier before the committed offset means its handover is stored).
	if err := e.routing.Refresh(ctx); err != nil {
		return fmt.Errorf("engine: partition %d: reading the slot map: %w", p, err)
	}
	if next > end {
		// PostgreSQL has applied records the log does not hold: the log was
		// reset or lost (a broker's data directory deleted, a topic
		// recreated). Consuming would skip whatever is appended up to the
		// committed offset.
		// Nothing here can repair it: stop the node rather than retry.
		err := fmt.Errorf("engine: partition %d of %s ends at offset %d, but PostgreSQL has applied it up to %d: the log lost records; restore it or repair the partitions table", p, kafkalog.TopicCommands, end, next)
		e.fail(err)
		return err
	}
	part := newPartition(e, p, epoch, next, end)
	e.mu.Lock()
	e.parts[p] = part
	e.mu.Unlock()
	e.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{
		kafkalog.TopicCommands: {p: kgo.NewOffset().At(next)},
	})
	e.wg.Add(1)
	go part.run()
	e.log.Info("partition acquired", "partition", p, "epoch", epoch, "offset", next, "end_offset", end)
	return nil
}

// Fatal delivers the error that stopped the engine (a broken invariant).
func (e *Engine) Fatal() <-chan error { return e.fatal }

func (e *Engine) fail(err error) {
	e.failed.Store(true)
	select {
	case e.fatal <- err:
	default:
	}
}

// Ready reports whether every owned partition has replayed to the end it
// saw when acquired (true when it owns none).
func (e *Engine) Ready() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, p := range e.parts {
		if !p.ready.Load() && !p.held.Load() {
			return false
		}
	}
	return true
}

// Saturated reports whether some owned partition cannot go on without
// PostgreSQL: its write-behind is full (MaxUnflushedRows: it has stopped
// consuming until a flush lands), or its worker waits to load accounts.
func (e *Engine) Saturated() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, p := range e.parts {
		if p.loadWaiting.Load() || p.full() {
			return true
		}
	}
	return false
}

// WaitsForStorage reports whether owned partition id applies nothing
// until PostgreSQL answers: its worker retries loading accounts, or its
// write-behind is full while flushes fail to commit. A write sent there
// now could only wait; the ingress refuses it instead
// (DATABASE_UNAVAILABLE). A full write-behind while commits succeed is
// ordinary back-pressure, and false.
func (e *Engine) WaitsForStorage(id int32) bool {
	p := e.partition(id)
	if p == nil {
		return false
	}
	return p.loadWaiting.Load() || (e.commitFailing.Load() && p.full())
}

// Stopped reports whether the engine has stopped (Stop, or a fatal error).
func (e *Engine) Stopped() bool { return e.ctx.Err() != nil || e.failed.Load() }

// Owned lists owned partitions.
func (e *Engine) Owned() []int32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]int32, 0, len(e.parts))
	for p := range e.parts {
		out = append(out, p)
	}
	return out
}

// OwnedEpochs returns the owned partitions with the epoch each was
// acquired under.
func (e *Engine) OwnedEpochs() map[int32]int64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[int32]int64, len(e.parts))
	for id, p := range e.parts {
		out[id] = p.epoch
	}
	return out
}

// Drop stops partition p at once as if a flush had been fenced: another
// node acquired it.
func (e *Engine) Drop(id int32) {
	if p := e.partition(id); p != nil {
		e.fence(p)
	}
}

func (e *Engine) partition(p int32) *partition {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.parts[p]
}

// Account returns the current state of an account in partition p, from its
// actor when resident (including unflushed changes), else from PostgreSQL
// (which is then complete: actors passivate only once flushed).
//
// While the account's slot moves, its old partition answers until the
// move is handed over and its new one after; p, the caller's guess, gives
// way to this node's routes. The old partition refuses (ErrNotReady) once
// it has passed the move's barrier: its state is final, but the new
// partition may apply on it as soon as the handover commits.
func (e *Engine) Account(ctx context.Context, p int32, id uuid.UUID) (ledger.Account, error) {
	rt := e.routing.Load()
	if q := rt.PartitionOf(id); q != p {
		if e.partition(q) == nil {
			e.routing.Kick() // the caller may know a newer map
			return ledger.Account{}, ErrNotOwner
		}
		p = q
	}
	part := e.partition(p)
	if part == nil {
		return ledger.Account{}, ErrNotOwner
	}
	if !part.ready.Load() && !(part.held.Load() && part.heldCaughtUp.Load()) {
		// A partition holding before the end it saw at acquisition has
		// not replayed what an earlier owner may have answered.
		return ledger.Account{}, ErrNotReady
	}
	if rt.Mig != nil {
		if g := rt.Mig.GroupOf(ledger.SlotOf(id)); g >= 0 && !rt.Handed(g) && part.passedBarrier(rt.Slots.Version, g) {
			return ledger.Account{}, ErrNotReady
		}
	}
	part.mu.RLock()
	r := part.residents[id]
	part.mu.RUnlock()
	if r != nil {
		timeout := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		res, err := e.system.Root.RequestFuture(r.pid, &actors.Read{}, timeout).Result()
		if err == nil {
			acc := res.(ledger.Account)
			return acc, nil
		}
		// The actor was passivated between the lookup and the request: it
		// was flushed, so PostgreSQL has its state.
		e.m.readFallbacks.Inc()
	}
	acc, err := e.store.Account(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return ledger.Account{ID: id}, nil
	}
	return acc, err
}

// Stop stops fetching, lets every partition finish its current batch,
// flushes everything pending, releases the partitions and stops the actors.
func (e *Engine) Stop(ctx context.Context) error {
	if e.cancel == nil {
		return nil
	}
	e.stopOnce.Do(func() { e.stopErr = e.stop(ctx) })
	return e.stopErr
}

func (e *Engine) stop(ctx context.Context) error {
	e.cancel()
	e.mu.RLock()
	for _, p := range e.parts {
		p.mu.Lock()
		p.space.Broadcast() // wake workers waiting at the unflushed limit
		p.mu.Unlock()
	}
	e.mu.RUnlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("engine: stop: %w", ctx.Err())
	}
	err := e.flushAll(ctx, true)
	e.emitter.close()
	e.mu.RLock()
	parts := make([]*partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.RUnlock()
	for _, p := range parts {
		if rerr := e.store.Release(ctx, p.id, e.cfg.NodeID, p.epoch); rerr != nil && err == nil {
			err = rerr
		}
	}
	if e.ownSystem {
		e.system.Shutdown()
	}
	return err
}

// fetchLoop polls owned partitions and hands each partition's records to
// its worker. A slow worker blocks the loop, so records wait in Kafka.
// fetchBackoffMin and fetchBackoffMax bound the wait after a fetch that
// returned errors.
const (
	fetchBackoffMin = 10 * time.Millisecond
	fetchBackoffMax = time.Second
)

func (e *Engine) fetchLoop() {
	defer e.wg.Done()
	backoff := fetchBackoffMin
	for e.ctx.Err() == nil {
		fs := e.client.PollRecords(e.ctx, e.cfg.FetchMaxRecords)
		if e.ctx.Err() != nil {
			return
		}
		if fs.IsClientClosed() {
			// Nothing more will come (a start-up that failed after the
			// engine started closes the client first): looping would spin,
			// and an engine that fetches nothing must not look alive.
			e.log.Warn("fetch loop ends: the Kafka client is closed")
			e.fail(errors.New("engine: the Kafka client was closed while the engine ran"))
			return
		}
		failed := false
		fs.EachError(func(topic string, p int32, err error) {
			failed = true
			e.m.fetchErrors.Inc()
			e.log.Warn("fetch error", "partition", p, "err", err)
		})
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if ftp.Topic != kafkalog.TopicCommands || len(ftp.Records) == 0 {
				return
			}
			part := e.partition(ftp.Partition)
			if part == nil || part.stopped.Load() {
				return
			}
			select {
			case part.in <- ftp.Records:
			case <-part.quit:
			case <-e.ctx.Done():
			}
		})
		if failed {
			// Errors come back at once while the broker is unreachable;
			// back off instead of logging thousands a second.
			select {
			case <-time.After(backoff):
			case <-e.ctx.Done():
				return
			}
			backoff = min(2*backoff, fetchBackoffMax)
		} else {
			backoff = fetchBackoffMin
		}
	}
}

// logWritten reports a partition written or fetched to the log's group
// sync (Config.LogWritten).
func (e *Engine) logWritten(r *kgo.Record) {
	if e.cfg.LogWritten != nil {
		e.cfg.LogWritten(r)
	}
}

func (e *Engine) kickFlush() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) flushLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		if err := e.flushAll(e.ctx, false); err != nil && e.ctx.Err() == nil {
			e.log.Error("flush failed", "err", err)
		}
	}
}

// PartitionStats is one owned partition as `bursar cluster status` shows it.
type PartitionStats struct {
	Partition     int32 `json:"partition"`
	Epoch         int64 `json:"epoch"`
	Applied       int64 `json:"applied_offset"`   // next offset to apply
	Committed     int64 `json:"committed_offset"` // next offset PostgreSQL has
	End           int64 `json:"end_offset_at_acquire"`
	UnflushedRows int   `json:"unflushed_rows"`
	Resident      int   `json:"resident_actors"`
	Ready         bool  `json:"ready"`
	// Holding: the partition waits for a moving group's handover.
	Holding bool `json:"holding"`
}

// Stats returns every owned partition's counters, by partition.
func (e *Engine) Stats() []PartitionStats {
	e.mu.RLock()
	parts := make([]*partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.RUnlock()
	out := make([]PartitionStats, 0, len(parts))
	for _, p := range parts {
		p.mu.RLock()
		out = append(out, PartitionStats{
			Partition: p.id, Epoch: p.epoch, Applied: p.applied, Committed: p.committed, End: p.end,
			UnflushedRows: p.buf.size(), Resident: len(p.residents), Ready: p.ready.Load(), Holding: p.held.Load(),
		})
		p.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b PartitionStats) int { return int(a.Partition - b.Partition) })
	return out
}
