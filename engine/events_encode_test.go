package engine

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/engine/jsonw"
	"github.com/bursar/bursar/engine/kafkalog"
	"github.com/bursar/bursar/engine/ledger"
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
		Partition: rng.Int32() - rng.Int32(), Offset: rng.Int64() - rng.Int64(),
	}
}

// randomApplied is a command and a plausible result of it, currency
// included from outside the supported set.
func randomApplied(rng *rand.Rand) (ledger.Command, ledger.Result) {
	cur := []string{"USD", "JPY", "KWD", "ZZZ", `U"\`}[rng.IntN(5)]
	c := ledger.Command{
		Kind: ledger.Kind(1 + rng.IntN(6)), TxID: uuid.New(), AccountID: uuid.New(),
		Amount: 1 + rng.Int64N(ledger.AmountMax), Currency: cur, TimestampUs: rng.Int64N(4_000_000_000_000_000),
	}
	if rng.IntN(2) == 0 {
		c.Counterparty = uuid.New()
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

// TestAppendEventMatchesMarshal: the encoder writes the bytes json.Marshal
// wrote before it, for real events and for any strings at all, and they
// decode back to the event.
func TestAppendEventMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var events []Event
	for range 2000 {
		c, r := randomApplied(rng)
		events = append(events, eventsFor(&c, &r, rng.Int32N(64), rng.Int64())...)
		ev := randomEvent(rng)
		events = append(events, ev)
		ev.Code, ev.CounterpartyID = "", "" // the omitempty fields left out
		events = append(events, ev)
	}
	var w jsonw.Writer
	for _, ev := range events {
		w.Reset()
		appendEvent(&w, &ev)
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.B, want) {
			t.Fatalf("appendEvent(%+v):\n %s\njson.Marshal:\n %s", ev, w.B, want)
		}
		var back Event
		if err := json.Unmarshal(w.B, &back); err != nil {
			t.Fatalf("decode %s: %v", w.B, err)
		}
		if want := validEvent(ev); back != want {
			t.Fatalf("decoded\n %+v\nwant\n %+v", back, want)
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

// TestEventValues decodes a credit's completed event and checks each
// value, as a consumer reads them.
func TestEventValues(t *testing.T) {
	tx := uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a")
	acc := uuid.MustParse("3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f")
	c := ledger.Command{Kind: ledger.KindCredit, TxID: tx, AccountID: acc, Amount: 1234, Currency: "USD", TimestampUs: 1_700_000_000_123_400}
	r := ledger.Result{
		TxID: tx, Kind: ledger.KindCredit, AccountID: acc, Status: ledger.StatusCompleted, Amount: 1234, Delta: 1234,
		Currency: "USD", Balance: 11234, Available: 16234, Version: 7, TimestampUs: c.TimestampUs,
	}
	evs := eventsFor(&c, &r, 5, 1042)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	rec := eventRecord(&evs[0], 1, time.UnixMicro(r.TimestampUs))
	var got map[string]any
	if err := json.Unmarshal(rec.Value, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"event_id": tx.String() + "/credit/transaction.completed", "type": "transaction.completed",
		"transaction_id": tx.String(), "kind": "credit", "account_id": acc.String(),
		"amount": "12.34", "delta": "12.34", "currency": "USD", "status": "completed",
		"balance": "112.34", "available_balance": "162.34", "version": 7.0,
		"timestamp": "2023-11-14T22:13:20.1234Z", "partition": 5.0, "offset": 1042.0,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v (event %s)", k, got[k], v, rec.Value)
		}
	}
}

// TestEventRecord checks the record around the value: topic, partition,
// key, headers, and that the slices sharing one allocation do not overlap.
func TestEventRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		ev := randomEvent(rng)
		ts := time.UnixMicro(rng.Int64N(4_000_000_000_000_000))
		rec := eventRecord(&ev, 3, ts)
		want, _ := json.Marshal(ev)
		if rec.Topic != kafkalog.TopicEvents || rec.Partition != 3 || !rec.Timestamp.Equal(ts) {
			t.Fatalf("record %+v", rec)
		}
		if !bytes.Equal(rec.Value, want) || string(rec.Key) != ev.AccountID {
			t.Fatalf("value %s key %q, want %s %q", rec.Value, rec.Key, want, ev.AccountID)
		}
		if len(rec.Headers) != 2 || rec.Headers[0].Key != "event_id" || string(rec.Headers[0].Value) != ev.EventID ||
			rec.Headers[1].Key != "type" || string(rec.Headers[1].Value) != ev.Type {
			t.Fatalf("headers %+v", rec.Headers)
		}
		for _, s := range [][]byte{rec.Value, rec.Key, rec.Headers[0].Value, rec.Headers[1].Value} {
			if cap(s) != len(s) {
				t.Fatalf("slice %q has room to grow into its neighbour (cap %d)", s, cap(s))
			}
		}
		// The value must own its bytes: encoding the next event reuses
		// the scratch buffer and must not change this one.
		other := randomEvent(rng)
		_ = eventRecord(&other, 3, ts)
		if !bytes.Equal(rec.Value, want) {
			t.Fatalf("value changed by the next encode: %s", rec.Value)
		}
	}
}

// BenchmarkEventRecords builds the records of a completed credit (two
// events), from eventsFor to the kgo.Record: "json" as emitEvents did with
// encoding/json, "append" with eventRecord.
func BenchmarkEventRecords(b *testing.B) {
	c := ledger.Command{Kind: ledger.KindCredit, TxID: uuid.New(), AccountID: uuid.New(), Amount: 1234, Currency: "USD"}
	r := ledger.Result{
		TxID: c.TxID, Kind: ledger.KindCredit, AccountID: c.AccountID, Status: ledger.StatusCompleted,
		Amount: 1234, Delta: 1234, Currency: "USD", Balance: 100_000, Available: 150_000, Version: 7,
		TimestampUs: 1_700_000_000_123_456,
	}
	var sink *kgo.Record
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, ev := range eventsFor(&c, &r, 3, 1042) {
				body, err := json.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				sink = &kgo.Record{
					Topic: kafkalog.TopicEvents, Partition: 3,
					Key: []byte(ev.AccountID), Value: body, Timestamp: time.UnixMicro(r.TimestampUs),
					Headers: []kgo.RecordHeader{{Key: "event_id", Value: []byte(ev.EventID)}, {Key: "type", Value: []byte(ev.Type)}},
				}
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			events := eventsFor(&c, &r, 3, 1042)
			for i := range events {
				sink = eventRecord(&events[i], 3, time.UnixMicro(r.TimestampUs))
			}
		}
	})
	b.Run("eventsFor-only", func(b *testing.B) {
		// What "append" spends before encoding: the Event strings.
		b.ReportAllocs()
		for b.Loop() {
			_ = eventsFor(&c, &r, 3, 1042)
		}
	})
	b.Run("encode-only", func(b *testing.B) {
		// Just the JSON of one event, no eventsFor and no record: the
		// part encoding/json did before.
		ev := eventsFor(&c, &r, 3, 1042)[0]
		var w jsonw.Writer
		b.ReportAllocs()
		for b.Loop() {
			w.Reset()
			appendEvent(&w, &ev)
		}
	})
	b.Run("encode-only-json", func(b *testing.B) {
		ev := eventsFor(&c, &r, 3, 1042)[0]
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	_ = sink
}
