package cluster

import (
	"fmt"
	"testing"
)

func TestOwnerIsDeterministicAndBalanced(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	count := map[string]int{}
	for p := int32(0); p < 3000; p++ {
		o := Owner(p, nodes)
		if o != Owner(p, []string{"n3", "n1", "n2"}) {
			t.Fatalf("partition %d: owner depends on member order", p)
		}
		count[o]++
	}
	for _, n := range nodes {
		if count[n] < 850 || count[n] > 1150 {
			t.Fatalf("unbalanced ownership over 3000 partitions: %v", count)
		}
	}
	if Owner(1, nil) != "" {
		t.Fatal("owner without nodes")
	}
}

// A join moves only the partitions the new node wins; a leave moves only
// the partitions the leaving node held.
func TestOwnerMovesOnlyWhatMust(t *testing.T) {
	before := []string{"a", "b", "c"}
	after := []string{"a", "b", "c", "d"}
	moved := 0
	for p := int32(0); p < 1000; p++ {
		o1, o2 := Owner(p, before), Owner(p, after)
		if o1 != o2 {
			moved++
			if o2 != "d" {
				t.Fatalf("partition %d moved from %s to %s on d's join", p, o1, o2)
			}
		}
		if o3 := Owner(p, []string{"a", "c"}); o1 != "b" && o3 != o1 {
			t.Fatalf("partition %d moved from %s to %s though b left", p, o1, o3)
		}
	}
	if moved < 150 || moved > 350 {
		t.Fatalf("%d of 1000 partitions moved to the fourth node, want about 250", moved)
	}
}

func TestEngineNodesSkipsDrainingAndIngressOnly(t *testing.T) {
	ms := []Member{
		{Meta: Meta{ID: "a", Roles: []string{"ingress", "engine"}}},
		{Meta: Meta{ID: "b", Roles: []string{"ingress"}}},
		{Meta: Meta{ID: "c", Roles: []string{"engine"}, Draining: true}},
		{Meta: Meta{ID: "d", Roles: []string{"engine"}}},
	}
	if got := fmt.Sprint(EngineNodes(ms)); got != "[a d]" {
		t.Fatalf("EngineNodes = %s, want [a d]", got)
	}
}

func TestReplyNodeID(t *testing.T) {
	for in, want := range map[string]string{"n1/abc": "n1", "n1": "n1", "": ""} {
		if got := nodeOf(in); got != want {
			t.Fatalf("nodeOf(%q) = %q, want %q", in, got, want)
		}
	}
}
