package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/cluster"
	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/ingress"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// runningNode is one running `bursar serve`: what its start steps built, for the
// later steps and for the shutdown. closers run in reverse on close.
type runningNode struct {
	f                     serveFlags
	log                   *slog.Logger
	runIngress, runEngine bool
	closers               []func()

	// startLog
	reg *prometheus.Registry
	// durable covers every topic (offset commits wait for it),
	// durableCommands bursar.commands only (202 answers and balance reads),
	// durableAt one command record (the engine, before it answers),
	// written reports records to the group sync or the journal; all nil
	// unless the embedded broker runs --broker-sync=group or journal.
	durable, durableCommands func(context.Context) error
	durableAt                func(ctx context.Context, partition int32, offset int64) error
	written                  func(r *kgo.Record)
	// The engine's client (consumes, produces legs), the API's and the
	// events': a client keeps one produce request in flight per broker
	// (idempotent writes), so each stream gets its own rather than wait
	// behind the others.
	engineClient, apiClient, eventsClient *kgo.Client
	disk                                  *diskGuard       // the data directory's free space
	broker                                *kafkalog.Broker // the embedded broker, if this node runs it
	parts, eventParts                     int32
	slots                                 *ledger.SlotMap // the newest slot map at start (loadSlotMap)
	routing                               *engine.Routing // the routing authority, from PostgreSQL, kept fresh
	migrator                              *engine.Migrator
	migrations                            *nodeMigrations
	logID                                 string                // bursar.commands' topic ID: names this ledger in Redis keys
	redis                                 *ingress.RedisLink    // startRedis; never nil after it
	redisCtx                              context.Context       // ends when the node closes
	balances                              *ingress.BalanceCache // nil: every balance read is strong
	stages                                *engine.Stages

	// openStore
	store *storage.Store

	// startCluster
	system  *actor.ActorSystem
	members *cluster.Membership
	left    bool

	// startEngine
	replies   *ingress.Replies
	eng       *engine.Engine
	router    *cluster.Router
	stopCoord context.CancelFunc
	coordDone chan struct{}
	settled   func() bool

	// startAPI
	httpSrv interface {
		ShutdownWithContext(context.Context) error
	}
	httpErr  chan error
	adminSrv interface {
		ShutdownWithContext(context.Context) error
	}
}

func (n *runningNode) deferClose(fn func()) { n.closers = append(n.closers, fn) }

// close runs the closers, last first.
func (n *runningNode) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

func (n *runningNode) startPprof(context.Context) error {
	if n.f.pprofAddr == "" {
		return nil
	}
	go func() {
		// The default mux carries net/http/pprof's handlers.
		if err := http.ListenAndServe(n.f.pprofAddr, nil); err != nil {
			n.log.Warn("pprof server stopped", "err", err)
		}
	}()
	return nil
}

