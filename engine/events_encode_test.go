package engine

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Text no event field carries today (they are IDs, names, amounts,
// timestamps), but a command record produced by hand could put into the
// currency; the encoder must stay correct for any string.
var eventPieces = []string{
	"", "USD", "x", `"`, `\`, "/", "\x00", "\x1f", "\x7f", "\n", "\t", "<", ">", "&",
	"é", "日本", "🙂", "\u2028", "\u2029", "\uFFFD", "\xff", "\xc3", "\xed\xa0\x80",
}

func eventText(rng *rand.Rand) string {
	var sb strings.Builder
	for range rng.IntN(5) {
		sb.WriteString(eventPieces[rng.IntN(len(eventPieces))])
	}
	return sb.String()
}

func randomEvent(rng *rand.Rand) Event {
	return Event{
		EventID: eventText(rng), Type: eventText(rng), TransactionID: eventText(rng), Kind: eventText(rng),
		AccountID: eventText(rng), CounterpartyID: eventText(rng), Amount: eventText(rng), Delta: eventText(rng),
		Currency: eventText(rng), Status: eventText(rng), Code: eventText(rng), Balance: eventText(rng),
		Available: eventText(rng), Version: rng.Int64() - rng.Int64(), Timestamp: eventText(rng),
		Partition: rng.Int32() - rng.Int32(), Offset: rng.Int64() - rng.Int64(), CreatedBy: eventText(rng),
	}
}

// randomApplied is a command and a plausible result of it, currency
// included from outside the supported set.
func randomApplied(rng *rand.Rand) (ledger.Command, ledger.Result) {
	cur := []string{"USD", "JPY", "KWD", "ZZZ", `U"\`, ""}[rng.IntN(6)]
	if cur == "" {
		cur = eventText(rng) // a hand-produced record can carry anything
	}
	c := ledger.Command{
		Kind: ledger.Kind(1 + rng.IntN(6)), TxID: uuid.New(), AccountID: uuid.New(),
		Amount: 1 + rng.Int64N(ledger.AmountMax), Currency: cur, TimestampUs: rng.Int64N(4_000_000_000_000_000),
	}
	if rng.IntN(2) == 0 {
		c.Counterparty = uuid.New()
	}
	if rng.IntN(2) == 0 {
		c.CreatedBy = "apikey:" + strconv.FormatUint(rng.Uint64(), 32) // as the ingress sets it
	}
	r := ledger.Result{
		TxID: c.TxID, Kind: c.Kind, AccountID: c.AccountID, Status: ledger.TxStatus(1 + rng.IntN(3)),
		Amount: c.Amount, Currency: cur, Balance: rng.Int64N(ledger.BalanceMax), Version: rng.Int64N(1 << 40),
		TimestampUs: c.TimestampUs, Tombstone: rng.IntN(8) == 0, Unrecorded: rng.IntN(8) == 0,
	}
	r.Available = r.Balance + rng.Int64N(ledger.AmountMax)
	if r.Status == ledger.StatusFailed {
		r.Code = ledger.Code(1 + rng.IntN(21))
	} else if rng.IntN(3) > 0 {
		r.Delta = c.Amount
		if c.Kind == ledger.KindDebit || c.Kind == ledger.KindTransferDebit {
			r.Delta = -c.Amount
		}
	}
	return c, r
}

// eventsFor is the reference the encoder is held to: the events one applied
// command causes, as Event values (their JSON is json.Marshal's).
func eventsFor(c *ledger.Command, r *ledger.Result, p int32, off int64) []Event {
	outcome, balance := eventTypes(r)
	exp, _ := ledger.CurrencyExponent(r.Currency)
	base := Event{
		TransactionID: r.TxID.String(), Kind: r.Kind.String(), AccountID: r.AccountID.String(),
		Amount: ledger.FormatAmount(r.Amount, exp), Delta: ledger.FormatAmount(r.Delta, exp),
		Currency: r.Currency, Status: r.Status.String(),
		Balance: ledger.FormatAmount(r.Balance, exp), Available: ledger.FormatAmount(r.Available, exp),
		Version: r.Version, Timestamp: time.UnixMicro(r.TimestampUs).UTC().Format(time.RFC3339Nano),
		Partition: p, Offset: off, CreatedBy: c.CreatedBy,
	}
	if c.Counterparty != uuid.Nil {
		base.CounterpartyID = c.Counterparty.String()
	}
	if r.Code != ledger.OK {
		base.Code = r.Code.String()
	}
	var out []Event
	if outcome != "" {
		e := base
		e.Type, e.EventID = outcome, r.TxID.String()+"/"+r.Kind.String()+"/"+outcome
		out = append(out, e)
	}
	if balance {
		e := base
		e.Type, e.EventID = EventBalanceChanged, r.AccountID.String()+"/v"+strconv.FormatInt(r.Version, 10)
		out = append(out, e)
	}
	return out
}

// TestEventRecordsMatchReference: for random applied commands, the records
// eventRecords builds carry exactly json.Marshal of the reference events,
// with the account as key and the event ID and type as headers; the
// values decode back to the events; and the slices sharing one allocation
// cannot grow into each other.
func TestEventRecordsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	kinds := map[int]int{}
	for range 5000 {
		c, r := randomApplied(rng)
		p, off := rng.Int32N(64), rng.Int64()
		want := eventsFor(&c, &r, p, off)
		recs := eventRecords(nil, &c, &r, p, 3, off)
		kinds[len(recs)]++
		if len(recs) != len(want) {
			t.Fatalf("%d records, want %d events (%+v)", len(recs), len(want), r)
		}
		for i, rec := range recs {
			ev := want[i]
			body, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec.Value, body) {
				t.Fatalf("value:\n %s\njson.Marshal:\n %s", rec.Value, body)
			}
			var back Event
			if err := json.Unmarshal(rec.Value, &back); err != nil {
				t.Fatalf("decode %s: %v", rec.Value, err)
			}
			if want := validEvent(ev); back != want {
				t.Fatalf("decoded\n %+v\nwant\n %+v", back, want)
			}
			if rec.Topic != kafkalog.TopicEvents || rec.Partition != 3 || !rec.Timestamp.Equal(time.UnixMicro(r.TimestampUs)) {
				t.Fatalf("record %+v", rec)
			}
			if string(rec.Key) != ev.AccountID || len(rec.Headers) != 2 ||
				rec.Headers[0].Key != "event_id" || string(rec.Headers[0].Value) != ev.EventID ||
				rec.Headers[1].Key != "type" || string(rec.Headers[1].Value) != ev.Type {
				t.Fatalf("key %q headers %+v, want %q %q %q", rec.Key, rec.Headers, ev.AccountID, ev.EventID, ev.Type)
			}
			for _, s := range [][]byte{rec.Value, rec.Key, rec.Headers[0].Value, rec.Headers[1].Value} {
				if cap(s) != len(s) {
					t.Fatalf("slice %q has room to grow into its neighbour (cap %d)", s, cap(s))
				}
			}
		}
		// The records must own their bytes: the next encode reuses the
		// scratch buffer and must not change them.
		c2, r2 := randomApplied(rng)
		_ = eventRecords(nil, &c2, &r2, p, 3, off)
		for i, rec := range recs {
			if body, _ := json.Marshal(want[i]); !bytes.Equal(rec.Value, body) {
				t.Fatalf("value changed by the next encode: %s", rec.Value)
			}
		}
	}
	// Every shape occurred: no event, one, and two.
	for n := range 3 {
		if kinds[n] == 0 {
			t.Fatalf("no command with %d events among %v", n, kinds)
		}
	}
}

