package baseline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Paths, as in Bursar's API.
const (
	pathOpen          = "/api/v1/accounts"
	pathCredit        = "/api/v1/transactions/credit"
	pathDebit         = "/api/v1/transactions/debit"
	pathTransfer      = "/api/v1/transactions/transfer"
	pathAccountPrefix = "/api/v1/accounts/" // + id + "/balance"
)

// apiError is a refusal with a stable code from the ledger's table.
type apiError struct {
	code ledger.Code
	msg  string
}

func (e *apiError) Error() string { return e.code.String() + ": " + e.msg }

func bad(code ledger.Code, msg string) *apiError { return &apiError{code: code, msg: msg} }

func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	rid := string(ctx.Request.Header.Peek("X-Request-ID"))
	if rid == "" || len(rid) > 128 {
		rid = s.boot + "-" + strconv.FormatUint(s.reqSeq.Add(1), 36)
	}
	ctx.Response.Header.Set("X-Request-ID", rid)
	if err := s.route(ctx); err != nil {
		s.fail(ctx, rid, err)
	}
}

func (s *Server) route(ctx *fasthttp.RequestCtx) *apiError {
	path := string(ctx.Path())
	method := string(ctx.Method())
	want := func(m string) *apiError {
		if method == m || (m == "GET" && method == "HEAD") {
			return nil
		}
		ctx.Response.Header.Set("Allow", m)
		return bad(ledger.CodeMethodNotAllowed, "use "+m+" for "+path)
	}
	c, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	switch path {
	case "/healthz":
		if err := want("GET"); err != nil {
			return err
		}
		writeJSON(ctx, 200, map[string]string{"status": "ok"})
		return nil
	case "/readyz":
		if err := want("GET"); err != nil {
			return err
		}
		pc, pcancel := context.WithTimeout(c, 2*time.Second)
		defer pcancel()
		if err := s.pool.Ping(pc); err != nil {
			writeJSON(ctx, 503, map[string]any{"ready": false, "checks": map[string]string{"postgres": err.Error()}})
			return nil
		}
		writeJSON(ctx, 200, map[string]any{"ready": true, "checks": map[string]string{"postgres": "ok"}})
		return nil
	case pathOpen:
		if err := want("POST"); err != nil {
			return err
		}
		return s.handleOpen(c, ctx)
	case pathCredit, pathDebit:
		if err := want("POST"); err != nil {
			return err
		}
		kind := kindCredit
		if path == pathDebit {
			kind = kindDebit
		}
		return s.handleMoney(c, ctx, kind)
	case pathTransfer:
		if err := want("POST"); err != nil {
			return err
		}
		return s.handleTransfer(c, ctx)
	}
	if rest, ok := strings.CutPrefix(path, pathAccountPrefix); ok {
		if idText, ok := strings.CutSuffix(rest, "/balance"); ok && !strings.Contains(idText, "/") {
			if err := want("GET"); err != nil {
				return err
			}
			return s.handleBalance(c, ctx, idText)
		}
	}
	return bad(ledger.CodeRouteNotFound, "no route for "+method+" "+path+" (the baseline serves only what the bench workloads use)")
}

// Operation kinds as stored in baseline_transactions.kind.
const (
	kindCredit   = "credit"
	kindDebit    = "debit"
	kindTransfer = "transfer"
)

type openRequest struct {
	AccountID      *string         `json:"account_id"`
	CustomerID     string          `json:"customer_id"`
	AccountType    string          `json:"account_type"`
	Currency       string          `json:"currency"`
	OverdraftLimit json.RawMessage `json:"overdraft_limit"`
}

type moneyRequest struct {
	AccountID   string          `json:"account_id"`
	Amount      json.RawMessage `json:"amount"`
	Currency    string          `json:"currency"`
	Description string          `json:"description"`
	ReferenceID string          `json:"reference_id"`
}

type transferRequest struct {
	SourceAccountID      string          `json:"source_account_id"`
	DestinationAccountID string          `json:"destination_account_id"`
	Amount               json.RawMessage `json:"amount"`
	Currency             string          `json:"currency"`
	Description          string          `json:"description"`
	ReferenceID          string          `json:"reference_id"`
}