// startLog starts the embedded broker when --kafka-brokers is empty,
// creates the Kafka clients and the topics, and the metrics registry.
func (n *runningNode) startLog(ctx context.Context) error {
	f := n.f
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.stages = engine.NewStages(n.reg)
	brokers := splitList(f.kafkaBrokers)
	if len(brokers) == 0 {
		addrs, err := n.startBroker()
		if err != nil {
			return err
		}
		brokers = addrs
	}
	client := func(suffix string) (*kgo.Client, error) {
		cl, err := kgo.NewClient(append(kafkalog.ClientConfig{Brokers: brokers, ClientID: "bursar-" + f.nodeID + suffix, Linger: f.kafkaLinger}.Options(), f.kafkaOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		n.deferClose(cl.Close)
		return cl, nil
	}
	var err error
	if n.engineClient, err = client(""); err != nil {
		return err
	}
	if n.apiClient, err = client("-ingress"); err != nil {
		return err
	}
	if n.eventsClient, err = client("-events"); err != nil {
		return err
	}
	if f.kafkaSecurity.Enabled() {
		// A refused credential or certificate will not pass by retrying:
		// say so now, naming the flags, rather than retry in silence.
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := n.engineClient.Ping(pctx)
		cancel()
		switch {
		case err != nil && kafkaAuthError(err):
			return &exitError{code: 1, err: fmt.Errorf("reaching Kafka at %s: %w (check --kafka-tls-* and --kafka-sasl-*)", f.kafkaBrokers, err)}
		case err != nil:
			// Some brokers close the connection on a bad credential
			// rather than answer with an error.
			return &exitError{code: 1, err: fmt.Errorf("reaching Kafka at %s with TLS or SASL: %w (a refused credential or certificate, or no broker there: check --kafka-brokers, --kafka-tls-* and --kafka-sasl-*)", f.kafkaBrokers, err)}
		}
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir %s: %w", f.dataDir, err)
	}
	n.disk = newDiskGuard(f.dataDir, uint64(f.diskReserve), uint64(f.diskLow), n.log.With("component", "disk"), n.reg)
	dctx, dstop := context.WithCancel(context.Background())
	go n.disk.run(dctx)
	n.deferClose(dstop)
	eventParts := f.eventPartitions
	if eventParts == 0 {
		eventParts = f.partitions
	}
	// -1: the cluster's default replication factor.
	n.parts, n.eventParts, err = kafkalog.EnsureTopics(ctx, n.engineClient, kafkalog.Topics{
		Partitions: int32(f.partitions), EventPartitions: int32(eventParts), Replication: -1,
		EventsRetention: f.eventsRetention, EventsRetentionBytes: f.eventsRetentionBytes,
	})
	if err != nil {
		return err
	}
	if n.broker != nil {
		// Records journaled in these topics are restorable only into
		// topics whose metadata is on disk.
		if err := n.broker.SyncFiles(); err != nil {
			return fmt.Errorf("embedded broker: syncing after creating the topics: %w", err)
		}
	}
	if n.parts != int32(f.partitions) {
		n.log.Warn("command topic exists with a different partition count; using it", "partitions", n.parts, "flag", f.partitions)
	}
	if n.eventParts != int32(eventParts) {
		n.log.Warn("event topic exists with a different partition count; using it", "partitions", n.eventParts, "flag", eventParts)
	}
	return nil
}

// kafkaAuthError reports whether err is a broker refusing the client's
// SASL credential or the client refusing the broker's certificate.
func kafkaAuthError(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &record)
}

// startBroker starts the embedded broker and returns its addresses.
func (n *runningNode) startBroker() ([]string, error) {
	f := n.f
	syncSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "bursar_broker_sync_seconds", Help: "Duration of the embedded broker's durability rounds: with --broker-sync=journal one write and fdatasync of the journal file; with group an fdatasync of each segment file written since the last round, or one syncfs when more than two were.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
	})
	syncErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bursar_broker_sync_errors_total", Help: "Failed group syncs of the embedded broker (each fails the node: written pages may be lost).",
	})
	checkpointSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "bursar_broker_checkpoint_seconds", Help: "Duration of the embedded broker's journal checkpoints (--broker-sync=journal): a sync of the broker's files once a journal file is full, after which that file is removed.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	checkpointErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bursar_broker_checkpoint_errors_total", Help: "Failed journal checkpoints of the embedded broker (each fails the node).",
	})
	noSpace := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bursar_broker_no_space_errors_total", Help: "Writes of the embedded broker's own files that failed for want of space (ENOSPC, EDQUOT); each also refuses writes at once (503 STORAGE_FULL) until the disk guard sees space again.",
	})
	n.reg.MustRegister(noSpace)
	mode, _ := kafkalog.ParseSync(f.brokerSync) // checked with the flags
	b, err := kafkalog.StartBroker(kafkalog.BrokerConfig{DataDir: f.dataDir, Listen: f.brokerListen, Sync: mode, Log: n.log,
		OnNoSpace: func(err error) {
			noSpace.Inc()
			if n.disk != nil {
				n.disk.noSpace(err)
			}
		},
		OnSync: func(d time.Duration, err error) {
			syncSeconds.Observe(d.Seconds())
			if err != nil {
				syncErrors.Inc()
			}
		},
		OnCheckpoint: func(d time.Duration, err error) {
			checkpointSeconds.Observe(d.Seconds())
			if err != nil {
				checkpointErrors.Inc()
			}
		}})
	if errors.Is(err, kafkalog.ErrDataDirInUse) {
		return nil, &exitError{code: 1, err: fmt.Errorf("--data-dir %s: %w; give each node its own data directory", f.dataDir, err)}
	}
	if err != nil {
		return nil, err
	}
	n.broker = b
	n.deferClose(func() {
		if err := b.Close(); err != nil {
			n.log.Error("embedded broker: closing", "err", err)
		}
	})
	if s := b.Sync(); s == kafkalog.SyncGroup || s == kafkalog.SyncJournal {
		n.durable, n.durableCommands, n.durableAt, n.written = b.Durable, b.DurableCommands, b.DurableAt, b.Written
		n.reg.MustRegister(syncSeconds, syncErrors)
		if s == kafkalog.SyncJournal {
			n.reg.MustRegister(checkpointSeconds, checkpointErrors)
		}
	}
	n.log.Info("embedded development broker started", "addrs", b.Addrs(), "data_dir", f.dataDir, "sync", b.Sync())
	return b.Addrs(), nil
}

