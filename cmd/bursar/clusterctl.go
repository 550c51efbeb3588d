package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bursar/bursar/cluster"
	"github.com/bursar/bursar/engine"
	"github.com/bursar/bursar/kafkalog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// nodeView is one node as `cluster status` reports it.
type nodeView struct {
	cluster.Member
	Ready      bool                    `json:"ready"`
	Reachable  bool                    `json:"reachable"`
	Partitions []engine.PartitionStats `json:"partitions"`
	// Migration is the slot migration as this node sees it (nil when it
	// did not answer).
	Migration *migrationView `json:"migration"`
}

// partitionView is one partition as `cluster status` reports it.
type partitionView struct {
	engine.PartitionStats
	Owner         string `json:"owner"`
	LogEnd        int64  `json:"log_end_offset"`
	ConsumerLag   int64  `json:"consumer_lag"`
	UnflushedRecs int64  `json:"unflushed_records"`
}

type clusterView struct {
	Nodes      []nodeView      `json:"nodes"`
	Partitions []partitionView `json:"partitions"`
	Unowned    []int32         `json:"unowned_partitions"`
	Count      int32           `json:"partition_count"`
}

// apiKeyFlag registers --api-key: the credential (admin scope) the
// operator commands send to the nodes.
func apiKeyFlag(fs *flag.FlagSet) *string {
	return fs.String("api-key", "", "credential for the nodes' admin listeners: an API key with the cluster or admin scope (bursar apikey create --scopes cluster), or an operator's or admin's user token; needed unless the nodes run --auth=off. Prefer BURSAR_API_KEY to the flag: flags show in process lists")
}

// adminClient talks to the nodes' admin listeners: over HTTPS when they
// run --tls-cert (its --tls-ca checks them), with the admin API key. The
// key goes to every member's admin address as gossip tells it: run the
// cluster with --gossip-key so that no stranger can advertise one.
type adminClient struct {
	scheme, key string
	hc          *http.Client
}

// adminFlags registers --api-key and --tls-ca and returns the function
// that builds the client once the flags are parsed.
func adminFlags(fs *flag.FlagSet) func() (*adminClient, error) {
	key := apiKeyFlag(fs)
	ca := fs.String("tls-ca", "", "PEM CA of the nodes' --tls-cert: talk HTTPS to their admin listeners (without it: plain HTTP, and the key travels in the clear beyond loopback)")
	return func() (*adminClient, error) {
		a := &adminClient{scheme: "http://", key: *key, hc: &http.Client{Timeout: 30 * time.Second}}
		if *ca == "" {
			return a, nil
		}
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", *ca)
		}
		a.scheme = "https://"
		a.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		return a, nil
	}
}

func (a *adminClient) get(ctx context.Context, addr, path string, v any) error {
	return getJSONWith(ctx, a.hc, a.scheme+addr+path, a.key, v)
}

// getJSON GETs url, with the API key key (admin scope) when it is set.
func getJSON(ctx context.Context, url, key string, v any) error {
	return getJSONWith(ctx, http.DefaultClient, url, key, v)
}

func getJSONWith(ctx context.Context, hc *http.Client, url, key string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// gatherCluster asks addr for the members, then every member for its
// partitions.
func gatherCluster(ctx context.Context, ac *adminClient, addr string, brokers []string, kafkaOpts []kgo.Opt, partitions int32) (*clusterView, error) {
	var members []cluster.Member
	if err := ac.get(ctx, addr, "/internal/members", &members); err != nil {
		return nil, fmt.Errorf("asking %s for the members: %w", addr, err)
	}
	var ends map[int32]int64
	if len(brokers) > 0 {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafkaOpts...)...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		if ends, err = kafkalog.EndOffsets(ctx, cl); err != nil {
			return nil, err
		}
		partitions = int32(len(ends))
	}
	view := &clusterView{}
	owned := map[int32]bool{}
	for _, m := range members {
		nv := nodeView{Member: m}
		var st struct {
			Ready      bool                    `json:"ready"`
			Partitions []engine.PartitionStats `json:"partitions"`
		}
		if m.Admin != "" && ac.get(ctx, m.Admin, "/internal/node", &st) == nil {
			nv.Reachable, nv.Ready, nv.Partitions = true, st.Ready, st.Partitions
			var mv migrationView
			if ac.get(ctx, m.Admin, "/internal/partitions/migration", &mv) == nil {
				nv.Migration = &mv
			}
		}
		for _, p := range nv.Partitions {
			pv := partitionView{PartitionStats: p, Owner: m.ID, LogEnd: -1, ConsumerLag: -1, UnflushedRecs: -1}
			if end, ok := ends[p.Partition]; ok {
				pv.LogEnd, pv.ConsumerLag, pv.UnflushedRecs = end, max(0, end-p.Applied), max(0, end-p.Committed)
			}
			view.Partitions = append(view.Partitions, pv)
			owned[p.Partition] = true
		}
		view.Nodes = append(view.Nodes, nv)
	}
	sort.Slice(view.Partitions, func(i, j int) bool { return view.Partitions[i].Partition < view.Partitions[j].Partition })
	for p := int32(0); p < partitions; p++ {
		if !owned[p] {
			view.Unowned = append(view.Unowned, p)
		}
	}
	view.Count = partitions
	return view, nil
}