// openNamespace derives an account ID from the idempotency key when the
// request names none, so that a retried open names the same account.
var openNamespace = uuid.MustParse("0b5e11e0-5d4c-4a1e-8f0b-626173656c69")

func (s *Server) handleOpen(c context.Context, ctx *fasthttp.RequestCtx) *apiError {
	key, aerr := idemKey(ctx, "")
	if aerr != nil {
		return aerr
	}
	var req openRequest
	if aerr := decodeStrict(ctx.PostBody(), &req); aerr != nil {
		return aerr
	}
	if aerr := checkText(req.CustomerID, "customer_id", ledger.CustomerIDLenMax, true); aerr != nil {
		return aerr
	}
	if aerr := checkText(req.AccountType, "account_type", ledger.AccountTypeLenMax, true); aerr != nil {
		return aerr
	}
	exp, aerr := parseCurrency(req.Currency)
	if aerr != nil {
		return aerr
	}
	a := account{CustomerID: req.CustomerID, Type: req.AccountType, Currency: req.Currency}
	if raw := bytes.TrimSpace(req.OverdraftLimit); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		text, aerr := amountText(raw, "overdraft_limit")
		if aerr != nil {
			return aerr
		}
		// ParseAmount checks the syntax first: a zero (the default) is
		// accepted only when well formed ("0.00", not "0." or ".").
		v, err := ledger.ParseAmount(text, exp)
		switch {
		case err == nil:
			a.Overdraft = v
		case errors.Is(err, ledger.ErrAmountNotPos) && strings.Trim(string(text), "0.") == "":
		default:
			return bad(ledger.CodeInvalidAmount, "overdraft_limit: "+err.Error())
		}
	}
	switch {
	case req.AccountID != nil:
		id, aerr := parseID(*req.AccountID, "account_id")
		if aerr != nil {
			return aerr
		}
		a.ID = id
	case key != "":
		a.ID = uuid.NewSHA1(openNamespace, []byte(key))
	default:
		a.ID = uuid.New()
	}
	got, replayed, aerr := s.open(c, a, key)
	if aerr != nil {
		return aerr
	}
	markReplayed(ctx, replayed)
	writeJSON(ctx, 201, accountJSON(&got, exp))
	return nil
}

func (s *Server) handleMoney(c context.Context, ctx *fasthttp.RequestCtx, kind string) *apiError {
	var req moneyRequest
	if aerr := decodeStrict(ctx.PostBody(), &req); aerr != nil {
		return aerr
	}
	id, aerr := parseID(req.AccountID, "account_id")
	if aerr != nil {
		return aerr
	}
	op := operation{Kind: kind, Account: id, Currency: req.Currency, Description: req.Description, ReferenceID: req.ReferenceID}
	if aerr := op.validate(ctx, req.Amount); aerr != nil {
		return aerr
	}
	return s.applyAndAnswer(c, ctx, &op, 384, appendMoneyBody)
}

func (s *Server) handleTransfer(c context.Context, ctx *fasthttp.RequestCtx) *apiError {
	var req transferRequest
	if aerr := decodeStrict(ctx.PostBody(), &req); aerr != nil {
		return aerr
	}
	src, aerr := parseID(req.SourceAccountID, "source_account_id")
	if aerr != nil {
		return aerr
	}
	dst, aerr := parseID(req.DestinationAccountID, "destination_account_id")
	if aerr != nil {
		return aerr
	}
	op := operation{Kind: kindTransfer, Account: src, Counterparty: dst, Currency: req.Currency, Description: req.Description, ReferenceID: req.ReferenceID}
	if aerr := op.validate(ctx, req.Amount); aerr != nil {
		return aerr
	}
	if src == dst {
		return bad(ledger.CodeSameAccount, "source_account_id and destination_account_id are the same account")
	}
	return s.applyAndAnswer(c, ctx, &op, 512, appendTransferBody)
}