// openStore opens PostgreSQL and applies the migrations.
func (n *runningNode) openStore(ctx context.Context) error {
	store, err := storage.Open(ctx, storage.Config{URL: n.f.databaseURL, MaxConns: int32(n.f.pgConns)})
	if err != nil {
		return err
	}
	n.store = store
	n.deferClose(store.Close)
	applied, err := store.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		n.log.Info("migrations applied", "names", applied)
	}
	if err := n.checkLogIdentity(ctx); err != nil {
		return err
	}
	return n.loadSlotMap(ctx)
}

// loadSlotMap reads the slot map PostgreSQL holds (version 0 for the
// command topic's partitions on a cluster's first start): the routing
// authority of this node's ingress and engine. A map routing to more
// partitions than the topic has is refused; a topic with more partitions
// than the map uses is served (the extra ones stay empty).
func (n *runningNode) loadSlotMap(ctx context.Context) error {
	if n.parts > ledger.PartitionsMax {
		return &exitError{code: 1, err: fmt.Errorf("%s has %d partitions; a slot map spreads its slots over at most %d (a topic that large cannot be served by this release)",
			kafkalog.TopicCommands, n.parts, ledger.PartitionsMax)}
	}
	m, err := n.store.InitSlotMap(ctx, n.parts)
	if err != nil {
		return fmt.Errorf("loading the slot map: %w", err)
	}
	if m.Partitions > n.parts {
		return &exitError{code: 1, err: fmt.Errorf("the slot map (version %d) routes to %d partitions, but %s has %d: grow the topic to %d partitions (kafka-topics --alter), or point the node at the log this database was built from",
			m.Version, m.Partitions, kafkalog.TopicCommands, n.parts, m.Partitions)}
	}
	if m.Partitions < n.parts {
		n.log.Warn("the command topic has more partitions than the slot map routes to; the extra ones stay empty", "topic_partitions", n.parts, "slot_map_partitions", m.Partitions, "slot_map_version", m.Version)
	}
	n.slots = m
	st, err := n.store.RouteState(ctx)
	if err != nil {
		return fmt.Errorf("loading the slot map: %w", err)
	}
	n.routing = engine.NewRouting(engine.RoutesFrom(st), n.store, n.log.With("component", "routing"), n.engineClient, n.apiClient)
	if hd, groups := n.routing.Load().Progress(); groups > 0 {
		n.log.Warn("a slot migration is in flight; its driver (bursar partitions scale, or this node after a while) finishes it", "slot_map_version", m.Version, "groups", groups, "handed_over", hd)
	}
	n.migrator = &engine.Migrator{Store: n.store, Client: n.engineClient, Log: n.log.With("component", "migrator"), Routing: n.routing}
	return nil
}

// checkLogIdentity refuses a log that is not the one the database was
// built from (rule 9): another embedded broker's data directory, another
// Kafka cluster, a recreated topic. Its offsets would mean other records.
func (n *runningNode) checkLogIdentity(ctx context.Context) error {
	clusterID, topicID, err := kafkalog.LogIdentity(ctx, n.engineClient)
	if err != nil {
		return err
	}
	ends, err := kafkalog.EndOffsets(ctx, n.engineClient)
	if err != nil {
		return err
	}
	n.logID = topicID
	recorded, err := n.store.CheckLogIdentity(ctx, clusterID, topicID, ends)
	if errors.Is(err, storage.ErrOtherLog) {
		where := "--kafka-brokers " + n.f.kafkaBrokers
		if n.f.kafkaBrokers == "" {
			where = "--data-dir " + n.f.dataDir + " (the embedded broker's log)"
		}
		return &exitError{code: 1, err: fmt.Errorf("%w. DATABASE_URL (--database-url) and %s belong to different logs: point them at the pair that was built together, or give this log a new database", err, where)}
	}
	if err != nil {
		return err
	}
	if recorded {
		n.log.Info("log identity recorded in the database", "cluster_id", clusterID, "topic_id", topicID)
	}
	return nil
}

