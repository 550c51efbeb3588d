package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bursar/bursar/engine/kafkalog"
	"github.com/bursar/bursar/engine/ledger"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

var sinkRec *kgo.Record

func BenchmarkBeforeEvents(b *testing.B) {
	c := &ledger.Command{Kind: ledger.KindCredit, AccountID: uuid.New(), TxID: uuid.New(), Amount: 1234, Currency: "USD"}
	r := &ledger.Result{TxID: c.TxID, Kind: ledger.KindCredit, AccountID: c.AccountID, Status: ledger.StatusCompleted,
		Amount: 1234, Delta: 1234, Currency: "USD", Balance: 100000, Available: 150000, Version: 7, TimestampUs: 1_700_000_000_123_456}
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range eventsFor(c, r, 3, 1042) {
			body, err := json.Marshal(ev)
			if err != nil {
				panic(err)
			}
			sinkRec = &kgo.Record{
				Topic: kafkalog.TopicEvents, Partition: 3,
				Key: []byte(ev.AccountID), Value: body, Timestamp: time.UnixMicro(r.TimestampUs),
				Headers: []kgo.RecordHeader{{Key: "event_id", Value: []byte(ev.EventID)}, {Key: "type", Value: []byte(ev.Type)}},
			}
		}
	}
}
