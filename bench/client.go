package bench

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/bursar/bursar/jsonw"
	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// codeTransport is the error code of a request that got no HTTP answer
// (connect, write or read failed or timed out).
const codeTransport = "TRANSPORT"

// responseBodyMax bounds what the client reads of an answer; the API's
// answers are a few hundred bytes.
const responseBodyMax = 1 << 20

// batchResponseBodyMax bounds a batch answer: one result of a few
// hundred bytes per item, BatchSizeMax items.
const batchResponseBodyMax = 8 << 20

// codeBadBatchAnswer is the error code of each item of a 200 batch answer
// that does not have one result per item, in order.
const codeBadBatchAnswer = "BAD_BATCH_ANSWER"

// paths of the API, relative to the target.
const (
	pathOpen     = "/api/v1/accounts"
	pathCredit   = "/api/v1/transactions/credit"
	pathDebit    = "/api/v1/transactions/debit"
	pathTransfer = "/api/v1/transactions/transfer"
	pathBatch    = "/api/v1/transactions/batch"
	pathAccounts = "/api/v1/accounts/" // + id + "/balance"
	pathReadyz   = "/readyz"
)

func newHTTPClient(cfg *Config) *fasthttp.Client {
	bodyMax := responseBodyMax
	if cfg.Workload == WorkloadBatch {
		bodyMax = batchResponseBodyMax
	}
	return &fasthttp.Client{
		Name: "bursar-bench",
		// One connection per worker; a worker has one request in flight.
		MaxConnsPerHost:     cfg.Concurrency,
		MaxConnWaitTimeout:  cfg.RequestTimeout,
		ReadTimeout:         cfg.RequestTimeout,
		WriteTimeout:        cfg.RequestTimeout,
		MaxIdleConnDuration: time.Minute,
		MaxResponseBodySize: bodyMax,
		// A hidden retry would hide a failure and skew latency; the bench
		// counts every attempt it makes.
		MaxIdemponentCallAttempts: 1,
		DisablePathNormalizing:    true,
	}
}

// exchange is one goroutine's reusable request and response: a worker
// builds every request into the same buffers, so the hot path does not
// allocate.
type exchange struct {
	cl   *fasthttp.Client
	base string
	auth []byte // Authorization value, when the target needs an API key
	req  *fasthttp.Request
	resp *fasthttp.Response
	url  []byte
	body []byte
}

func newExchange(cl *fasthttp.Client, base, apiKey string) *exchange {
	var auth []byte
	if apiKey != "" {
		auth = []byte("Bearer " + apiKey)
	}
	return &exchange{
		cl: cl, base: base, auth: auth,
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		url: make([]byte, 0, 128), body: make([]byte, 0, 256),
	}
}

func (x *exchange) release() {
	fasthttp.ReleaseRequest(x.req)
	fasthttp.ReleaseResponse(x.resp)
}

// do sends x.url with x.body (POST when the body is not empty, else GET)
// and returns "" when the status is want, else the error code of the
// answer (see errorCode) or codeTransport with the transport error.
func (x *exchange) do(idemKey []byte, want int) (string, error) {
	req := x.req
	req.Reset()
	req.SetRequestURIBytes(x.url)
	if len(x.body) > 0 {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(x.body)
	} else {
		req.Header.SetMethod(fasthttp.MethodGet)
	}
	if len(idemKey) > 0 {
		req.Header.SetBytesV("Idempotency-Key", idemKey)
	}
	if x.auth != nil {
		req.Header.SetBytesV("Authorization", x.auth)
	}
	if err := x.cl.Do(req, x.resp); err != nil {
		return codeTransport, err
	}
	status := x.resp.StatusCode()
	if status == want {
		return "", nil
	}
	return errorCode(status, x.resp.Body()), nil
}

// errorCode returns the code of an API error answer
// ({"error":{"code":"INSUFFICIENT_FUNDS",...}}), or HTTP_<status> when the
// body carries none (a 202 pending answer, a proxy's error page).
func errorCode(status int, body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && plausibleCode(e.Error.Code) {
		return e.Error.Code
	}
	return "HTTP_" + strconv.Itoa(status)
}

// plausibleCode accepts the shape of the API's codes (upper-case words
// joined by _, at most 64 bytes) so that garbage never becomes a map key.
func plausibleCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// appendMoneyBody appends a credit or debit request body. accountID is a
// canonical UUID, currency a checked ISO code and ref a key of
// [A-Za-z0-9._:-]: nothing needs JSON escaping.
func appendMoneyBody(dst []byte, accountID string, amount int64, exp int, currency string, ref []byte) []byte {
	dst = append(dst, `{"account_id":"`...)
	dst = append(dst, accountID...)
	return appendMoneyTail(dst, amount, exp, currency, ref)
}

