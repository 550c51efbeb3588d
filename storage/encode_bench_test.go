package storage

import (
	"context"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
)

// benchBatch builds a batch of n credit rows over accounts accounts, as a
// partition's write-behind buffer holds them.
func benchBatch(n, accounts int, p int32, offset int64) *Batch {
	ids := make([]uuid.UUID, accounts)
	accts := make(map[uuid.UUID]*ledger.Account, accounts)
	for i := range ids {
		ids[i] = uuid.New()
		accts[ids[i]] = &ledger.Account{ID: ids[i], Exists: true, Currency: "USD", Status: ledger.AccountActive,
			CustomerID: "c", Type: "checking", Version: 1, Seq: 1, CreatedUs: time.Now().UnixMicro()}
	}
	b := &Batch{Rows: make([]TxRow, 0, n), Accounts: make(map[uuid.UUID]*ledger.Account, accounts)}
	for i := 0; i < n; i++ {
		a := accts[ids[i%accounts]]
		c := &ledger.Command{Kind: ledger.KindCredit, TxID: uuid.Must(uuid.NewV7()), // as the ingress mints them
			AccountID: a.ID, Amount: 100,
			Currency: "USD", IdemKey: "k-" + uuid.NewString(), TimestampUs: time.Now().UnixMicro(), Description: "bench"}
		e := ledger.Apply(a, c)
		b.Rows = append(b.Rows, TxRow{Cmd: c, Result: e.Result, Partition: p, Offset: offset + int64(i)})
		snap := *a
		snap.Keys = ledger.KeyIndex{}
		b.Accounts[a.ID] = &snap
	}
	return b
}

// BenchmarkBatchEncode measures turning a flush batch into CopyFrom values
// and account arrays: the CPU part of the write-behind, per row.
func BenchmarkBatchEncode(b *testing.B) {
	batch := benchBatch(5000, 1000, 0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src := &txSource{rows: batch.Rows}
		for src.Next() {
			if _, err := src.Values(); err != nil {
				b.Fatal(err)
			}
		}
		encodeAccounts(batch.Accounts)
	}
	b.ReportMetric(float64(b.N*len(batch.Rows))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkFlush measures a whole flush transaction against the real
// PostgreSQL: 5000 transaction rows and 1000 account upserts per flush.
func BenchmarkFlush(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pgtest.NewDatabase(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	epoch, _, err := s.Acquire(ctx, 0, "bench")
	if err != nil {
		b.Fatal(err)
	}
	batches := make([]*Batch, b.N)
	for i := range batches {
		batches[i] = benchBatch(5000, 1000, 0, int64(i)*5000)
		batches[i].Marks = []PartitionMark{{Partition: 0, Epoch: epoch, NextOffset: int64(i+1) * 5000}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Flush(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*5000)/b.Elapsed().Seconds(), "txrows/s")
}
