package ledger

// Code is a stable error code. Its numeric value travels in Kafka records and
// PostgreSQL rows, its name on the wire. Codes are never renumbered or reused:
// add new ones at the end of the table.
type Code uint16

const (
	OK Code = iota
	CodeMalformedRequest
	CodeMissingField
	CodeInvalidField
	CodeInvalidAmount
	CodeUnsupportedCurrency
	CodeAccountNotFound
	CodeTransactionNotFound
	CodeAccountExists
	CodeIdempotencyKeyReused
	CodeInsufficientFunds
	CodeCurrencyMismatch
	CodeAccountClosed
	CodeSameAccount
	CodeBalanceLimitExceeded
	CodePayloadTooLarge
	CodeRouteNotFound
	CodeMethodNotAllowed
	CodeUnsupportedMediaType
	CodeRateLimited
	CodeUnavailable
	CodeInternal
	CodeHeadersTooLarge
	CodeRequestTimeout
	CodeTooManyConnections
	CodeStorageFull
	CodeDatabaseUnavailable
	CodeUnauthenticated
	CodeForbidden
	CodeUserExists
	CodeUserNotFound
	CodeAPIKeyNotFound
	CodeAPIKeyLimit
	codeCount
)

// CodeInfo describes one code: its wire name, HTTP status and meaning.
type CodeInfo struct {
	Name        string
	HTTPStatus  int
	Description string
}

// codes is the one table every wire error comes from.
var codes = [codeCount]CodeInfo{
	OK:                       {"OK", 200, "success"},
	CodeMalformedRequest:     {"MALFORMED_REQUEST", 400, "the body is not valid JSON of the expected shape (syntax, unknown field, a member spelled in another case or given twice, wrong type)"},
	CodeMissingField:         {"MISSING_FIELD", 400, "a required field is absent or empty"},
	CodeInvalidField:         {"INVALID_FIELD", 400, "a field has an invalid value (for example an ID that is not a canonical lower-case UUID, or text with a control or invisible character)"},
	CodeInvalidAmount:        {"INVALID_AMOUNT", 400, "the amount is zero, negative, not a canonical decimal (a leading zero, more decimals than the currency allows), or too large"},
	CodeUnsupportedCurrency:  {"UNSUPPORTED_CURRENCY", 400, "the currency is not an ISO 4217 code this service supports"},
	CodeAccountNotFound:      {"ACCOUNT_NOT_FOUND", 404, "no account has this ID"},
	CodeTransactionNotFound:  {"TRANSACTION_NOT_FOUND", 404, "no transaction has this ID (history may lag writes by the flush interval)"},
	CodeAccountExists:        {"ACCOUNT_EXISTS", 409, "an account with this ID already exists"},
	CodeIdempotencyKeyReused: {"IDEMPOTENCY_KEY_REUSED", 409, "the idempotency key was already used with a different request"},
	CodeInsufficientFunds:    {"INSUFFICIENT_FUNDS", 422, "the balance plus overdraft limit does not cover the amount"},
	CodeCurrencyMismatch:     {"CURRENCY_MISMATCH", 422, "the currency differs from the account's currency"},
	CodeAccountClosed:        {"ACCOUNT_CLOSED", 422, "the account is closed or frozen"},
	CodeSameAccount:          {"SAME_ACCOUNT", 422, "source and destination are the same account"},
	CodeBalanceLimitExceeded: {"BALANCE_LIMIT_EXCEEDED", 422, "the balance would exceed the largest representable balance"},
	CodePayloadTooLarge:      {"PAYLOAD_TOO_LARGE", 413, "the request body is larger than the limit"},
	CodeRouteNotFound:        {"NOT_FOUND", 404, "no such route"},
	CodeMethodNotAllowed:     {"METHOD_NOT_ALLOWED", 405, "the route does not accept this method"},
	CodeUnsupportedMediaType: {"UNSUPPORTED_MEDIA_TYPE", 415, "the body must be application/json"},
	CodeRateLimited:          {"RATE_LIMITED", 429, "too many requests; retry later"},
	CodeUnavailable:          {"UNAVAILABLE", 503, "the service cannot take this request now; retry with the same idempotency key"},
	CodeInternal:             {"INTERNAL", 500, "an unexpected error; retry with the same idempotency key"},
	CodeHeadersTooLarge:      {"HEADERS_TOO_LARGE", 431, "the request line and header fields are larger than the limit"},
	CodeRequestTimeout:       {"REQUEST_TIMEOUT", 408, "the request's header or body was not received in time; the connection is closed"},
	CodeTooManyConnections:   {"TOO_MANY_CONNECTIONS", 429, "this address holds the most connections one address may; reuse connections or close some"},
	CodeStorageFull:          {"STORAGE_FULL", 503, "the node's disk is full: writes are refused until space returns (reads still work); retry with the same idempotency key"},
	CodeUnauthenticated:      {"UNAUTHENTICATED", 401, "the request carries no valid credential: send the header Authorization: Bearer and an API key (bsk_…) or a user token from POST /api/v1/auth/token"},
	CodeForbidden:            {"FORBIDDEN", 403, "the credential is valid but lacks the scope this route needs"},
	CodeDatabaseUnavailable:  {"DATABASE_UNAVAILABLE", 503, "the answer needs PostgreSQL, which cannot be reached now; nothing was changed: retry after Retry-After with the same idempotency key"},
	CodeUserExists:           {"USER_EXISTS", 409, "a user with this username already exists"},
	CodeUserNotFound:         {"USER_NOT_FOUND", 404, "no user has this username"},
	CodeAPIKeyNotFound:       {"API_KEY_NOT_FOUND", 404, "no API key has this key ID"},
	CodeAPIKeyLimit:          {"API_KEYS_AT_LIMIT", 409, "the database holds as many live API keys as it may (10,000): revoke some first"},
}

// Info returns the table row of c. An unknown code maps to INTERNAL.
func (c Code) Info() CodeInfo {
	if c >= codeCount {
		return codes[CodeInternal]
	}
	return codes[c]
}

func (c Code) String() string { return c.Info().Name }

// Codes returns every code in table order, for documentation and tests.
func Codes() []Code {
	out := make([]Code, 0, codeCount)
	for c := Code(0); c < codeCount; c++ {
		out = append(out, c)
	}
	return out
}

var codesByName = func() map[string]Code {
	m := make(map[string]Code, codeCount)
	for c := Code(0); c < codeCount; c++ {
		m[codes[c].Name] = c
	}
	return m
}()

// ParseCode returns the code with the given wire name; ok is false for an
// unknown name.
func ParseCode(name string) (Code, bool) {
	c, ok := codesByName[name]
	return c, ok
}
