package engine

import (
	"strconv"
	"time"

	"github.com/bursar/bursar/engine/ledger"
	"github.com/google/uuid"
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
// dedupe on it.
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
}

// eventsFor returns the events one applied command causes: the
// transaction's outcome (completed, failed, refunded; none for a pending
// debit leg or an open) and balance.changed when the balance moved.
func eventsFor(c *ledger.Command, r *ledger.Result, p int32, off int64) []Event {
	if r.Replayed || (r.Unrecorded && !r.Tombstone) {
		return nil
	}
	var typ string
	switch {
	case r.Kind == ledger.KindOpen:
	case r.Kind == ledger.KindTransferRefund:
		typ = EventTransferRefunded
	case r.Status == ledger.StatusCompleted:
		typ = EventTransactionCompleted
	case r.Status == ledger.StatusFailed:
		typ = EventTransactionFailed
	}
	exp, _ := ledger.CurrencyExponent(r.Currency)
	base := Event{
		TransactionID: r.TxID.String(), Kind: r.Kind.String(), AccountID: r.AccountID.String(),
		Amount: ledger.FormatAmount(r.Amount, exp), Delta: ledger.FormatAmount(r.Delta, exp),
		Currency: r.Currency, Status: r.Status.String(),
		Balance: ledger.FormatAmount(r.Balance, exp), Available: ledger.FormatAmount(r.Available, exp),
		Version: r.Version, Timestamp: time.UnixMicro(r.TimestampUs).UTC().Format(time.RFC3339Nano),
		Partition: p, Offset: off,
	}
	if c.Counterparty != uuid.Nil {
		base.CounterpartyID = c.Counterparty.String()
	}
	if r.Code != ledger.OK {
		base.Code = r.Code.String()
	}
	var out []Event
	if typ != "" {
		e := base
		e.Type, e.EventID = typ, r.TxID.String()+"/"+r.Kind.String()+"/"+typ
		out = append(out, e)
	}
	if r.Delta != 0 {
		e := base
		e.Type, e.EventID = EventBalanceChanged, r.AccountID.String()+"/v"+strconv.FormatInt(r.Version, 10)
		out = append(out, e)
	}
	return out
}

// emitEvents produces the events of one applied command to the events
// partition with the command's partition number; the buffer's flush waits
// for them (rule 3).
func (p *partition) emitEvents(b *buffer, c *ledger.Command, r *ledger.Result, off int64) {
	events := eventsFor(c, r, p.id, off)
	for i := range events {
		p.produce(b, eventRecord(&events[i], p.id%p.e.eventPartitions, time.UnixMicro(r.TimestampUs)))
		p.e.m.events.Inc()
	}
}