// applyAndAnswer runs op and answers: 201 with the body body appends, or
// the refusal as an error (with the transaction of a recorded refusal).
func (s *Server) applyAndAnswer(c context.Context, ctx *fasthttp.RequestCtx, op *operation, size int, body func([]byte, *result) []byte) *apiError {
	res, aerr := s.apply(c, op)
	if aerr != nil {
		return aerr
	}
	markReplayed(ctx, res.Replayed)
	if res.Code != ledger.OK {
		return bad(res.Code, res.Code.Info().Description+" (transaction "+res.TxID.String()+")")
	}
	writeBody(ctx, 201, body(make([]byte, 0, size), res))
	return nil
}

func markReplayed(ctx *fasthttp.RequestCtx, replayed bool) {
	if replayed {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	}
}

func (s *Server) handleBalance(c context.Context, ctx *fasthttp.RequestCtx, idText string) *apiError {
	id, aerr := parseID(idText, "account_id")
	if aerr != nil {
		return aerr
	}
	a, aerr := s.balance(c, id)
	if aerr != nil {
		return aerr
	}
	exp, _ := ledger.CurrencyExponent(a.Currency)
	writeJSON(ctx, 200, map[string]any{
		"account_id": id.String(), "currency": a.Currency,
		"current_balance":   ledger.FormatAmount(a.Balance, exp),
		"available_balance": ledger.FormatAmount(a.Balance+a.Overdraft, exp),
		"version":           a.Version,
	})
	return nil
}

// validate checks the fields every money operation shares and fills the
// amount and the idempotency key (the Idempotency-Key header wins over
// reference_id, as in Bursar).
func (op *operation) validate(ctx *fasthttp.RequestCtx, amount json.RawMessage) *apiError {
	exp, aerr := parseCurrency(op.Currency)
	if aerr != nil {
		return aerr
	}
	text, aerr := amountText(amount, "amount")
	if aerr != nil {
		return aerr
	}
	v, err := ledger.ParseAmount(text, exp)
	if err != nil {
		return bad(ledger.CodeInvalidAmount, "amount: "+err.Error())
	}
	op.Amount = v
	if aerr := checkText(op.Description, "description", ledger.DescriptionLenMax, false); aerr != nil {
		return aerr
	}
	if aerr := checkKey(op.ReferenceID, "reference_id"); aerr != nil {
		return aerr
	}
	op.IdemKey, aerr = idemKey(ctx, op.ReferenceID)
	return aerr
}

// idemKey returns the Idempotency-Key header, else fallback.
func idemKey(ctx *fasthttp.RequestCtx, fallback string) (string, *apiError) {
	k := string(ctx.Request.Header.Peek("Idempotency-Key"))
	if k == "" {
		return fallback, nil
	}
	if aerr := checkKey(k, "Idempotency-Key"); aerr != nil {
		return "", aerr
	}
	return k, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) *apiError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return bad(ledger.CodeMalformedRequest, "body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bad(ledger.CodeMalformedRequest, "body is not a valid request: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad(ledger.CodeMalformedRequest, "body has data after the JSON object")
	}
	return nil
}

// amountText returns the decimal text of an amount given as a JSON
// string or number literal, without going through float64.
func amountText(raw json.RawMessage, field string) ([]byte, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, bad(ledger.CodeMissingField, field+" is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, bad(ledger.CodeInvalidAmount, field+" is not a valid string")
		}
		return []byte(s), nil
	}
	return raw, nil
}

func parseCurrency(s string) (int, *apiError) {
	if s == "" {
		return 0, bad(ledger.CodeMissingField, "currency is required")
	}
	exp, ok := ledger.CurrencyExponent(s)
	if !ok {
		return 0, bad(ledger.CodeUnsupportedCurrency, "currency "+strconv.Quote(s)+" is not a supported ISO 4217 code")
	}
	return exp, nil
}

func parseID(s, field string) (uuid.UUID, *apiError) {
	if s == "" {
		return uuid.Nil, bad(ledger.CodeMissingField, field+" is required")
	}
	id, err := uuid.Parse(s)
	if len(s) != 36 || err != nil || id == uuid.Nil {
		return uuid.Nil, bad(ledger.CodeInvalidField, field+" must be a canonical, non-nil UUID")
	}
	return id, nil
}

