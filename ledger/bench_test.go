package ledger

import (
	"fmt"
	"testing"
)

// benchAccount is an open USD account with room for b.N unit debits.
func benchAccount() *Account {
	a := &Account{}
	Apply(a, ptr(openCmd(acctA, "USD", 0)))
	a.Balance = BalanceMax / 2
	return a
}

func BenchmarkApplyCredit(b *testing.B) {
	a := benchAccount()
	c := creditCmd(acctA, 1)
	b.ReportAllocs()
	for b.Loop() {
		c.TimestampUs++
		if e := Apply(a, &c); e.Result.Status != StatusCompleted {
			b.Fatalf("credit: %+v", e.Result)
		}
	}
}

// BenchmarkApplyDebitWithKey debits under a fresh idempotency key each
// time: the key index fills to its default capacity and then evicts, the
// steady state of a hot account.
func BenchmarkApplyDebitWithKey(b *testing.B) {
	a := benchAccount()
	// Keys are made up front so that the loop measures Apply, not
	// Sprintf. 4× the index capacity: a key comes round only after it was
	// evicted, so every debit is a miss and a Remember.
	keys := make([]string, 4*DefaultKeysPerAccount)
	for i := range keys {
		keys[i] = fmt.Sprintf("idem-%08d", i)
	}
	c := debitCmd(acctA, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.IdemKey = keys[i%len(keys)]
		c.TimestampUs++
		i++
		if e := Apply(a, &c); e.Result.Status != StatusCompleted || e.Result.Replayed {
			b.Fatalf("debit %d: %+v", i, e.Result)
		}
	}
	if i >= DefaultKeysPerAccount && a.Keys.Len() != DefaultKeysPerAccount {
		b.Fatalf("key index holds %d keys; want %d", a.Keys.Len(), DefaultKeysPerAccount)
	}
}

func BenchmarkEncodeCommand(b *testing.B) {
	c := filledCommand(KindTransferDebit)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(c.AppendBinary(nil))))
	for b.Loop() {
		buf = c.AppendBinary(buf[:0])
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	c := filledCommand(KindTransferDebit)
	rec := c.AppendBinary(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := DecodeCommand(rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAmount(b *testing.B) {
	text := []byte("123456789.01")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAmount(text, 2); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatAmount(b *testing.B) {
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAmount(buf[:0], -12345678901, 2)
	}
}
