package ingress

import (
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

type transferRequest struct {
	SourceAccountID      string `json:"source_account_id"`
	DestinationAccountID string `json:"destination_account_id"`
	moneyFields
}

// decodeTransfer turns a transfer body into the debit-leg command, which
// runs in the source account's partition (rule 1).
func decodeTransfer(body []byte, idemKey string) (ledger.Command, *apiError) {
	var req transferRequest
	if err := decodeStrict(body, &req, transferMembers); err != nil {
		return ledger.Command{}, err
	}
	return req.command(idemKey)
}

// command validates a decoded transfer request (a body, or an item of a
// batch) into the debit-leg command.
func (req *transferRequest) command(idemKey string) (ledger.Command, *apiError) {
	var c ledger.Command
	src, aerr := parseID(req.SourceAccountID, "source_account_id")
	if aerr != nil {
		return c, aerr
	}
	dst, aerr := parseID(req.DestinationAccountID, "destination_account_id")
	if aerr != nil {
		return c, aerr
	}
	amount, cur, key, aerr := req.moneyFields.validate(idemKey)
	if aerr != nil {
		return c, aerr
	}
	if src == dst {
		return c, bad(ledger.CodeSameAccount, "source_account_id and destination_account_id are the same account")
	}
	return ledger.Command{
		Kind: ledger.KindTransferDebit, AccountID: src, Counterparty: dst, Amount: amount, Currency: cur,
		Description: req.Description, ReferenceID: req.ReferenceID, IdemKey: key,
	}, nil
}

func (s *Server) transfer(ctx *fasthttp.RequestCtx) *apiError {
	c, res, aerr := s.decodeAndSubmit(ctx, 0, func(_ ledger.Kind, body []byte, key string) (ledger.Command, *apiError) {
		return decodeTransfer(body, key)
	})
	if aerr != nil || res == nil {
		return aerr
	}
	// A retry's answer is the first request's: the debit replayed, and the
	// credit leg it sent again answered with the transfer's outcome (or
	// applied it, when the first copy was still on its way), under the
	// first request's transaction ID.
	if res.Replayed || res.TxID != c.TxID {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	}
	return writeTransferOutcome(ctx, &c, res)
}

// writeTransferOutcome answers with a transfer's final outcome as the
// deciding leg reported it: the credit leg (completed, or refused by the
// destination) or a refused debit leg.
func writeTransferOutcome(ctx *fasthttp.RequestCtx, c *ledger.Command, res *ledger.Result) *apiError {
	if res.Status == ledger.StatusFailed {
		aerr := resultError(res)
		if res.Kind == ledger.KindTransferCredit {
			// The debit is recorded and refunded: the client can look the
			// transfer up, so its ID is part of the answer.
			aerr.msg = "the destination refused the transfer; the amount was refunded to the source: " + res.Code.Info().Description + " (transaction " + c.TxID.String() + ")"
			if res.TxID != uuid.Nil {
				aerr.msg = "the destination refused the transfer; the amount was refunded to the source: " + res.Code.Info().Description + " (transaction " + res.TxID.String() + ")"
			}
		}
		return aerr
	}
	w := getJSONWriter()
	appendTransferOutcome(w, c, res)
	sendJSON(ctx, 201, w)
	putJSONWriter(w)
	return nil
}

// transfer is a transfer assembled from its legs.
type transfer struct {
	debit, credit, refund *storage.TxRecord
	status                string
	code                  ledger.Code
}

// transferView assembles the legs of one transfer; nil if recs are not a
// transfer.
func transferView(recs []storage.TxRecord) *transfer {
	var t transfer
	for i := range recs {
		switch recs[i].Kind {
		case ledger.KindTransferDebit:
			t.debit = &recs[i]
		case ledger.KindTransferCredit:
			t.credit = &recs[i]
		case ledger.KindTransferRefund:
			t.refund = &recs[i]
		}
	}
	if t.debit == nil {
		if t.credit == nil && t.refund == nil {
			return nil
		}
		// Legs flushed by another partition before the debit's: in flight.
		t.status = "pending"
		return &t
	}
	switch {
	case t.debit.Status == ledger.StatusFailed:
		t.status, t.code = "failed", t.debit.Code
	case t.refund != nil:
		t.status, t.code = "refunded", t.refund.Code
	case t.credit != nil && t.credit.Status == ledger.StatusCompleted:
		t.status = "completed"
	case t.credit != nil:
		// Refused but the refund is not flushed yet.
		t.status, t.code = "refunded", t.credit.Code
	default:
		t.status = "pending"
	}
	return &t
}

// json returns the transfer as a response body (jsonbody.go).
func (t *transfer) json(v *rowView) transferBody { return transferBody{t, v} }