// checkPorts reports an address another process holds as an error naming
// its flag, before anything starts: protoactor's remote panics on a
// failed listen, and the others would fail midway through the start.
func (n *runningNode) checkPorts(context.Context) error {
	f := n.f
	type bind struct{ flag, network, addr string }
	binds := []bind{{"--http-addr", "tcp", f.httpAddr}, {"--admin-addr", "tcp", f.adminAddr}, {"--remote-addr", "tcp", f.remoteAddr},
		{"--gossip-addr", "tcp", f.gossipAddr}, {"--gossip-addr", "udp", f.gossipAddr}}
	if f.kafkaBrokers == "" {
		binds = append(binds, bind{"--broker-listen", "tcp", f.brokerListen})
	}
	if f.pprofAddr != "" {
		binds = append(binds, bind{"--pprof-addr", "tcp", f.pprofAddr})
	}
	for _, b := range binds {
		if err := canListen(b.network, b.addr); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%s %s: %w", b.flag, b.addr, err)}
		}
		tlsOn := (f.tlsCert != "" && (b.flag == "--http-addr" || b.flag == "--admin-addr")) ||
			(f.remoteTLSCert != "" && b.flag == "--remote-addr") || (len(f.gossipKeys) > 0 && b.flag == "--gossip-addr")
		if b.network == "tcp" && !loopback(b.addr) && !tlsOn {
			n.log.Warn("a listener binds beyond loopback without TLS: what it carries (requests, answers, gossip) is readable and forgeable by anyone on the network",
				"flag", b.flag, "addr", b.addr)
		}
	}
	return nil
}

// loopback reports whether addr's host is a loopback address or name
// (an empty host, ":8080", binds every interface).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// canListen binds addr and lets it go at once.
func canListen(network, addr string) error {
	if network == "udp" {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// startCluster starts the actor system with remote (answers and reads
// between nodes), then gossip. A single node is a cluster of one.
func (n *runningNode) startCluster(context.Context) error {
	f := n.f
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return n.log.With("component", "actors")
	}))
	n.deferClose(n.system.Shutdown)
	remoteHost, remotePort, err := hostPort(f.remoteAddr)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--remote-addr: %w", err)}
	}
	remoteOpts, err := remoteTLS(f.remoteTLSCert, f.remoteTLSKey, f.remoteTLSCA)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	remoteOpts = append(remoteOpts, remote.WithAdvertisedHost(net.JoinHostPort(advertiseHost(remoteHost, f.advertiseHost), strconv.Itoa(remotePort))))
	rem := remote.NewRemote(n.system, remote.Configure(remoteHost, remotePort, remoteOpts...))
	rem.Start()
	n.deferClose(func() { rem.Shutdown(false) })
	var roles []string
	if n.runIngress {
		roles = append(roles, "ingress")
	}
	if n.runEngine {
		roles = append(roles, "engine")
	}
	httpHost, httpPort, err := hostPort(f.httpAddr)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--http-addr: %w", err)}
	}
	adminHost, adminPort, err := hostPort(f.adminAddr)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--admin-addr: %w", err)}
	}
	// Only a node with the ingress role serves the admin listener.
	adminAdvertised := ""
	if n.runIngress {
		adminAdvertised = net.JoinHostPort(advertiseHost(adminHost, f.advertiseHost), strconv.Itoa(adminPort))
	}
	n.members, err = cluster.Join(cluster.MembershipConfig{
		Meta: cluster.Meta{
			ID: f.nodeID, Roles: roles,
			HTTP:    net.JoinHostPort(advertiseHost(httpHost, f.advertiseHost), strconv.Itoa(httpPort)),
			Admin:   adminAdvertised,
			Records: ledger.RecordVersionMax, SlotMap: n.routing.Load().Slots.Version,
			Remote: net.JoinHostPort(advertiseHost(remoteHost, f.advertiseHost), strconv.Itoa(remotePort)),
		},
		BindAddr: f.gossipAddr, Join: splitList(f.join), ProbeInterval: f.probeInterval, Keys: f.gossipKeys,
	}, n.log.With("component", "cluster"))
	if err != nil {
		return err
	}
	members := n.members
	n.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bursar_gossip_rejected_total", Help: "Gossip messages refused as not authenticated with --gossip-key (membership unchanged).",
	}, func() float64 { return float64(members.Rejected()) }))
	if len(f.gossipKeys) == 0 && !loopback(f.gossipAddr) {
		n.log.Warn("gossip beyond loopback without --gossip-key: any process that reaches --gossip-addr can join the cluster and take partitions", "addr", f.gossipAddr)
	}
	n.deferClose(n.leave)
	mctx, stop := context.WithCancel(context.Background())
	n.deferClose(stop)
	n.migrations = &nodeMigrations{ctx: mctx, log: n.log.With("component", "migrator"), mig: n.migrator,
		routing: n.routing, members: n.members, resumeIn: 10 * time.Second}
	n.migrations.watchRoutes()
	go n.migrations.run()
	return nil
}

