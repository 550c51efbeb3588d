package ingress

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// POST /api/v1/transactions/batch takes up to Config.BatchItemsMax
// credits, debits and transfers in one request. The items are
// independent, not atomic: each is its own command in its own account's
// partition, with its own outcome, exactly as if it had been sent to its
// single endpoint. What the batch saves is per-request work: one HTTP
// round trip, one reservation in the reply registry, every record handed
// to the producer at once (franz-go batches them per partition), one
// deadline for all the answers and one wait for the log's durability.
//
// Limits: the whole batch is refused with 503 UNAVAILABLE
// (bursar_ingress_rejected_total{reason="inflight"}) when the reply
// registry cannot hold a waiter for every valid item; a batch is never
// half admitted, so a client retries it whole, with the same keys.

const batchPath = "/api/v1/transactions/batch"

// initBatch creates the batch route's metrics.
func (s *Server) initBatch(reg prometheus.Registerer) {
	s.batchItems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bursar_ingress_batch_items_total",
		Help: "Items of POST /transactions/batch by the class of their status (2xx, 4xx, 5xx).",
	}, []string{"status"})
	if reg != nil {
		reg.MustRegister(s.batchItems)
	}
}

// bodyBytesMax is the body limit of the route at path.
func (s *Server) bodyBytesMax(path string) int {
	if path == batchPath {
		return s.cfg.MaxBatchBodyBytes
	}
	return s.cfg.MaxBodyBytes
}

// checkBodySize refuses a body above its route's limit. fasthttp already
// refused one above the limit of the path as the request line spells it
// (routeBodyBytesMax); this checks the limit of the route the normalized
// path reaches.
func (s *Server) checkBodySize(ctx *fasthttp.RequestCtx, path string) *apiError {
	if limit := s.bodyBytesMax(path); len(ctx.Request.Body()) > limit {
		s.rejected.WithLabelValues("body_size").Inc()
		return bad(ledger.CodePayloadTooLarge, "request body is larger than "+strconv.Itoa(limit)+" bytes")
	}
	return nil
}

// batchItem is one item on its way through the batch: decoded, then
// appended and answered, or refused at one of the steps.
type batchItem struct {
	cmd      ledger.Command
	err      *apiError // refused: by its decoder, the log, or the durable wait
	res      ledger.Result
	appended bool // the producer acknowledged its record
	answered bool // res holds the owner's answer
}

func (s *Server) batch(ctx *fasthttp.RequestCtx) *apiError {
	if err := s.checkJSON(ctx); err != nil {
		return err
	}
	decoded, aerr := decodeBatch(ctx.PostBody(), s.cfg.BatchItemsMax)
	if aerr != nil {
		return aerr
	}
	// A full disk refuses the whole batch, as before anything per item.
	if aerr := s.refuseWrites(); aerr != nil {
		return aerr
	}
	items := make([]batchItem, len(decoded))
	valid := make([]int, 0, len(decoded)) // indexes of the items to submit
	by := s.createdBy(ctx)
	for i := range decoded {
		items[i].cmd, items[i].err = decoded[i].cmd, decoded[i].err
		items[i].cmd.CreatedBy = by
		if items[i].err == nil {
			items[i].err = s.restrict(ctx, &items[i].cmd)
		}
		if items[i].err == nil {
			items[i].err = s.refuseWaiting(&items[i].cmd)
		}
		if items[i].err == nil {
			valid = append(valid, i)
		}
	}
	if len(valid) > 0 {
		if aerr := s.submitBatch(ctx, items, valid); aerr != nil {
			return aerr
		}
	}
	s.writeBatch(ctx, items)
	return nil
}

