package ingress

import (
	"sync"
	"time"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Response bodies on the write path (credit, debit and transfer answers,
// balances, errors) are appended by hand with jsonw into a pooled buffer:
// encoding/json over maps cost about 10% of a node's CPU under a
// credit/debit load. Member order is the order of the README's tables;
// the values are those the maps had (amounts as decimal strings,
// timestamps RFC 3339 in UTC). ingress/jsonbody_test.go holds each body to
// the map it replaced.

// jsonAppender is a response body that writes itself; writeJSON takes it
// without reflection. The body types below hold one pointer, so passing
// one as an `any` does not allocate.
type jsonAppender interface {
	appendJSON(w *jsonw.Writer)
}

// jsonWriterCapMax is the largest buffer returned to the pool; a larger
// one (a long history page) goes to the garbage collector rather than stay
// pinned by the pool.
const jsonWriterCapMax = 64 << 10

var jsonWriters = sync.Pool{New: func() any { return &jsonw.Writer{B: make([]byte, 0, 1024)} }}

func getJSONWriter() *jsonw.Writer { return jsonWriters.Get().(*jsonw.Writer) }

func putJSONWriter(w *jsonw.Writer) {
	if cap(w.B) > jsonWriterCapMax {
		return
	}
	w.Reset()
	jsonWriters.Put(w)
}

// sendJSON answers with the JSON in w plus a newline. The response copies
// the bytes, so w can go back to the pool at once.
func sendJSON(ctx *fasthttp.RequestCtx, status int, w *jsonw.Writer) {
	w.B = append(w.B, '\n')
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(w.B)
}

// marshalBody is MarshalJSON for the body types, so that one nested in a
// map still marshals (history's page is a map of recordBody) instead of
// silently becoming {}.
func marshalBody(a jsonAppender) ([]byte, error) {
	var w jsonw.Writer
	a.appendJSON(&w)
	return w.B, nil
}

// amountMember writes member k with an amount as its decimal string, as
// ledger.FormatAmount.
func amountMember(w *jsonw.Writer, k string, units int64, exp int) {
	w.Key(k)
	w.B = append(w.B, '"')
	w.B = ledger.AppendAmount(w.B, units, exp)
	w.B = append(w.B, '"')
}

// timeMember writes member k with a record timestamp, as timestamp.
func timeMember(w *jsonw.Writer, k string, us int64) {
	w.Time(k, time.UnixMicro(us).UTC())
}

// txBody is the answer to a credit or debit.
type txBody struct{ r *ledger.Result }

func (b txBody) MarshalJSON() ([]byte, error) { return marshalBody(b) }

func (b txBody) appendJSON(w *jsonw.Writer) {
	r := b.r
	exp, _ := ledger.CurrencyExponent(r.Currency)
	w.Open()
	w.UUID("transaction_id", r.TxID)
	w.String("status", r.Status.String())
	w.String("type", r.Kind.String())
	timeMember(w, "timestamp", r.TimestampUs)
	w.UUID("account_id", r.AccountID)
	amountMember(w, "amount", r.Amount, exp)
	w.String("currency", r.Currency)
	amountMember(w, "current_balance", r.Balance, exp)
	amountMember(w, "available_balance", r.Available, exp)
	w.Close()
}

// accountBody is an account, as opened or read.
type accountBody struct {
	a   *ledger.Account
	exp int
}

func (b accountBody) MarshalJSON() ([]byte, error) { return marshalBody(b) }

func (b accountBody) appendJSON(w *jsonw.Writer) {
	a, exp := b.a, b.exp
	w.Open()
	w.UUID("account_id", a.ID)
	w.String("customer_id", a.CustomerID)
	if a.Owner == "" {
		w.Null("owner_id")
	} else {
		w.String("owner_id", a.Owner)
	}
	w.String("account_type", a.Type)
	w.String("currency", a.Currency)
	w.String("status", a.Status.String())
	amountMember(w, "overdraft_limit", a.OverdraftLimit, exp)
	amountMember(w, "current_balance", a.Balance, exp)
	amountMember(w, "available_balance", a.Available(), exp)
	w.Int("version", a.Version)
	timeMember(w, "created_at", a.CreatedUs)
	timeMember(w, "updated_at", a.UpdatedUs)
	w.Close()
}

// appendBalance writes the answer to a balance read of account id.
// consistency says where it comes from: strong (the owner's memory, as
// of asOfUs, the read) or eventual (the last committed state Redis holds,
// as of its flush's commit).
func appendBalance(w *jsonw.Writer, id uuid.UUID, a *ledger.Account, exp int, consistency string, asOfUs int64) {
	w.Open()
	w.UUID("account_id", id)
	w.String("currency", a.Currency)
	amountMember(w, "current_balance", a.Balance, exp)
	amountMember(w, "available_balance", a.Available(), exp)
	w.Int("version", a.Version)
	w.String("consistency", consistency)
	timeMember(w, "as_of", asOfUs)
	w.Close()
}

// writeBalance answers a balance read. It takes the account by pointer
// and not through an interface, so the caller's copy stays on its stack.
func writeBalance(ctx *fasthttp.RequestCtx, id uuid.UUID, a *ledger.Account, exp int, consistency string, asOfUs int64) {
	w := getJSONWriter()
	appendBalance(w, id, a, exp, consistency, asOfUs)
	sendJSON(ctx, 200, w)
	putJSONWriter(w)
}

// recordBody is one stored transaction row, as the reader v may see it
// (nil: all of it).
type recordBody struct {
	r *storage.TxRecord
	v *rowView
}

func (b recordBody) MarshalJSON() ([]byte, error) { return marshalBody(b) }

func (b recordBody) appendJSON(w *jsonw.Writer) {
	r := b.r
	exp, _ := ledger.CurrencyExponent(r.Currency)
	w.Open()
	w.UUID("transaction_id", r.TxID)
	w.String("type", r.Kind.String())
	w.String("status", r.Status.String())
	w.UUID("account_id", r.AccountID)
	amountMember(w, "amount", r.Amount, exp)
	w.String("currency", r.Currency)
	w.String("description", r.Description)
	w.String("reference_id", r.ReferenceID)
	timeMember(w, "timestamp", r.TimestampUs)
	if b.v.seesBalance(r) {
		amountMember(w, "balance_after", r.Balance, exp)
		w.Int("sequence", r.Seq)
	} else {
		w.Null("balance_after")
		w.Null("sequence")
	}
	if r.Code != ledger.OK {
		w.String("error_code", r.Code.String())
	}
	if r.Counterparty != uuid.Nil {
		w.UUID("counterparty_account_id", r.Counterparty)
	}
	createdBy(w, b.v.createdBy(r.CreatedBy))
	w.Close()
}

// rowView is what a customer may see of stored rows: the balance after
// a row and its sequence only on its own accounts (a transfer's other leg
// would show another owner's balance), and created_by only when it is the
// customer itself (another's is a user ID, and so the owner ID of that
// user's accounts). A nil view sees everything.
type rowView struct {
	owned map[uuid.UUID]bool
	self  string // the reader's principal, as created_by records it
}

func (v *rowView) seesBalance(r *storage.TxRecord) bool { return v == nil || v.owned[r.AccountID] }

func (v *rowView) createdBy(by string) string {
	if v == nil || by == v.self {
		return by
	}
	return ""
}

// createdBy writes member created_by: the principal that asked for the
// transaction, null when it is not known (written without authentication,
// or before it was recorded).
func createdBy(w *jsonw.Writer, by string) {
	if by == "" {
		w.Null("created_by")
		return
	}
	w.String("created_by", by)
}

// pendingBody is the 202 answer to a write whose outcome did not arrive
// within the wait timeout.
type pendingBody struct{ c *ledger.Command }

func (b pendingBody) MarshalJSON() ([]byte, error) { return marshalBody(b) }

func (b pendingBody) appendJSON(w *jsonw.Writer) {
	w.Open()
	w.UUID("transaction_id", b.c.TxID)
	w.String("status", "pending")
	w.UUID("account_id", b.c.AccountID)
	w.Key("message")
	w.B = append(w.B, `"accepted; poll GET /api/v1/transactions/`...)
	w.B = jsonw.AppendUUID(w.B, b.c.TxID)
	w.B = append(w.B, '"')
	w.Close()
}

// appendTransferOutcome writes the 201 answer to a completed transfer:
// the command as the client sent it and the transfer's ID.
func appendTransferOutcome(w *jsonw.Writer, c *ledger.Command, res *ledger.Result) {
	exp, _ := ledger.CurrencyExponent(c.Currency)
	w.Open()
	w.UUID("transaction_id", res.TxID)
	w.String("type", "transfer")
	w.String("status", "completed")
	w.UUID("source_account_id", c.AccountID)
	w.UUID("destination_account_id", c.Counterparty)
	amountMember(w, "amount", c.Amount, exp)
	w.String("currency", c.Currency)
	w.String("description", c.Description)
	w.String("reference_id", c.ReferenceID)
	// The transfer's own time (the credit leg carries the debit's): a
	// retry's answer is the first one's.
	timeMember(w, "timestamp", res.TimestampUs)
	w.Close()
}

// transferBody is a transfer assembled from its legs, legs included, as
// the reader v may see it (nil: all of it).
type transferBody struct {
	t *transfer
	v *rowView
}

func (b transferBody) MarshalJSON() ([]byte, error) { return marshalBody(b) }

func (b transferBody) appendJSON(w *jsonw.Writer) {
	t := b.t
	d := t.debit
	if d == nil {
		d = t.credit
		if d == nil {
			d = t.refund
		}
	}
	exp, _ := ledger.CurrencyExponent(d.Currency)
	src, dst := d.AccountID, d.Counterparty
	if d.Kind == ledger.KindTransferCredit {
		src, dst = dst, src
	}
	w.Open()
	w.UUID("transaction_id", d.TxID)
	w.String("type", "transfer")
	w.String("status", t.status)
	w.UUID("source_account_id", src)
	w.UUID("destination_account_id", dst)
	amountMember(w, "amount", d.Amount, exp)
	w.String("currency", d.Currency)
	w.String("description", d.Description)
	w.String("reference_id", d.ReferenceID)
	timeMember(w, "timestamp", d.TimestampUs)
	if t.code != ledger.OK {
		w.String("error_code", t.code.String())
	}
	createdBy(w, b.v.createdBy(d.CreatedBy))
	w.Key("legs")
	w.OpenArray()
	for _, l := range [...]*storage.TxRecord{t.debit, t.credit, t.refund} {
		if l != nil {
			recordBody{l, b.v}.appendJSON(w)
		}
	}
	w.CloseArray()
	w.Close()
}

// appendError writes the body of a refusal: {"error": {code, message,
// request_id}}.
func appendError(w *jsonw.Writer, code, msg, requestID string) {
	w.Open()
	w.Key("error")
	w.Open()
	w.String("code", code)
	w.String("message", msg)
	w.String("request_id", requestID)
	w.Close()
	w.Close()
}
