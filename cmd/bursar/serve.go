package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	_ "net/http/pprof" // profiles on --pprof-addr only
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bursar/bursar/cluster"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/twmb/franz-go/pkg/kgo"
)

type serveFlags struct {
	httpAddr, dataDir, databaseURL, kafkaBrokers, redisURL       string
	rateCredWrites, rateCredReads, rateAddrWrites, rateAddrReads int
	redisIdempotency, redisBalances                              bool
	redisBalanceTTL                                              time.Duration
	nodeID, gossipAddr, join, remoteAddr, roles, ack             string
	brokerListen, logLevel, pprofAddr                            string
	partitions, eventPartitions                                  int
	flushRows, maxUnflushed, fetchMax, maxResident, keys         int
	maxInflight, maxBody, pgConns                                int
	maxBatchBody, batchItemsMax                                  int
	flushInterval, idleTimeout, waitTimeout, shutdownWait        time.Duration
	kafkaLinger, commandsRetention, eventsRetention              time.Duration
	eventsRetentionBytes, diskReserve, diskLow                   int64
	events                                                       bool
	brokerSync                                                   string
	advertiseHost                                                string
	probeInterval                                                time.Duration
	gossipKey                                                    string
	authMode                                                     string
	adminAddr, metricsOn                                         string
	tlsCert, tlsKey                                              string
	remoteTLSCert, remoteTLSKey, remoteTLSCA                     string
	kafkaSecurity                                                *kafkalog.Security
	kafkaOpts                                                    []kgo.Opt // from kafkaSecurity
	authRefresh                                                  time.Duration
	authFailLimit, loginFailLimit                                int
	tokenTTL                                                     time.Duration
	gossipKeys                                                   [][]byte // parsed from gossipKey

	// HTTP limits (ingress.Config).
	maxHeaderBytes, httpMaxConns, httpMaxConnsPerIP     int
	httpHeaderTimeout, httpBodyTimeout, httpIdleTimeout time.Duration
}

func defaultNodeID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "bursar"
	}
	return h
}