func (n *runningNode) leave() {
	if !n.left {
		n.left = true
		n.members.Leave(5 * time.Second)
	}
}

// startEngine builds the reply registry and the router, and with the
// engine role the engine and its coordinator.
func (n *runningNode) startEngine(ctx context.Context) error {
	f := n.f
	n.replies = ingress.NewReplies(f.nodeID+"/"+strconv.FormatInt(time.Now().UnixNano(), 36), f.maxInflight)
	routerCfg := cluster.RouterConfig{
		Self: f.nodeID, System: n.system, Members: n.members, Partitions: n.parts,
		ErrNotOwner: engine.ErrNotOwner, ErrNotReady: engine.ErrNotReady,
	}
	if n.runIngress {
		routerCfg.Replies = n.replies
	}
	var err error
	if n.runEngine {
		// The engine answers through the router; the router reads through
		// the engine.
		var sink lateSink
		n.eng, err = engine.New(engine.Config{
			NodeID: f.nodeID, Partitions: n.parts, Routing: n.routing, Ack: f.ack, FlushRows: f.flushRows,
			FlushInterval: f.flushInterval, MaxUnflushedRows: f.maxUnflushed, FetchMaxRecords: f.fetchMax,
			IdleTimeout: f.idleTimeout, MaxResidentActors: f.maxResident, KeysPerAccount: f.keys,
			DisableEvents: !f.events, EventPartitions: n.eventParts, CommandsRetention: f.commandsRetention,
			EventsProducer: n.eventsClient, LogDurable: n.durable, CommandsDurableAt: n.durableAt,
			LogWritten: n.written, Stages: n.stages, AccountsCommitted: n.accountsCommitted(),
		}, n.log.With("component", "engine"), n.store, n.engineClient, &sink, engine.NewMetrics(n.reg), n.system)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		routerCfg.Engine = n.eng
		if n.router, err = cluster.NewRouter(routerCfg, n.log.With("component", "router")); err != nil {
			return err
		}
		sink.r = n.router
		if err := n.eng.Start(ctx, nil); err != nil {
			return err
		}
	} else if n.router, err = cluster.NewRouter(routerCfg, n.log.With("component", "router")); err != nil {
		return err
	}
	router := n.router
	n.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_cluster_replies_forwarded_total", Help: "Answers sent to the node whose ingress waits for them."},
			func() float64 { return float64(router.Forwarded.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_cluster_replies_unroutable_total", Help: "Answers for a node that is not a live member (dropped)."},
			func() float64 { return float64(router.ForeignDropped.Load()) }),
	)

	var coord *cluster.Coordinator
	coordCtx, stopCoord := context.WithCancel(context.Background())
	n.stopCoord = stopCoord
	n.deferClose(stopCoord)
	n.coordDone = make(chan struct{})
	if n.runEngine {
		routing, topicParts := n.routing, n.parts
		coord = cluster.NewCoordinator(f.nodeID, func() int32 { return max(topicParts, routing.Load().Partitions()) }, n.members, n.eng, n.store, n.log.With("component", "coordinator"))
		go func() { coord.Run(coordCtx); close(n.coordDone) }()
	} else {
		close(n.coordDone)
	}
	// settled: this node owns what the rendezvous gives it. /readyz checks
	// the engine's replay itself; the node view wants both.
	n.settled = func() bool { return coord == nil || coord.Settled() }
	return nil
}

