package bench

import (
	"fmt"
	"strconv"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// PartitionsMax bounds --partitions: a slot map spreads the slots over
// at most ledger.PartitionsMax partitions.
const PartitionsMax = ledger.PartitionsMax

// accountNamespace derives the bench's account IDs. The bench chooses
// every ID itself (POST /api/v1/accounts accepts account_id) so that it
// knows each account's partition before it sends anything, and so that a
// retried open names the same account.
var accountNamespace = uuid.MustParse("b1e5c0de-7a0b-4c55-9e4d-62656e636800")

// accountID is the ID of setup account i of a run. Two targets benched
// with the same run ID get the same IDs, and so the same operations.
func accountID(runID string, i int) uuid.UUID {
	b := make([]byte, 0, 64)
	b = append(b, "bench/"...)
	b = append(b, runID...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(i), 10)
	return uuid.NewSHA1(accountNamespace, b)
}

// openedAccountID is the ID of an account a workload opens, derived from
// the operation's unique key.
func openedAccountID(key []byte) uuid.UUID {
	return uuid.NewSHA1(accountNamespace, key)
}

// accountPool is the setup accounts: their IDs and where Bursar's slot
// map puts them. It is immutable once built and shared by every worker.
type accountPool struct {
	ids []string // canonical UUID text, by index
	// byPartition lists account indexes grouped by partition, in index
	// order within a partition; partition p's accounts are
	// byPartition[start[p]:start[p+1]].
	byPartition []int32
	start       []int32 // len partitions+1
	partOf      []int32 // partition of each account
}

// newAccountPool derives n account IDs for runID and groups them by their
// partition under a slot map of partitions partitions.
func newAccountPool(runID string, n int, partitions int32) *accountPool {
	slots := ledger.NewSlotMap(partitions)
	p := &accountPool{
		ids:         make([]string, n),
		byPartition: make([]int32, n),
		start:       make([]int32, partitions+1),
		partOf:      make([]int32, n),
	}
	for i := range n {
		id := accountID(runID, i)
		p.ids[i] = id.String()
		p.partOf[i] = slots.PartitionOfAccount(id)
		p.start[p.partOf[i]+1]++
	}
	for q := range partitions {
		p.start[q+1] += p.start[q]
	}
	fill := make([]int32, partitions)
	copy(fill, p.start)
	for i, q := range p.partOf {
		p.byPartition[fill[q]] = int32(i)
		fill[q]++
	}
	return p
}

func (p *accountPool) len() int { return len(p.ids) }

// partitionSize is the number of accounts in partition q.
func (p *accountPool) partitionSize(q int32) int { return int(p.start[q+1] - p.start[q]) }

// largestPartition is the size of the fullest partition.
func (p *accountPool) largestPartition() int {
	n := 0
	for q := range int32(len(p.start) - 1) {
		n = max(n, p.partitionSize(q))
	}
	return n
}

// samePartitionSources lists the accounts that share their partition with
// at least one other account: the possible sources of a same-partition
// transfer.
func (p *accountPool) samePartitionSources() []int32 {
	var out []int32
	for q := range int32(len(p.start) - 1) {
		if p.partitionSize(q) >= 2 {
			out = append(out, p.byPartition[p.start[q]:p.start[q+1]]...)
		}
	}
	return out
}

// checkPairs reports whether the pool can serve a workload's pairs.
func (p *accountPool) checkPairs(workload string, partitions int32) error {
	n := p.len()
	switch workload {
	case WorkloadUniform, WorkloadHot, WorkloadMixed, WorkloadBatch:
		if n < 2 {
			return fmt.Errorf("workload %s needs at least 2 accounts, got %d", workload, n)
		}
	case WorkloadSamePartition:
		if p.largestPartition() < 2 {
			return fmt.Errorf("workload %s needs two accounts in one partition: with %d accounts over %d partitions none shares one; use more --accounts", workload, n, partitions)
		}
	case WorkloadCrossPartition:
		if p.largestPartition() == n {
			return fmt.Errorf("workload %s needs accounts in two partitions: all %d accounts are in one of %d partitions; use more --accounts or --partitions", workload, n, partitions)
		}
	}
	return nil
}
