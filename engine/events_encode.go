package engine

import (
	"sync"
	"time"

	"github.com/bursar/bursar/engine/jsonw"
	"github.com/bursar/bursar/engine/kafkalog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Events are encoded by hand: encoding/json's reflection over Event cost a
// visible share of a node's CPU, at one or two events per command.

// appendEvent writes ev as JSON: the fields of Event in declaration order,
// with its json tags and omitempty, escaped as encoding/json escapes; the
// bytes are those json.Marshal(ev) makes (events_encode_test.go).
func appendEvent(w *jsonw.Writer, ev *Event) {
	w.Open()
	w.String("event_id", ev.EventID)
	w.String("type", ev.Type)
	w.String("transaction_id", ev.TransactionID)
	w.String("kind", ev.Kind)
	w.String("account_id", ev.AccountID)
	if ev.CounterpartyID != "" {
		w.String("counterparty_account_id", ev.CounterpartyID)
	}
	w.String("amount", ev.Amount)
	w.String("delta", ev.Delta)
	w.String("currency", ev.Currency)
	w.String("status", ev.Status)
	if ev.Code != "" {
		w.String("code", ev.Code)
	}
	w.String("balance", ev.Balance)
	w.String("available_balance", ev.Available)
	w.Int("version", ev.Version)
	w.String("timestamp", ev.Timestamp)
	w.Int("partition", int64(ev.Partition))
	w.Int("offset", ev.Offset)
	w.Close()
}

// eventScratch holds the buffers events are encoded into before their
// bytes are copied out; an event is a few hundred bytes (every field is
// bounded), so the buffers stay small.
var eventScratch = sync.Pool{New: func() any { return &jsonw.Writer{B: make([]byte, 0, 512)} }}

// eventRecord returns the bursar.events record of ev for events
// partition part. The value, the key (account ID) and the event_id and
// type header values share one exact-size allocation: kgo holds the
// record's slices until the produce completes, so they cannot be the
// pooled scratch buffer. Each slice is capped at its own length, so an
// append to one cannot run into the next.
func eventRecord(ev *Event, part int32, ts time.Time) *kgo.Record {
	w := eventScratch.Get().(*jsonw.Writer)
	appendEvent(w, ev)
	nv, nk, ni, nt := len(w.B), len(ev.AccountID), len(ev.EventID), len(ev.Type)
	buf := make([]byte, 0, nv+nk+ni+nt)
	buf = append(buf, w.B...)
	buf = append(buf, ev.AccountID...)
	buf = append(buf, ev.EventID...)
	buf = append(buf, ev.Type...)
	w.Reset()
	eventScratch.Put(w)

	value := buf[:nv:nv]
	key := buf[nv : nv+nk : nv+nk]
	id := buf[nv+nk : nv+nk+ni : nv+nk+ni]
	typ := buf[nv+nk+ni:]
	return &kgo.Record{
		Topic: kafkalog.TopicEvents, Partition: part,
		Key: key, Value: value, Timestamp: ts,
		Headers: []kgo.RecordHeader{{Key: "event_id", Value: id}, {Key: "type", Value: typ}},
	}
}