// validEvent is ev as it decodes: each invalid UTF-8 byte as U+FFFD.
func validEvent(ev Event) Event {
	for _, s := range []*string{&ev.EventID, &ev.Type, &ev.TransactionID, &ev.Kind, &ev.AccountID,
		&ev.CounterpartyID, &ev.Amount, &ev.Delta, &ev.Currency, &ev.Status, &ev.Code, &ev.Balance,
		&ev.Available, &ev.Timestamp} {
		*s = string([]rune(*s))
	}
	return ev
}

// TestEventValues decodes a credit's events and checks each value, as a
// consumer reads them.
func TestEventValues(t *testing.T) {
	tx := uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a")
	acc := uuid.MustParse("3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f")
	c := ledger.Command{Kind: ledger.KindCredit, TxID: tx, AccountID: acc, Amount: 1234, Currency: "USD", TimestampUs: 1_700_000_000_123_400}
	r := ledger.Result{
		TxID: tx, Kind: ledger.KindCredit, AccountID: acc, Status: ledger.StatusCompleted, Amount: 1234, Delta: 1234,
		Currency: "USD", Balance: 11234, Available: 16234, Version: 7, TimestampUs: c.TimestampUs,
	}
	recs := eventRecords(nil, &c, &r, 5, 1, 1042)
	if len(recs) != 2 {
		t.Fatalf("%d events", len(recs))
	}
	common := map[string]any{
		"transaction_id": tx.String(), "kind": "credit", "account_id": acc.String(),
		"amount": "12.34", "delta": "12.34", "currency": "USD", "status": "completed",
		"balance": "112.34", "available_balance": "162.34", "version": 7.0,
		"timestamp": "2023-11-14T22:13:20.1234Z", "partition": 5.0, "offset": 1042.0,
	}
	for i, own := range []map[string]any{
		{"event_id": tx.String() + "/credit/transaction.completed", "type": "transaction.completed"},
		{"event_id": acc.String() + "/v7", "type": "balance.changed"},
	} {
		var got map[string]any
		if err := json.Unmarshal(recs[i].Value, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(common)+len(own) {
			t.Fatalf("event %d: got %v", i, got)
		}
		for _, want := range []map[string]any{common, own} {
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("event %d: %s = %v, want %v (%s)", i, k, got[k], v, recs[i].Value)
				}
			}
		}
	}
}

// BenchmarkEventRecords builds the records of a completed credit (two
// events): "json" as the engine once did with Event values and
// encoding/json, "direct" with eventRecords.
func BenchmarkEventRecords(b *testing.B) {
	c := ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: uuid.New(), Amount: 1234, Currency: "USD"}
	r := ledger.Result{
		TxID: c.TxID, Kind: ledger.KindCredit, AccountID: c.AccountID, Status: ledger.StatusCompleted,
		Amount: 1234, Delta: 1234, Currency: "USD", Balance: 100_000, Available: 150_000, Version: 7,
		TimestampUs: 1_700_000_000_123_456,
	}
	var sink []*kgo.Record
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = sink[:0]
			for _, ev := range eventsFor(&c, &r, 3, 1042) {
				body, err := json.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				sink = append(sink, &kgo.Record{
					Topic: kafkalog.TopicEvents, Partition: 3,
					Key: []byte(ev.AccountID), Value: body, Timestamp: time.UnixMicro(r.TimestampUs),
					Headers: []kgo.RecordHeader{{Key: "event_id", Value: []byte(ev.EventID)}, {Key: "type", Value: []byte(ev.Type)}},
				})
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = eventRecords(sink[:0], &c, &r, 3, 3, 1042)
		}
	})
	_ = sink
}