func runCluster(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		return &exitError{code: 2, err: errors.New("usage: bursar cluster status [--addr HOST:PORT] [--kafka-brokers …] [--format table|json]")}
	}
	fs := newFlagSet("cluster status", "Shows the cluster as its nodes see it: nodes, roles, health, partitions owned with epoch,\napplied and committed offsets, unflushed rows, and (with --kafka-brokers) consumer lag and\nunflushed records per partition. Exit 1 when a partition has no owner or a node is unreachable.")
	addr := fs.String("addr", "127.0.0.1:9090", "admin address (--admin-addr) of any node")
	newAdmin := adminFlags(fs)
	brokers := fs.String("kafka-brokers", "", "Kafka seed brokers, for log end offsets (optional)")
	sec := kafkaSecurityFlags(fs)
	parts := fs.Int("partitions", 64, "partition count, when --kafka-brokers is not given")
	format := formatFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kafkaOpts, err := sec.Options()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ac, err := newAdmin()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	view, err := gatherCluster(ctx, ac, *addr, splitList(*brokers), kafkaOpts, int32(*parts))
	if err != nil {
		return err
	}
	if err := render(stdout, *format, view, printCluster); err != nil {
		return err
	}
	for _, n := range view.Nodes {
		if !n.Reachable {
			return &exitError{code: 1, err: fmt.Errorf("node %s is not reachable at %s", n.ID, n.HTTP)}
		}
	}
	if len(view.Unowned) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d partitions have no owner", len(view.Unowned))}
	}
	return nil
}

func printCluster(w io.Writer, v *clusterView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLES\tSTATE\tREADY\tDRAINING\tPARTITIONS\tSLOT MAP\tMIGRATION\tHTTP\tREMOTE")
	for _, n := range v.Nodes {
		state := n.State
		if !n.Reachable {
			state += " (unreachable)"
		}
		mig := "-"
		if mv := n.Migration; mv != nil && mv.InFlight {
			mig = fmt.Sprintf("%d/%d groups handed over", mv.HandedOver, mv.Groups)
			if mv.Driver.Running {
				mig += " (driving)"
			}
		} else if mv != nil && mv.Driver.Running {
			mig = "driving: " + mv.Driver.Step
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%d\tv%d\t%s\t%s\t%s\n", n.ID, strings.Join(n.Roles, ","), state, n.Ready, n.Draining, len(n.Partitions), n.SlotMap, mig, n.HTTP, n.Remote)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tEPOCH\tAPPLIED\tCOMMITTED\tLOG END\tLAG\tUNFLUSHED ROWS\tREADY\tHOLDING")
	dash := func(x int64) string {
		if x < 0 {
			return "-"
		}
		return fmt.Sprint(x)
	}
	for _, p := range v.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%v\t%v\n", p.Partition, p.Owner, p.Epoch, p.Applied, p.Committed,
			dash(p.LogEnd), dash(p.ConsumerLag), p.UnflushedRows, p.Ready, p.Holding)
	}
	tw.Flush()
	if len(v.Unowned) > 0 {
		fmt.Fprintf(w, "\nunowned partitions: %v\n", v.Unowned)
	}
}

func runNode(args []string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "drain" || strings.HasPrefix(args[1], "-") {
		return &exitError{code: 2, err: errors.New("usage: bursar node drain <node-id> [--addr HOST:PORT] [--wait 2m]")}
	}
	node := args[1]
	fs := newFlagSet("node drain", "Moves every partition off a node (it keeps serving as ingress); once it owns none it can be\nstopped safely. Waits until the node owns no partition.")
	addr := fs.String("addr", "127.0.0.1:9090", "admin address (--admin-addr) of any node")
	newAdmin := adminFlags(fs)
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the partitions to move")
	if err := parseFlags(fs, args[2:]); err != nil {
		return err
	}
	ac, err := newAdmin()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait+10*time.Second)
	defer cancel()
	var members []cluster.Member
	if err := ac.get(ctx, *addr, "/internal/members", &members); err != nil {
		return err
	}
	var target *cluster.Member
	for i := range members {
		if members[i].ID == node {
			target = &members[i]
		}
	}
	if target == nil {
		return &exitError{code: 1, err: fmt.Errorf("no live node %q", node)}
	}
	if target.Admin == "" {
		return &exitError{code: 1, err: fmt.Errorf("node %q has no admin listener (an engine-only node, or an older release)", node)}
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", ac.scheme+target.Admin+"/internal/drain", nil)
	if ac.key != "" {
		req.Header.Set("Authorization", "Bearer "+ac.key)
	}
	resp, err := ac.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("drain %s: %s", node, resp.Status)
	}
	start := time.Now()
	deadline := start.Add(*wait)
	for {
		var st struct {
			Partitions []engine.PartitionStats `json:"partitions"`
		}
		if err := ac.get(ctx, target.Admin, "/internal/node", &st); err != nil {
			return err
		}
		if len(st.Partitions) == 0 {
			fmt.Fprintf(stdout, "node %s drained in %s; it owns no partitions and can be stopped\n", node, time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{code: 1, err: fmt.Errorf("node %s still owns %d partitions after %s", node, len(st.Partitions), *wait)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}