// readyCheck is the node's part of /readyz (ingress.ReadyCheck): it fails
// whenever this node cannot serve a write end to end.
func (n *runningNode) readyCheck(pgDown bool) (check, reason string) {
	if len(cluster.EngineNodes(n.members.Members())) == 0 {
		return "partitions", "no owner: no engine node takes partitions (every one is draining, or none runs)"
	}
	if n.eng != nil && n.eng.Stopped() {
		return "engine", "stopped"
	}
	if n.disk != nil && n.disk.Full() {
		return "disk", fmt.Sprintf("full: %d bytes free, below --disk-reserve-bytes %d; writes refused", n.disk.last.Load(), n.f.diskReserve)
	}
	if !n.settled() {
		return "partitions", "acquiring"
	}
	if !n.router.Ready() {
		return "partitions", "recovering"
	}
	if pgDown && (n.eng == nil || n.eng.Saturated()) {
		if n.eng == nil {
			return "postgres", "unreachable"
		}
		return "postgres", "unreachable, and a partition cannot go on without it (its write-behind is full, --max-unflushed-rows, or it waits to load accounts): writes wait"
	}
	return "", ""
}

// startAPI serves the REST API with the ingress role.
func (n *runningNode) startAPI(ctx context.Context) error {
	f := n.f
	n.httpErr = make(chan error, 1)
	if !n.runIngress {
		return nil
	}
	limiter, idem := n.apiRedis()
	var (
		verifier  ingress.Authenticator
		directory ingress.Directory
	)
	if f.authMode == "on" {
		v, err := auth.NewVerifier(ctx, n.store, f.authRefresh, n.log.With("component", "auth"))
		if err != nil {
			return fmt.Errorf("loading API keys: %w", err)
		}
		actx, astop := context.WithCancel(context.Background())
		go v.Run(actx)
		n.deferClose(astop)
		n.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_auth_key_loads_total", Help: "Loads of the API keys from PostgreSQL (every --auth-refresh, and for an unknown key ID at most once a second)."},
				func() float64 { return float64(v.Loads.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_auth_key_load_errors_total", Help: "Failed loads of the API keys; the keys loaded before stay in use."},
				func() float64 { return float64(v.LoadErrors.Load()) }),
		)
		n.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_auth_logins_total", Help: "Successful logins (POST /api/v1/auth/token)."},
				func() float64 { return float64(v.Logins.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_auth_login_failures_total", Help: "Logins refused for a wrong username or password or a disabled user."},
				func() float64 { return float64(v.LoginFailures.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bursar_auth_login_busy_total", Help: "Logins refused because the password checks in progress were at their limit (4)."},
				func() float64 { return float64(v.LoginBusy.Load()) }),
		)
		verifier = v
		directory = &auth.Directory{V: v, Store: n.store, TTL: f.tokenTTL}
	} else {
		n.log.Warn("AUTHENTICATION IS OFF (--auth=off): anyone who reaches the API can open accounts, move money and drain this node; use it for local experiments only")
	}
	api, err := ingress.New(ingress.Config{
		Auth: verifier, MetricsOnAdmin: f.metricsOn == "admin", AuthFailuresPerMinute: f.authFailLimit,
		LoginFailuresPerMinute: f.loginFailLimit, Directory: directory,
		RecordVersion: n.members.RecordVersion,
		RateLimiter:   limiter, Redis: n.redis, Idem: idem, Balances: n.balances,
		Partitions: n.parts, Routing: n.routing, MaxBodyBytes: f.maxBody, WaitTimeout: f.waitTimeout, Durable: n.durableCommands,
		Written: n.written, Stages: n.stages,
		// The engine in this process answers once the answers are durable.
		AnswersDurable:    n.durableAt != nil && n.runEngine,
		MaxBatchBodyBytes: f.maxBatchBody, BatchItemsMax: f.batchItemsMax,
		WritesRefused:  n.disk.Full,
		MaxHeaderBytes: f.maxHeaderBytes, HeaderTimeout: f.httpHeaderTimeout, BodyTimeout: f.httpBodyTimeout,
		IdleTimeout: f.httpIdleTimeout, MaxConns: f.httpMaxConns, MaxConnsPerIP: connsPerIP(f.httpMaxConnsPerIP),
	}, n.log.With("component", "ingress"), n.apiClient, n.replies, n.router, n.store, n.reg,
		fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})))
	if err != nil {
		return err
	}
	ready := func() bool { check, _ := n.readyCheck(false); return check == "" }
	var stats func() any
	if n.eng != nil {
		stats = func() any { return n.eng.Stats() }
	}
	api.SetAdmin(cluster.AdminHandler(n.members, ready, stats, n.migrations),
		fasthttpadaptor.NewFastHTTPHandlerFunc(http.DefaultServeMux.ServeHTTP), n.readyCheck) // net/http/pprof's handlers
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("--http-addr %s: %w", f.httpAddr, err)}
	}
	aln, err := net.Listen("tcp", f.adminAddr)
	if err != nil {
		ln.Close()
		return &exitError{code: 1, err: fmt.Errorf("--admin-addr %s: %w", f.adminAddr, err)}
	}
	if f.tlsCert != "" {
		certs, err := newCertReloader(f.tlsCert, f.tlsKey, n.log.With("component", "tls"), n.reg)
		if err != nil {
			ln.Close()
			aln.Close()
			return &exitError{code: 1, err: err}
		}
		rctx, rstop := context.WithCancel(context.Background())
		go certs.run(rctx)
		n.deferClose(rstop)
		// Inside the connection limits: they count and frame what TLS
		// decrypted.
		ln, aln = tls.NewListener(ln, certs.config()), tls.NewListener(aln, certs.config())
	}
	asrv := api.NewAdminHTTPServer()
	n.adminSrv = asrv
	n.log.Info("serving the admin listener", "addr", aln.Addr().String())
	go func() {
		if err := api.ServeAdmin(asrv, aln); err != nil {
			n.httpErr <- fmt.Errorf("admin listener: %w", err)
		}
	}()
	srv := api.NewHTTPServer()
	n.httpSrv = srv
	n.log.Info("serving HTTP", "addr", ln.Addr().String())
	go func() { n.httpErr <- api.Serve(srv, ln) }()
	return nil
}