// appendTransferBody appends a transfer request body; the IDs are
// canonical UUIDs and the rest as for appendMoneyBody.
func appendTransferBody(dst []byte, source, destination string, amount int64, exp int, currency string, ref []byte) []byte {
	dst = append(dst, `{"source_account_id":"`...)
	dst = append(dst, source...)
	dst = append(dst, `","destination_account_id":"`...)
	dst = append(dst, destination...)
	return appendMoneyTail(dst, amount, exp, currency, ref)
}

// appendMoneyTail appends the members after the account IDs that credit,
// debit and transfer bodies share, and closes the object.
func appendMoneyTail(dst []byte, amount int64, exp int, currency string, ref []byte) []byte {
	dst = append(dst, `","amount":"`...)
	dst = ledger.AppendAmount(dst, amount, exp)
	dst = append(dst, `","currency":"`...)
	dst = append(dst, currency...)
	dst = append(dst, `","description":"bursar bench","reference_id":"`...)
	dst = append(dst, ref...)
	return append(dst, `"}`...)
}

// appendOpenBody appends an open-account request body for the account
// with the given canonical UUID; customer is a key of [A-Za-z0-9._:-].
func appendOpenBody(dst []byte, id uuid.UUID, customer []byte, currency string) []byte {
	dst = append(dst, `{"account_id":"`...)
	dst = appendUUID(dst, id)
	dst = append(dst, `","customer_id":"`...)
	dst = append(dst, customer...)
	dst = append(dst, `","account_type":"checking","currency":"`...)
	dst = append(dst, currency...)
	return append(dst, `"}`...)
}

// appendUUID appends the canonical text of id without allocating.
func appendUUID(dst []byte, id uuid.UUID) []byte { return jsonw.AppendUUID(dst, id) }

// appendBatchBody appends a batch request body of transfers of amount
// between the given accounts, item i keyed by key(i). The IDs are
// canonical UUIDs, currency a checked ISO code and the keys of
// [A-Za-z0-9._:-]: nothing needs JSON escaping.
func appendBatchBody(dst []byte, items []batchItem, accounts []string, amount int64, exp int, currency string, key func(i int) []byte) []byte {
	dst = append(dst, `{"items":[`...)
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"type":"transfer","source_account_id":"`...)
		dst = append(dst, accounts[it.source]...)
		dst = append(dst, `","destination_account_id":"`...)
		dst = append(dst, accounts[it.destination]...)
		dst = append(dst, `","amount":"`...)
		dst = ledger.AppendAmount(dst, amount, exp)
		dst = append(dst, `","currency":"`...)
		dst = append(dst, currency...)
		dst = append(dst, `","idempotency_key":"`...)
		dst = append(dst, key(i)...)
		dst = append(dst, `"}`...)
	}
	return append(dst, `]}`...)
}

// batchAnswer is a 200 answer to a batch: one result per item, in order.
type batchAnswer struct {
	Results []struct {
		Index  int             `json:"index"`
		Status int             `json:"status"`
		Error  json.RawMessage `json:"error"`
	} `json:"results"`
}

// parseBatchAnswer reads a 200 batch answer of n items: it returns how
// many succeeded (status 201) and appends to codes the error code of each
// other item (its error's code, else HTTP_<status>: HTTP_202 for a
// pending transfer). An answer without exactly one result per item, in
// order, makes every item an error of codeBadBatchAnswer: which of them
// were done cannot be told.
func parseBatchAnswer(body []byte, n int, codes []string) (int, []string) {
	var a batchAnswer
	if err := json.Unmarshal(body, &a); err != nil || len(a.Results) != n {
		return 0, appendN(codes, codeBadBatchAnswer, n)
	}
	for i, r := range a.Results {
		if r.Index != i {
			return 0, appendN(codes, codeBadBatchAnswer, n)
		}
	}
	ok := 0
	for _, r := range a.Results {
		if r.Status == 201 {
			ok++
			continue
		}
		// errorCode reads {"error":{"code":…}}: wrap the item's error so.
		code := "HTTP_" + strconv.Itoa(r.Status)
		if len(r.Error) > 0 {
			var e struct {
				Code string `json:"code"`
			}
			if json.Unmarshal(r.Error, &e) == nil && plausibleCode(e.Code) {
				code = e.Code
			}
		}
		codes = append(codes, code)
	}
	return ok, codes
}

func appendN(dst []string, s string, n int) []string {
	for range n {
		dst = append(dst, s)
	}
	return dst
}
