package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
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
	return fs.String("api-key", "", "API key with the admin scope (bursar apikey create --scopes admin); needed unless the nodes run --auth=off")
}

// getJSON GETs url, with the API key key (admin scope) when it is set.
func getJSON(ctx context.Context, url, key string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
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
func gatherCluster(ctx context.Context, addr, key string, brokers []string, kafkaOpts []kgo.Opt, partitions int32) (*clusterView, error) {
	var members []cluster.Member
	if err := getJSON(ctx, "http://"+addr+"/internal/members", key, &members); err != nil {
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
		if m.Admin != "" && getJSON(ctx, "http://"+m.Admin+"/internal/node", key, &st) == nil {
			nv.Reachable, nv.Ready, nv.Partitions = true, st.Ready, st.Partitions
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
	key := apiKeyFlag(fs)
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
	view, err := gatherCluster(ctx, *addr, *key, splitList(*brokers), kafkaOpts, int32(*parts))
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
	fmt.Fprintln(tw, "NODE\tROLES\tSTATE\tREADY\tDRAINING\tPARTITIONS\tHTTP\tREMOTE")
	for _, n := range v.Nodes {
		state := n.State
		if !n.Reachable {
			state += " (unreachable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%d\t%s\t%s\n", n.ID, strings.Join(n.Roles, ","), state, n.Ready, n.Draining, len(n.Partitions), n.HTTP, n.Remote)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tEPOCH\tAPPLIED\tCOMMITTED\tLOG END\tLAG\tUNFLUSHED ROWS\tREADY")
	dash := func(x int64) string {
		if x < 0 {
			return "-"
		}
		return fmt.Sprint(x)
	}
	for _, p := range v.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%v\n", p.Partition, p.Owner, p.Epoch, p.Applied, p.Committed,
			dash(p.LogEnd), dash(p.ConsumerLag), p.UnflushedRows, p.Ready)
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
	key := apiKeyFlag(fs)
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the partitions to move")
	if err := parseFlags(fs, args[2:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait+10*time.Second)
	defer cancel()
	var members []cluster.Member
	if err := getJSON(ctx, "http://"+*addr+"/internal/members", *key, &members); err != nil {
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
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+target.Admin+"/internal/drain", nil)
	if *key != "" {
		req.Header.Set("Authorization", "Bearer "+*key)
	}
	resp, err := http.DefaultClient.Do(req)
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
		if err := getJSON(ctx, "http://"+target.Admin+"/internal/node", *key, &st); err != nil {
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
