package ingress

import (
	"testing"

	"github.com/bursar/bursar/ledger"
)

// The request decoders run once per write on the hot path. Bodies are the
// shapes bench and k6 send.

var (
	benchMoneyBody = []byte(`{"account_id":"3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f","amount":"12.34","currency":"USD",` +
		`"description":"rent for march","reference_id":"inv-2024-03"}`)
	benchTransferBody = []byte(`{"source_account_id":"3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f",` +
		`"destination_account_id":"9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d","amount":"12.34","currency":"USD",` +
		`"description":"rent for march","reference_id":"inv-2024-03"}`)
	benchOpenBody = []byte(`{"customer_id":"cust-1","account_type":"checking","currency":"USD","overdraft_limit":"50.00",` +
		`"account_id":"3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f"}`)
)

func BenchmarkDecodeMoney(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMoney(ledger.KindCredit, benchMoneyBody, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTransfer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeTransfer(benchTransferBody, "hdr-1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOpen(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeOpen(benchOpenBody, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBatch decodes a batch of 100 transfers, the shape of
// bench's batch workload.
func BenchmarkDecodeBatch(b *testing.B) {
	items := make([]string, 100)
	for i := range items {
		items[i] = itemJSON("transfer", string(benchTransferBody), `"idempotency_key":"k-1"`)
	}
	body := []byte(batchJSON(items...))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := decodeBatch(body, 1000)
		if err != nil || out[99].err != nil {
			b.Fatal(err, out[99].err)
		}
	}
}

// BenchmarkMembersCheck is members.check's share of a decode: the walk
// over a transfer body's member names.
func BenchmarkMembersCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := transferMembers.check(benchTransferBody); err != nil {
			b.Fatal(err)
		}
	}
}