func runServe(args []string, _ io.Writer) error {
	fs := newFlagSet("serve", "Runs a Bursar node: the REST API, the engine for its partitions, and (when --kafka-brokers\nis empty) an embedded Kafka-protocol broker persisted under --data-dir.")
	var f serveFlags
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "REST API, /healthz, /readyz, /metrics (loopback by default; another address is logged as a warning: there is no TLS yet)")
	fs.StringVar(&f.dataDir, "data-dir", "./bursar-data", "embedded broker's log and other local state")
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL connection URL (required)")
	fs.StringVar(&f.kafkaBrokers, "kafka-brokers", "", "Kafka seed brokers, comma-separated; empty starts the embedded broker")
	f.kafkaSecurity = kafkaSecurityFlags(fs)
	fs.StringVar(&f.redisURL, "redis-url", "", "Redis URL: redis://[user:password@]host:port[/db] or rediss:// (TLS); with ?master_name=NAME[&addr=H:P…] the hosts are Redis Sentinels, with ?cluster=true[&addr=H:P…] seeds of a Redis Cluster. Shares the rate limits between nodes and serves eventual balance reads (and, with --redis-idempotency, retries). Empty: each node enforces the limits alone and every read is strong")
	fs.BoolVar(&f.redisIdempotency, "redis-idempotency", false, "with --redis-url: answer a retried keyed write from Redis when its first answer is there (the idempotency fast path; off by default: measured slower on one host, see the README)")
	fs.BoolVar(&f.redisBalances, "redis-balances", true, "with --redis-url: each owner publishes its accounts' committed balances to Redis, and a balance read with Consistency: eventual (or ?consistency=eventual) is answered from there by any node")
	fs.DurationVar(&f.redisBalanceTTL, "redis-balance-ttl", time.Hour, "how long a published balance lives in Redis (1s to 24h): it bounds Redis' memory and the age of an entry whose owner could not publish since")
	fs.IntVar(&f.rateCredWrites, "rate-limit-writes", 0, "writes a second per API key or user (429 RATE_LIMITED beyond); 0 = no limit")
	fs.IntVar(&f.rateCredReads, "rate-limit-reads", 0, "reads a second per API key or user; 0 = no limit")
	fs.IntVar(&f.rateAddrWrites, "rate-limit-address-writes", 0, "writes a second per source address (IPv6 per /64); 0 = no limit")
	fs.IntVar(&f.rateAddrReads, "rate-limit-address-reads", 0, "reads a second per source address (IPv6 per /64); 0 = no limit")
	fs.IntVar(&f.partitions, "partitions", 64, "partitions of bursar.commands when the topic is created")
	fs.IntVar(&f.eventPartitions, "event-partitions", 0, "partitions of bursar.events when the topic is created; 0 = as --partitions. An account's events go to its command partition modulo this count, so they stay in one partition while the counts do not change; with the embedded broker's fsync, fewer partitions mean fewer fsyncs per produce request")
	fs.StringVar(&f.nodeID, "node-id", defaultNodeID(), "unique node ID (default: host name)")
	fs.StringVar(&f.gossipAddr, "gossip-addr", "127.0.0.1:7946", "memberlist bind address (loopback by default)")
	fs.StringVar(&f.join, "join", "", "seed nodes' gossip addresses, comma-separated (empty: start a new cluster)")
	fs.StringVar(&f.remoteAddr, "remote-addr", "127.0.0.1:8090", "protoactor-go remote address (answers and reads between nodes; loopback by default)")
	fs.StringVar(&f.advertiseHost, "advertise-host", "127.0.0.1", "host other nodes reach this one at, when an address above binds all interfaces")
	fs.DurationVar(&f.probeInterval, "probe-interval", time.Second, "memberlist failure-detector probe interval; a dead node is declared after a few")
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:9090", "admin listener: /internal/* (members, node, drain) and /debug/pprof/* with the admin scope, /healthz, /readyz and, with --metrics-on admin, /metrics; bursar cluster status and node drain talk to it")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) of the HTTP listeners (--http-addr, --admin-addr); with --tls-key they speak only HTTPS. Reloaded on SIGHUP and when the file changes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.remoteTLSCert, "remote-tls-cert", "", "PEM certificate this node presents to the others on protoactor remote (answers, strong reads), as server and client; with --remote-tls-key and --remote-tls-ca, remote is mutual TLS")
	fs.StringVar(&f.remoteTLSKey, "remote-tls-key", "", "PEM key of --remote-tls-cert")
	fs.StringVar(&f.remoteTLSCA, "remote-tls-ca", "", "PEM CA that signed every node's --remote-tls-cert: a peer without such a certificate is refused")
	fs.StringVar(&f.metricsOn, "metrics-on", "api", "the listener /metrics is served on: api (--http-addr) or admin (--admin-addr); both need the metrics:read scope")
	fs.StringVar(&f.authMode, "auth", "on", "on: every route but /healthz and /readyz needs an API key (Authorization: Bearer bsk_…; bursar apikey create); off: every request is let in (local experiments only: logged loudly, shown by /readyz)")
	fs.IntVar(&f.authFailLimit, "auth-fail-limit", 30, "failed authentications one source address may make per minute; beyond, its requests get 429 RATE_LIMITED until it earns some back; 0: no limit (behind a proxy every client shares the proxy's address)")
	fs.DurationVar(&f.authRefresh, "auth-refresh", 5*time.Second, "how often API keys, signing keys and disabled users are reloaded from PostgreSQL: a revoked key or a disabled user's token stops working within this time")
	fs.IntVar(&f.loginFailLimit, "login-fail-limit", 10, "failed logins one username may take per minute, from any address; beyond, its logins get 429 RATE_LIMITED (bursar_ingress_rejected_total{reason=\"login_throttled\"}) until it earns some back; 0: no limit")
	fs.DurationVar(&f.tokenTTL, "token-ttl", 15*time.Minute, "lifetime of the user tokens POST /api/v1/auth/token issues (1m to 24h)")
	fs.StringVar(&f.gossipKey, "gossip-key", "", "base64 keys (16, 24 or 32 bytes each), comma-separated, that encrypt and authenticate gossip: the first encrypts, all decrypt (rotate by adding the new key second, then first, then dropping the old); empty: gossip is open to anyone who reaches --gossip-addr")
	fs.StringVar(&f.roles, "roles", "ingress,engine", "what this node runs: ingress, engine, or both")
	fs.StringVar(&f.ack, "ack", "applied", "answer writes once applied, or once flushed to PostgreSQL: applied|flushed")
	fs.StringVar(&f.brokerListen, "broker-listen", "127.0.0.1:0", "listen address of the embedded broker")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug|info|warn|error")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof profiles on this address (empty: off)")
	fs.StringVar(&f.brokerSync, "broker-sync", "journal", "how the embedded broker makes commands durable: journal (a group commit to a write-ahead journal: one write and one fdatasync(2) of one journal file covers every request waiting meanwhile, whatever the partitions written; the broker's own files are synced at checkpoints in the background, and an unclean stop is repaired from the journal at start; this node's answers, balance reads, the records commands cause and offset commits wait for it, so other nodes must not use this broker), group (the same wait, but each round fdatasyncs the segment files written since the last round, or syncs the file system past two), batch (fsync every partition of every produce request before acknowledging it: slow with many partitions), none (page cache only: survives kill -9, not a power loss)")
	fs.BoolVar(&f.events, "events", true, "produce transaction and balance events to bursar.events")
	fs.IntVar(&f.flushRows, "flush-rows", 5000, "start a write-behind flush once this many rows wait")
	fs.DurationVar(&f.flushInterval, "flush-interval", 10*time.Millisecond, "longest a row waits for its flush")
	fs.IntVar(&f.maxUnflushed, "max-unflushed-rows", 50000, "per-partition unflushed rows before it stops consuming (bursar_engine_backpressure_waits_total)")
	fs.IntVar(&f.fetchMax, "fetch-max-records", 4096, "records per poll and dispatch batch")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 60*time.Second, "passivate an account actor idle this long once flushed")
	fs.IntVar(&f.maxResident, "max-resident-actors", 1_000_000, "resident account actors per node (bursar_engine_passivations_total{reason=\"limit\"})")
	fs.IntVar(&f.keys, "keys-per-account", 8192, "idempotency keys kept in memory per account; older ones are looked up in PostgreSQL (bursar_engine_key_lookups_total)")
	fs.IntVar(&f.maxInflight, "max-inflight", 100_000, "writes waiting for an answer before 503 (bursar_ingress_rejected_total{reason=\"inflight\"})")
	fs.IntVar(&f.maxBody, "max-body-bytes", 16<<10, "largest request body (bursar_ingress_rejected_total{reason=\"body_size\"})")
	fs.IntVar(&f.maxBatchBody, "max-batch-body-bytes", 1<<20, "largest body of POST /api/v1/transactions/batch (bursar_ingress_rejected_total{reason=\"body_size\"})")
	fs.Int64Var(&f.diskReserve, "disk-reserve-bytes", 128<<20, "free bytes the data directory's file system keeps: below them writes are refused with 503 STORAGE_FULL (reads go on, /readyz fails with check disk) until space returns (bursar_disk_free_bytes, bursar_ingress_rejected_total{reason=\"storage_full\"}); 0 = never refuse")
	fs.Int64Var(&f.diskLow, "disk-low-bytes", 1<<30, "free bytes of the data directory's file system below which the node warns in its log")
	fs.IntVar(&f.batchItemsMax, "batch-items-max", 1000, "most items in one POST /api/v1/transactions/batch (400 INVALID_FIELD beyond); at most --max-inflight, since a batch is admitted only whole")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 8<<10, "largest request line and header fields of a request, 431 beyond (bursar_ingress_rejected_total{reason=\"header_size\"}); also each connection's read buffer")
	fs.DurationVar(&f.httpHeaderTimeout, "http-header-timeout", 5*time.Second, "longest read of a request's header, from its first byte (a new connection's start), 408 and close beyond (bursar_http_timeouts_total{phase=\"header\"})")
	fs.DurationVar(&f.httpBodyTimeout, "http-body-timeout", 10*time.Second, "longest read of a request's body, from the end of its header, 408 and close beyond (bursar_http_timeouts_total{phase=\"body\"})")
	fs.DurationVar(&f.httpIdleTimeout, "http-idle-timeout", 120*time.Second, "longest wait for the next request on a keep-alive connection, then close (bursar_http_timeouts_total{phase=\"idle\"})")
	fs.IntVar(&f.httpMaxConns, "http-max-conns", 65536, "open HTTP connections; one more is answered 503 and closed (bursar_ingress_rejected_total{reason=\"connections\"})")
	fs.IntVar(&f.httpMaxConnsPerIP, "http-max-conns-per-ip", 1024, "open HTTP connections from one source address, loopback included; one more is answered 429 and closed (bursar_ingress_rejected_total{reason=\"connections_per_ip\"}); 0 = no per-address limit (behind a proxy that pools connections)")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 5*time.Second, "how long a write waits for its answer before 202 Accepted")
	fs.IntVar(&f.pgConns, "pg-max-conns", 16, "PostgreSQL pool size")
	fs.DurationVar(&f.kafkaLinger, "kafka-linger", 0, "how long the producer waits to fill a batch, at most 1s; 0 sends at once when no request is in flight and gathers what arrives meanwhile into the next one (batches grow with load); longer means fewer, larger produce requests and that much more latency when idle")
	fs.DurationVar(&f.commandsRetention, "commands-retention", time.Hour, "keep commands in bursar.commands this long, then delete them, but only once PostgreSQL has committed them (bursar_engine_commands_trimmed_total); 0 = never: the topic is created without a retention, so it then grows until one is set on it")
	fs.DurationVar(&f.eventsRetention, "events-retention", 24*time.Hour, "retention.ms of bursar.events when the topic is created; 0 = the broker's default")
	fs.Int64Var(&f.eventsRetentionBytes, "events-retention-bytes", 256<<20, "retention.bytes (per partition) of bursar.events when the topic is created; 0 = the broker's default")
	fs.DurationVar(&f.shutdownWait, "shutdown-timeout", 30*time.Second, "longest graceful shutdown (final flush) on SIGINT/SIGTERM")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := newLogger(f.logLevel)
	roles := strings.Split(f.roles, ",")
	for _, r := range roles {
		if r != "ingress" && r != "engine" {
			return &exitError{code: 2, err: fmt.Errorf("--roles: unknown role %q (want ingress, engine)", r)}
		}
	}
	if f.nodeID == "" || strings.ContainsAny(f.nodeID, "/ ") {
		return &exitError{code: 2, err: errors.New("--node-id must be non-empty, without '/' or spaces")}
	}
	if f.partitions < 1 || f.partitions > ledger.PartitionsMax {
		return &exitError{code: 2, err: fmt.Errorf("--partitions must be between 1 and %d (the most a slot map spreads its slots over)", ledger.PartitionsMax)}
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"--rate-limit-writes", f.rateCredWrites}, {"--rate-limit-reads", f.rateCredReads}, {"--rate-limit-address-writes", f.rateAddrWrites}, {"--rate-limit-address-reads", f.rateAddrReads}} {
		if v.n < 0 || v.n > 1_000_000 {
			return &exitError{code: 2, err: fmt.Errorf("%s must be between 0 (no limit) and 1000000 a second", v.name)}
		}
	}
	if f.redisBalanceTTL < time.Second || f.redisBalanceTTL > 24*time.Hour {
		return &exitError{code: 2, err: errors.New("--redis-balance-ttl must be between 1s and 24h")}
	}
	if f.redisIdempotency && f.redisURL == "" {
		return &exitError{code: 2, err: errors.New("--redis-idempotency needs --redis-url")}
	}
	if f.redisURL != "" {
		c, err := newRedisClient(f.redisURL)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--redis-url: %w", err)}
		}
		c.Close()
	}
	if f.kafkaLinger < 0 || f.kafkaLinger > time.Second {
		return &exitError{code: 2, err: errors.New("--kafka-linger must be between 0 and 1s")}
	}
	if f.maxInflight < 1 {
		return &exitError{code: 2, err: errors.New("--max-inflight must be at least 1")}
	}
	if f.maxBatchBody < 1 {
		return &exitError{code: 2, err: errors.New("--max-batch-body-bytes must be at least 1")}
	}
	if f.batchItemsMax < 1 || f.batchItemsMax > f.maxInflight {
		return &exitError{code: 2, err: errors.New("--batch-items-max must be between 1 and --max-inflight (a batch is admitted only whole)")}
	}
	if err := checkHTTPLimits(&f); err != nil {
		return &exitError{code: 2, err: err}
	}
	if f.join != "" && f.kafkaBrokers == "" {
		// An embedded broker per node would give each node its own log.
		return &exitError{code: 2, err: errors.New("--join needs --kafka-brokers: the nodes of a cluster share one log ('bursar broker' or Kafka), not one embedded broker each")}
	}
	if mode, err := kafkalog.ParseSync(f.brokerSync); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--broker-sync: %q is not journal, group, batch or none", f.brokerSync)}
	} else if (mode == kafkalog.SyncGroup || mode == kafkalog.SyncJournal) && f.kafkaBrokers == "" && !(slices.Contains(roles, "ingress") && slices.Contains(roles, "engine")) {
		// Only this process waits for the group sync: an engine or an
		// ingress elsewhere would commit or answer before it.
		return &exitError{code: 2, err: fmt.Errorf("--broker-sync=%s: the node running the embedded broker must run both roles (ingress,engine); share a broker between nodes with 'bursar broker' or Kafka", f.brokerSync)}
	}
	if f.diskReserve < 0 || f.diskLow < 0 {
		return &exitError{code: 2, err: errors.New("--disk-reserve-bytes and --disk-low-bytes must not be negative")}
	}
	if f.commandsRetention < 0 {
		return &exitError{code: 2, err: errors.New("--commands-retention must not be negative")}
	}
	if f.eventsRetention < 0 || f.eventsRetentionBytes < 0 {
		return &exitError{code: 2, err: errors.New("--events-retention and --events-retention-bytes must not be negative")}
	}
	if f.eventPartitions < 0 || f.eventPartitions > 10000 {
		return &exitError{code: 2, err: errors.New("--event-partitions must be between 0 and 10000")}
	}
	if f.kafkaSecurity.Enabled() && f.kafkaBrokers == "" {
		return &exitError{code: 2, err: errors.New("--kafka-tls and --kafka-sasl-* are for --kafka-brokers: the embedded broker listens in plaintext on --broker-listen")}
	}
	kafkaOpts, err := f.kafkaSecurity.Options()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	f.kafkaOpts = kafkaOpts
	if _, err := remoteTLS(f.remoteTLSCert, f.remoteTLSKey, f.remoteTLSCA); err != nil {
		return &exitError{code: 2, err: err}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return &exitError{code: 2, err: errors.New("--tls-cert and --tls-key go together")}
	}
	if f.metricsOn != "api" && f.metricsOn != "admin" {
		return &exitError{code: 2, err: fmt.Errorf("--metrics-on must be api or admin, got %q", f.metricsOn)}
	}
	if f.authMode != "on" && f.authMode != "off" {
		return &exitError{code: 2, err: fmt.Errorf("--auth must be on or off, got %q", f.authMode)}
	}
	if f.authFailLimit < 0 {
		return &exitError{code: 2, err: errors.New("--auth-fail-limit must not be negative (0: no limit)")}
	}
	if f.loginFailLimit < 0 {
		return &exitError{code: 2, err: errors.New("--login-fail-limit must not be negative (0: no limit)")}
	}
	if f.tokenTTL < time.Minute || f.tokenTTL > 24*time.Hour {
		return &exitError{code: 2, err: errors.New("--token-ttl must be between 1m and 24h")}
	}
	if f.authRefresh < 100*time.Millisecond || f.authRefresh > time.Hour {
		return &exitError{code: 2, err: errors.New("--auth-refresh must be between 100ms and 1h")}
	}
	keys, err := parseGossipKeys(f.gossipKey)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	f.gossipKeys = keys
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the HTTP certificate (tls.go) and does nothing else:
	// Go's default would end the process, so a fleet-wide HUP after a
	// certificate renewal would stop every node without TLS.
	signal.Ignore(syscall.SIGHUP)
	return serve(ctx, f, slices.Contains(roles, "ingress"), slices.Contains(roles, "engine"), log)
}

// parseGossipKeys reads --gossip-key: comma-separated standard base64,
// each key 16, 24 or 32 bytes (AES-128, -192, -256).
func parseGossipKeys(text string) ([][]byte, error) {
	if text == "" {
		return nil, nil
	}
	var keys [][]byte
	for i, k := range strings.Split(text, ",") {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("--gossip-key: key %d is not standard base64: %v", i+1, err)
		}
		if n := len(b); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--gossip-key: key %d is %d bytes; a key is 16, 24 or 32 bytes (for example: head -c 32 /dev/urandom | base64)", i+1, n)
		}
		keys = append(keys, b)
	}
	return keys, nil
}

// checkHTTPLimits refuses HTTP limits that would leave the API unusable.
func checkHTTPLimits(f *serveFlags) error {
	switch {
	case f.maxHeaderBytes < 1024:
		return errors.New("--max-header-bytes must be at least 1024")
	case f.httpHeaderTimeout <= 0, f.httpBodyTimeout <= 0, f.httpIdleTimeout <= 0:
		return errors.New("--http-header-timeout, --http-body-timeout and --http-idle-timeout must be positive")
	case f.httpMaxConns < 1:
		return errors.New("--http-max-conns must be at least 1")
	case f.httpMaxConnsPerIP < 0:
		return errors.New("--http-max-conns-per-ip must not be negative (0: no per-address limit)")
	}
	return nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// serve runs a node: its steps start, in order, the log (the embedded
// broker and the Kafka clients), the store, the cluster plumbing, the
// engine and the API; then it waits for a signal or a failure and shuts
// down in reverse (node.go).
func serve(ctx context.Context, f serveFlags, runIngress, runEngine bool, log *slog.Logger) error {
	n := &runningNode{f: f, log: log.With("node", f.nodeID), runIngress: runIngress, runEngine: runEngine}
	defer n.close()
	for _, step := range []func(context.Context) error{n.checkPorts, n.startPprof, n.startLog, n.openStore, n.startRedis, n.startCluster, n.startEngine, n.startAPI} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return n.shutdown(n.waitForStop(ctx))
}

// watchAlone reports an error once another node is a member: this node's
// embedded broker runs --broker-sync=journal or group, which only this
// process waits for. Partitions move only after the cluster settles (seconds), and this
// looks several times a second.
func watchAlone(ctx context.Context, members *cluster.Membership, self, brokerSync string) <-chan error {
	out := make(chan error, 1)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, m := range members.Members() {
				if m.ID != self {
					out <- fmt.Errorf("node %s joined, but this node's embedded broker runs --broker-sync=%s, which only this node waits for; share a broker between nodes with 'bursar broker' or Kafka", m.ID, brokerSync)
					return
				}
			}
		}
	}()
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// lateSink forwards answers to a router set after the engine is built.
type lateSink struct{ r *cluster.Router }

func (l *lateSink) Deliver(node string, seq uint64, res *ledger.Result) { l.r.Deliver(node, seq, res) }

func hostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

// advertiseHost is the host others reach a listener at: the bound host when
// it is specific, else --advertise-host.
func advertiseHost(bound, flagValue string) string {
	if bound != "" && bound != "0.0.0.0" && bound != "::" {
		return bound
	}
	return flagValue
}