func checkText(s, field string, max int, required bool) *apiError {
	if s == "" && required {
		return bad(ledger.CodeMissingField, field+" is required")
	}
	if len(s) > max {
		return bad(ledger.CodeInvalidField, field+" is longer than "+strconv.Itoa(max)+" bytes")
	}
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r == '\uFFFD' {
			return bad(ledger.CodeInvalidField, field+" contains control characters or invalid UTF-8")
		}
	}
	return nil
}

func checkKey(s, field string) *apiError {
	if len(s) > ledger.IdemKeyLenMax {
		return bad(ledger.CodeInvalidField, field+" is longer than "+strconv.Itoa(ledger.IdemKeyLenMax)+" bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return bad(ledger.CodeInvalidField, field+" may contain only letters, digits and . _ : -")
		}
	}
	return nil
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func accountJSON(a *account, exp int) map[string]any {
	return map[string]any{
		"account_id": a.ID.String(), "customer_id": a.CustomerID, "account_type": a.Type,
		"currency": a.Currency, "status": "active",
		"overdraft_limit":   ledger.FormatAmount(a.Overdraft, exp),
		"current_balance":   ledger.FormatAmount(a.Balance, exp),
		"available_balance": ledger.FormatAmount(a.Balance+a.Overdraft, exp),
		"version":           a.Version, "created_at": timestamp(a.CreatedAt), "updated_at": timestamp(a.UpdatedAt),
	}
}

// The answers of the hot paths (credit, debit, transfer) are appended by
// hand, as Bursar's API does, so that the comparison is not about JSON
// encoding; the rest go through encoding/json.

func appendMoneyBody(b []byte, r *result) []byte {
	exp, _ := ledger.CurrencyExponent(r.Currency)
	b = append(b, `{"transaction_id":"`...)
	b = jsonw.AppendUUID(b, r.TxID)
	b = append(b, `","status":"completed","type":"`...)
	b = append(b, r.Kind...)
	b = append(b, `","timestamp":"`...)
	b = r.At.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","account_id":"`...)
	b = jsonw.AppendUUID(b, r.Account)
	b = append(b, `","amount":"`...)
	b = ledger.AppendAmount(b, r.Amount, exp)
	b = append(b, `","currency":"`...)
	b = append(b, r.Currency...)
	b = append(b, `","current_balance":"`...)
	b = ledger.AppendAmount(b, r.BalanceAfter, exp)
	b = append(b, `","available_balance":"`...)
	b = ledger.AppendAmount(b, r.BalanceAfter+r.Overdraft, exp)
	return append(b, "\"}\n"...)
}

func appendTransferBody(b []byte, r *result) []byte {
	exp, _ := ledger.CurrencyExponent(r.Currency)
	b = append(b, `{"transaction_id":"`...)
	b = jsonw.AppendUUID(b, r.TxID)
	b = append(b, `","type":"transfer","status":"completed","source_account_id":"`...)
	b = jsonw.AppendUUID(b, r.Account)
	b = append(b, `","destination_account_id":"`...)
	b = jsonw.AppendUUID(b, r.Counterparty)
	b = append(b, `","amount":"`...)
	b = ledger.AppendAmount(b, r.Amount, exp)
	b = append(b, `","currency":"`...)
	b = append(b, r.Currency...)
	b = append(b, `","description":`...)
	b = appendString(b, r.Description)
	b = append(b, `,"reference_id":`...)
	b = appendString(b, r.ReferenceID)
	b = append(b, `,"timestamp":"`...)
	b = r.At.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}

// appendString appends s as a JSON string. checkText has refused control
// characters, so only quotes and backslashes need escaping; the rest is
// valid UTF-8 from the JSON decoder. The <, > and & that encoding/json
// would escape for HTML are legal as they are.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20: // unreachable after checkText; kept correct anyway
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// writeBody answers with body, which the response now owns.
func writeBody(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own maps and strings are marshalled
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

func (s *Server) fail(ctx *fasthttp.RequestCtx, rid string, e *apiError) {
	info := e.code.Info()
	writeJSON(ctx, info.HTTPStatus, map[string]any{"error": map[string]string{
		"code": info.Name, "message": e.msg, "request_id": rid,
	}})
}