// submitBatch appends the valid items' commands and waits for their
// answers, then for the log's durability. A non-nil error refuses the
// whole batch (nothing was appended).
func (s *Server) submitBatch(ctx *fasthttp.RequestCtx, items []batchItem, valid []int) *apiError {
	if aerr := s.refuseWrites(); aerr != nil {
		return aerr
	}
	first, replies, ok := s.replies.RegisterBatch(len(valid))
	if !ok {
		s.rejected.WithLabelValues("inflight").Inc()
		return bad(ledger.CodeUnavailable, "too many requests in flight for a batch of "+strconv.Itoa(len(valid))+" items; retry shortly, or send smaller batches")
	}
	type produced struct {
		k   int // index into valid
		err error
	}
	// Room for every outcome: the callbacks never block, even once this
	// function has returned.
	acks := make(chan produced, len(valid))
	// One deadline for the appends and the answers, as for one command.
	pctx, cancel := context.WithTimeout(context.Background(), s.cfg.WaitTimeout)
	defer cancel()
	now := time.Now()
	for k, i := range valid {
		rec := s.newRecord(&items[i].cmd, first+uint64(k), now)
		s.producer.Produce(pctx, rec, func(r *kgo.Record, err error) {
			if err == nil && s.cfg.Written != nil {
				s.cfg.Written(r)
			}
			acks <- produced{k, err}
		})
	}

	// open counts the items still waiting: neither answered nor refused.
	open := len(valid)
	var produceErrs int
	var produceErr error
	settle := func(p produced) {
		it := &items[valid[p.k]]
		switch {
		case p.err == nil:
			it.appended = true
		case !it.answered && it.err == nil:
			s.replies.Forget(first + uint64(p.k))
			it.err = bad(ledger.CodeUnavailable, "the command log is unavailable; retry with the same idempotency key")
			produceErrs, produceErr = produceErrs+1, p.err
			open--
		}
	}
	answer := func(r batchReply) {
		it := &items[valid[r.seq-first]]
		if it.answered || it.err != nil {
			return // refused on a produce error meanwhile (Forget raced Deliver)
		}
		it.res, it.answered = r.res, true
		open--
	}
wait:
	for open > 0 {
		select {
		case r := <-replies:
			answer(r)
		case p := <-acks:
			settle(p)
		case <-pctx.Done():
			break wait
		}
	}
	if open > 0 {
		// The deadline may have come together with answers or acks: take
		// what did happen first (an appended command must not be answered
		// as possibly lost), then give up on the rest.
		for drained := false; !drained; {
			select {
			case r := <-replies:
				answer(r)
			case p := <-acks:
				settle(p)
			default:
				drained = true
			}
		}
		for k, i := range valid {
			it := &items[i]
			if it.answered || it.err != nil {
				continue
			}
			s.replies.Forget(first + uint64(k))
			if !it.appended {
				// Not even durable yet: the outcome is unknown.
				it.err = bad(ledger.CodeUnavailable, "timed out appending the command; retry with the same idempotency key")
			}
			// Appended: 202 Accepted with the transaction ID to poll.
		}
	}
	if produceErrs > 0 {
		s.log.Warn("produce failed", "request_id", ctx.UserValue("rid"), "items", produceErrs, "err", produceErr)
	}
	s.durableBatch(items, valid)
	return nil
}

// durableBatch waits once, for the whole batch, until the log holds on
// disk everything the answers reflect (Config.Durable); 202 Accepted is a
// promise too. On failure every item that was to be answered is refused
// instead. The wait has its own deadline, as for one command: answers that
// came late in the batch's wait must not be turned into failures by a
// healthy disk.
func (s *Server) durableBatch(items []batchItem, valid []int) {
	if s.cfg.Durable == nil {
		return
	}
	waiting := false
	for _, i := range valid {
		// An answer that arrived durable (Config.AnswersDurable) needs no
		// wait; a 202 does.
		waiting = waiting || (items[i].err == nil && (!items[i].answered || !s.cfg.AnswersDurable))
	}
	if !waiting {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WaitTimeout)
	defer cancel()
	if err := s.cfg.Durable(ctx); err != nil {
		s.log.Warn("waiting for the command log to be durable failed", "err", err)
		for _, i := range valid {
			if items[i].err == nil {
				items[i].err = bad(ledger.CodeUnavailable, "the command log could not confirm it is on disk; retry with the same idempotency key")
			}
		}
	}
}

// batchWriterCapMax is the largest batch answer buffer kept for reuse
// (a full batch of transfers answers in about 300 KiB).
const batchWriterCapMax = 2 << 20

var batchWriters = sync.Pool{New: func() any { return &jsonw.Writer{B: make([]byte, 0, 64<<10)} }}

// writeBatch answers 200 with one result per item, in item order, and
// counts the items by status class.
func (s *Server) writeBatch(ctx *fasthttp.RequestCtx, items []batchItem) {
	var classes [6]float64 // by the status's first digit
	w := batchWriters.Get().(*jsonw.Writer)
	w.Open()
	w.Key("results")
	w.OpenArray()
	for i := range items {
		status := appendBatchResult(w, i, &items[i])
		classes[min(status/100, 5)]++
	}
	w.CloseArray()
	w.Close()
	sendJSON(ctx, 200, w)
	if cap(w.B) <= batchWriterCapMax {
		w.Reset()
		batchWriters.Put(w)
	}
	for c, n := range classes {
		if n > 0 {
			s.batchItems.WithLabelValues(strconv.Itoa(c) + "xx").Add(n)
		}
	}
}