// connsPerIP maps --http-max-conns-per-ip (0: no limit) to
// ingress.Config.MaxConnsPerIP (0: the default, negative: no limit).
func connsPerIP(flagValue int) int {
	if flagValue == 0 {
		return -1
	}
	return flagValue
}

// waitForStop returns nil on a signal, or the failure that stops the node.
func (n *runningNode) waitForStop(ctx context.Context) error {
	var fatal <-chan error
	if n.eng != nil {
		fatal = n.eng.Fatal()
	}
	// Only this process waits for the group sync: a node that joins and
	// uses this node's broker would commit and answer before it.
	var joined <-chan error
	if n.durable != nil {
		wctx, wstop := context.WithCancel(ctx)
		defer wstop()
		joined = watchAlone(wctx, n.members, n.f.nodeID, n.f.brokerSync)
	}
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
		return nil
	case err := <-n.httpErr:
		return fmt.Errorf("http server: %w", err)
	case err := <-fatal:
		n.log.Error("engine stopped on a fatal error", "err", err)
		return fmt.Errorf("engine stopped: %w", err)
	case err := <-joined:
		n.log.Error("stopping", "err", err)
		return err
	}
}

// shutdown stops taking requests, hands the partitions off (after a
// failure only stops the engine: its partitions are fenced by the next
// owner) and returns runErr, or the engine's stop error.
func (n *runningNode) shutdown(runErr error) error {
	sctx, cancel := context.WithTimeout(context.Background(), n.f.shutdownWait)
	defer cancel()
	if n.httpSrv != nil {
		if err := n.httpSrv.ShutdownWithContext(sctx); err != nil {
			n.log.Warn("http shutdown", "err", err)
		}
	}
	if n.adminSrv != nil {
		if err := n.adminSrv.ShutdownWithContext(sctx); err != nil {
			n.log.Warn("admin listener shutdown", "err", err)
		}
	}
	// Hand partitions off before going: gossip that this node is draining
	// (the others stop expecting it to own anything), release every
	// partition (flush, clear the owner), then leave the cluster.
	n.stopCoord()
	<-n.coordDone
	if n.eng != nil && runErr == nil {
		if err := n.members.SetDraining(true); err != nil {
			n.log.Warn("announcing drain", "err", err)
		}
		for p := range n.eng.OwnedEpochs() {
			if err := n.eng.Release(sctx, p); err != nil {
				n.log.Warn("releasing partition", "partition", p, "err", err)
			}
		}
	}
	n.leave()
	if n.eng != nil {
		if err := n.eng.Stop(sctx); err != nil {
			n.log.Error("engine shutdown", "err", err)
			if runErr == nil {
				runErr = err
			}
		} else {
			n.log.Info("engine flushed and released its partitions")
		}
	}
	return runErr
}
