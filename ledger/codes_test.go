package ledger

import "testing"

// TestCodesAreStable pins every code's number and name. Both travel in
// Kafka records, PostgreSQL rows and API answers; a change here breaks
// stored data and clients. Add new codes at the end of both lists.
func TestCodesAreStable(t *testing.T) {
	want := []string{
		"OK", "MALFORMED_REQUEST", "MISSING_FIELD", "INVALID_FIELD", "INVALID_AMOUNT",
		"UNSUPPORTED_CURRENCY", "ACCOUNT_NOT_FOUND", "TRANSACTION_NOT_FOUND", "ACCOUNT_EXISTS",
		"IDEMPOTENCY_KEY_REUSED", "INSUFFICIENT_FUNDS", "CURRENCY_MISMATCH", "ACCOUNT_CLOSED",
		"SAME_ACCOUNT", "BALANCE_LIMIT_EXCEEDED", "PAYLOAD_TOO_LARGE", "NOT_FOUND",
		"METHOD_NOT_ALLOWED", "UNSUPPORTED_MEDIA_TYPE", "RATE_LIMITED", "UNAVAILABLE", "INTERNAL",
		"HEADERS_TOO_LARGE", "REQUEST_TIMEOUT", "TOO_MANY_CONNECTIONS",
		"STORAGE_FULL", "DATABASE_UNAVAILABLE", "UNAUTHENTICATED", "FORBIDDEN",
		"USER_EXISTS", "USER_NOT_FOUND", "API_KEY_NOT_FOUND", "API_KEYS_AT_LIMIT",
	}
	all := Codes()
	if len(all) != len(want) {
		t.Fatalf("%d codes; this test knows %d", len(all), len(want))
	}
	names := map[string]bool{}
	for i, c := range all {
		if int(c) != i || c.String() != want[i] {
			t.Errorf("code %d is %q; want %q", c, c.String(), want[i])
		}
		info := c.Info()
		if names[info.Name] {
			t.Errorf("name %q used twice", info.Name)
		}
		names[info.Name] = true
		if info.HTTPStatus < 200 || info.HTTPStatus > 599 || info.Description == "" {
			t.Errorf("%s: status %d, description %q", info.Name, info.HTTPStatus, info.Description)
		}
		if (c == OK) != (info.HTTPStatus < 300) {
			t.Errorf("%s: status %d", info.Name, info.HTTPStatus)
		}
	}
	// A code from a newer release maps to INTERNAL rather than panicking.
	if Code(codeCount).String() != "INTERNAL" || Code(0xffff).Info().HTTPStatus != 500 {
		t.Error("an unknown code does not map to INTERNAL")
	}
}

func TestBusinessCodesHTTPStatus(t *testing.T) {
	for c, status := range map[Code]int{
		CodeInvalidAmount: 400, CodeAccountNotFound: 404, CodeAccountExists: 409,
		CodeIdempotencyKeyReused: 409, CodeInsufficientFunds: 422, CodeCurrencyMismatch: 422,
		CodeSameAccount: 422, CodeRateLimited: 429, CodeUnavailable: 503,
		CodeHeadersTooLarge: 431, CodeRequestTimeout: 408, CodeTooManyConnections: 429, CodeStorageFull: 503,
	} {
		if got := c.Info().HTTPStatus; got != status {
			t.Errorf("%s: HTTP %d; want %d", c, got, status)
		}
	}
}
