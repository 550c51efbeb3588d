package engine

import (
	"strconv"
	"sync"
	"time"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/kafkalog"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Event types on bursar.events. Stable: downstream consumers switch on them.
const (
	EventTransactionCompleted = "transaction.completed"
	EventTransactionFailed    = "transaction.failed"
	EventTransferRefunded     = "transfer.refunded"
	EventBalanceChanged       = "balance.changed"
)

// Event is the JSON body of one bursar.events record. Delivery is at least
// once (a replay re-emits); EventID is stable across replays, so consumers
// dedupe on it. The engine does not build Events: it encodes the same JSON
// straight from the applied result (eventRecords), and the tests hold the
// two to byte equality.
type Event struct {
	EventID        string `json:"event_id"`
	Type           string `json:"type"`
	TransactionID  string `json:"transaction_id"`
	Kind           string `json:"kind"`
	AccountID      string `json:"account_id"`
	CounterpartyID string `json:"counterparty_account_id,omitempty"`
	Amount         string `json:"amount"`
	Delta          string `json:"delta"`
	Currency       string `json:"currency"`
	Status         string `json:"status"`
	Code           string `json:"code,omitempty"`
	Balance        string `json:"balance"`
	Available      string `json:"available_balance"`
	Version        int64  `json:"version"`
	Timestamp      string `json:"timestamp"`
	Partition      int32  `json:"partition"`
	Offset         int64  `json:"offset"`
	CreatedBy      string `json:"created_by,omitempty"` // the principal that asked for the transaction
}

// eventTypes says which events one applied command causes: the
// transaction's outcome (completed, failed, refunded; none for a pending
// debit leg or an open) and balance.changed when the balance moved. A
// replayed command causes none (its events went out when it was first
// applied), nor does a refusal that left no record.
func eventTypes(r *ledger.Result) (outcome string, balance bool) {
	if r.Replayed || (r.Unrecorded && !r.Tombstone) {
		return "", false
	}
	switch {
	case r.Kind == ledger.KindOpen:
	case r.Kind == ledger.KindTransferRefund:
		outcome = EventTransferRefunded
	case r.Status == ledger.StatusCompleted:
		outcome = EventTransactionCompleted
	case r.Status == ledger.StatusFailed:
		outcome = EventTransactionFailed
	}
	return outcome, r.Delta != 0
}

// eventScratch holds the buffers the shared part of a command's events is
// encoded into before it is copied out; it is a few hundred bytes (every
// field is bounded), so the buffers stay small.
var eventScratch = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// eventSet is the records of one command's events (at most two) and their
// headers, allocated together.
type eventSet struct {
	recs [2]kgo.Record
	hdrs [4]kgo.RecordHeader
}

// eventRecords appends to dst the bursar.events records of one applied
// command of partition p, for events partition part.
//
// The events of one command differ only in event_id and type, the first two
// members, so the rest of the object is encoded once and copied. All the
// records' bytes (values, the key, which is the account ID, and the
// event_id and type header values) share one exact-size allocation: kgo
// holds a record's slices until its produce completes. Each slice is capped
// at its own length, so an append to one cannot run into the next.
func eventRecords(dst []*kgo.Record, c *ledger.Command, r *ledger.Result, p, part int32, off int64) []*kgo.Record {
	outcome, balance := eventTypes(r)
	if outcome == "" && !balance {
		return dst
	}
	sp := eventScratch.Get().(*[]byte)
	tail := appendEventTail((*sp)[:0], c, r, p, off)
	defer func() { *sp = tail[:0]; eventScratch.Put(sp) }()

	// The event IDs: "<transaction>/<kind>/<type>" and "<account>/v<version>".
	var ids [2][96]byte
	var idv [2][]byte
	var types [2]string
	n := 0
	if outcome != "" {
		id := jsonw.AppendUUID(ids[n][:0], r.TxID)
		id = append(id, '/')
		id = append(id, r.Kind.String()...)
		id = append(id, '/')
		idv[n], types[n] = append(id, outcome...), outcome
		n++
	}
	if balance {
		id := jsonw.AppendUUID(ids[n][:0], r.AccountID)
		id = append(id, "/v"...)
		idv[n], types[n] = strconv.AppendInt(id, r.Version, 10), EventBalanceChanged
		n++
	}

	const head1, head2 = `{"event_id":"`, `","type":"`
	size := 36
	for i := range n {
		size += 2*(len(idv[i])+len(types[i])) + len(head1) + len(head2) + 1 + len(tail)
	}
	buf := make([]byte, 0, size)
	piece := func(b []byte) []byte { // the bytes appended since b's length
		return buf[len(b):len(buf):len(buf)]
	}
	buf = jsonw.AppendUUID(buf, r.AccountID)
	key := buf[:36:36]
	set := &eventSet{}
	ts := time.UnixMicro(r.TimestampUs)
	for i := range n {
		// The ID and the type are ASCII that JSON does not escape (hex,
		// '-', '/', '.', letters and digits), copied as they are.
		mark := buf
		buf = append(buf, idv[i]...)
		id := piece(mark)
		mark = buf
		buf = append(buf, types[i]...)
		typ := piece(mark)
		mark = buf
		buf = append(buf, head1...)
		buf = append(buf, idv[i]...)
		buf = append(buf, head2...)
		buf = append(buf, types[i]...)
		buf = append(buf, '"')
		buf = append(buf, tail...)
		val := piece(mark)
		h := set.hdrs[2*i : 2*i+2 : 2*i+2]
		h[0] = kgo.RecordHeader{Key: "event_id", Value: id}
		h[1] = kgo.RecordHeader{Key: "type", Value: typ}
		rec := &set.recs[i]
		*rec = kgo.Record{Topic: kafkalog.TopicEvents, Partition: part, Key: key, Value: val, Timestamp: ts, Headers: h}
		dst = append(dst, rec)
	}
	return dst
}

// appendEventTail appends the members of an event after its event_id and
// type, and the closing brace: the fields of Event in declaration order,
// with its json tags and omitempty, escaped as encoding/json escapes them.
func appendEventTail(dst []byte, c *ledger.Command, r *ledger.Result, p int32, off int64) []byte {
	exp, _ := ledger.CurrencyExponent(r.Currency)
	dst = append(dst, `,"transaction_id":"`...)
	dst = jsonw.AppendUUID(dst, r.TxID)
	dst = append(dst, `","kind":`...)
	dst = jsonw.AppendString(dst, r.Kind.String())
	dst = append(dst, `,"account_id":"`...)
	dst = jsonw.AppendUUID(dst, r.AccountID)
	if c.Counterparty != uuid.Nil {
		dst = append(dst, `","counterparty_account_id":"`...)
		dst = jsonw.AppendUUID(dst, c.Counterparty)
	}
	dst = append(dst, `","amount":"`...)
	dst = ledger.AppendAmount(dst, r.Amount, exp)
	dst = append(dst, `","delta":"`...)
	dst = ledger.AppendAmount(dst, r.Delta, exp)
	dst = append(dst, `","currency":`...)
	dst = jsonw.AppendString(dst, r.Currency)
	dst = append(dst, `,"status":`...)
	dst = jsonw.AppendString(dst, r.Status.String())
	if r.Code != ledger.OK {
		dst = append(dst, `,"code":`...)
		dst = jsonw.AppendString(dst, r.Code.String())
	}
	dst = append(dst, `,"balance":"`...)
	dst = ledger.AppendAmount(dst, r.Balance, exp)
	dst = append(dst, `","available_balance":"`...)
	dst = ledger.AppendAmount(dst, r.Available, exp)
	dst = append(dst, `","version":`...)
	dst = strconv.AppendInt(dst, r.Version, 10)
	dst = append(dst, `,"timestamp":"`...)
	dst = time.UnixMicro(r.TimestampUs).UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","partition":`...)
	dst = strconv.AppendInt(dst, int64(p), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, off, 10)
	if c.CreatedBy != "" {
		dst = append(dst, `,"created_by":`...)
		dst = jsonw.AppendString(dst, c.CreatedBy)
	}
	return append(dst, '}')
}