// appendBatchResult writes item i's result: {"index", "status" (HTTP),
// then the members of the body its single endpoint would have answered
// with (but its "status": inlineBody), or "error": {"code", "message"}},
// and "replayed": true for a replayed command. It returns the status.
func appendBatchResult(w *jsonw.Writer, i int, it *batchItem) int {
	status, body := batchOutcome(it)
	w.Open()
	w.Int("index", int64(i))
	w.Int("status", int64(status))
	switch {
	case it.err != nil:
		w.Key("error")
		w.Open()
		w.String("code", it.err.code.String())
		w.String("message", it.err.msg)
		w.Close()
	default:
		mark := len(w.B)
		body.appendJSON(w)
		inlineBody(w, mark)
	}
	// A retry is answered under the first request's transaction ID (a
	// retried transfer by the credit leg it sent again, which may have been
	// applied fresh when the first copy was still on its way).
	if it.answered && (it.res.Replayed || it.res.TxID != it.cmd.TxID) {
		w.Bool("replayed", true)
	}
	w.Close()
	return status
}

// batchOutcome decides an item's status and, for a success, the body its
// single endpoint answers with; it sets it.err for a refusal, as the
// single endpoints do (money, writeTransferOutcome).
func batchOutcome(it *batchItem) (int, jsonAppender) {
	if it.err == nil && it.answered && it.res.Status == ledger.StatusFailed {
		it.err = resultError(&it.res)
		if it.res.Kind == ledger.KindTransferCredit {
			it.err.msg = "the destination refused the transfer; the amount was refunded to the source: " + it.err.msg
		}
	}
	switch {
	case it.err != nil:
		return it.err.code.Info().HTTPStatus, nil
	case !it.answered:
		return 202, pendingBody{&it.cmd}
	case it.cmd.Kind == ledger.KindTransferDebit:
		return 201, transferOutcomeBody{&it.cmd, &it.res}
	default:
		return 201, txBody{&it.res}
	}
}

// transferOutcomeBody is the 201 answer to a completed transfer, as
// writeTransferOutcome writes it.
type transferOutcomeBody struct {
	c   *ledger.Command
	res *ledger.Result
}

func (b transferOutcomeBody) appendJSON(w *jsonw.Writer) { appendTransferOutcome(w, b.c, b.res) }

// inlineBody turns the body object appended to w at mark, as a member
// would be (",{members}"), into members of the result being written
// (",members"), in place, less the body's own "status" member: it would
// collide with the result's HTTP status, and says nothing that status does
// not (201: "completed", 202: "pending").
func inlineBody(w *jsonw.Writer, mark int) {
	obj := w.B[mark:]
	if len(obj) < 3 || obj[0] != ',' || obj[1] != '{' || obj[len(obj)-1] != '}' {
		panic("ingress: a response body is not a JSON object: " + string(obj))
	}
	members := obj[1 : len(obj)-1]
	members[0] = ',' // over the '{': ",members", or "," for {}
	members = removeMember(members, "status")
	if len(members) == 1 {
		members = members[:0]
	}
	w.B = append(w.B[:mark], members...)
}

// removeMember removes the member named key from members, the inside of a
// compact JSON object as this package writes it (no white space), behind a
// leading comma: ",\"a\":1,\"b\":{…}". Nested members are left alone.
func removeMember(members []byte, key string) []byte {
	for i := 0; i+1 < len(members); {
		start := i
		nameEnd := skipString(members, i+1)
		name := members[i+2 : nameEnd-1]
		end := skipValue(members, nameEnd+1) // past the ':'
		if string(name) == key {
			return append(members[:start], members[end:]...)
		}
		i = end
	}
	return members
}

// skipString returns the index just past the JSON string starting at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	panic("ingress: unterminated string in a response body")
}

// skipValue returns the index just past the JSON value starting at b[i],
// in valid JSON: compact, as this package writes it, or with white space
// between tokens, as a request body may have it (members.check).
func skipValue(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); {
		switch b[j] {
		case '"':
			j = skipString(b, j)
			if depth == 0 {
				return j
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j // the enclosing value's end, after a literal
			}
			depth--
			if depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
		j++
	}
	return len(b)
}
