package bench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestErrorCode(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   string
	}{
		{422, `{"error":{"code":"INSUFFICIENT_FUNDS","message":"the balance plus overdraft limit does not cover the amount (transaction 1b4e…)","request_id":"x-1"}}` + "\n", "INSUFFICIENT_FUNDS"},
		{503, `{"error":{"code":"UNAVAILABLE","message":"retry","request_id":"x-2"}}`, "UNAVAILABLE"},
		{404, `{"error":{"request_id":"x","code":"ACCOUNT_NOT_FOUND"}}`, "ACCOUNT_NOT_FOUND"},
		{202, `{"transaction_id":"t","status":"pending","message":"accepted"}`, "HTTP_202"},
		{502, `<html>Bad Gateway</html>`, "HTTP_502"},
		{500, ``, "HTTP_500"},
		{400, `{"error":"MALFORMED_REQUEST"}`, "HTTP_400"},                        // not our shape
		{400, `{"error":{"code":"lower case"}}`, "HTTP_400"},                      // not a code
		{400, `{"error":{"code":""}}`, "HTTP_400"},                                //
		{400, `{"error":{"code":42}}`, "HTTP_400"},                                //
		{409, `{"error":{"code":"IDEMPOTENCY_KEY_REUSED"}} trailing`, "HTTP_409"}, // not one JSON value
		{200, `{"account_id":"a"}`, "HTTP_200"},                                   // a 200 where 201 was wanted
	} {
		if got := errorCode(c.status, []byte(c.body)); got != c.want {
			t.Errorf("errorCode(%d, %q) = %q, want %q", c.status, c.body, got, c.want)
		}
	}
}

func FuzzErrorCode(f *testing.F) {
	f.Add(422, []byte(`{"error":{"code":"INSUFFICIENT_FUNDS","message":"m","request_id":"r"}}`))
	f.Add(202, []byte(`{"transaction_id":"t","status":"pending"}`))
	f.Add(502, []byte(`<html></html>`))
	f.Add(0, []byte{})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		code := errorCode(status, body)
		if !plausibleCode(code) && !strings.HasPrefix(code, "HTTP_") {
			t.Fatalf("errorCode returned %q", code)
		}
	})
}

func TestAppendMoneyBody(t *testing.T) {
	const id = "0b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d"
	for _, c := range []struct {
		amount int64
		exp    int
		cur    string
		want   string
	}{
		{1234, 2, "USD", "12.34"},
		{100, 2, "USD", "1.00"},
		{5, 2, "EUR", "0.05"},
		{7, 0, "JPY", "7"},
		{1500, 3, "BHD", "1.500"},
	} {
		b := appendMoneyBody([]byte("junk"), id, c.amount, c.exp, c.cur, []byte("b-run1-a-3f"))
		var req struct {
			AccountID   string `json:"account_id"`
			Amount      string `json:"amount"`
			Currency    string `json:"currency"`
			Description string `json:"description"`
			ReferenceID string `json:"reference_id"`
		}
		if err := json.Unmarshal(b[len("junk"):], &req); err != nil {
			t.Fatalf("%s: not JSON: %v", b, err)
		}
		if req.AccountID != id || req.Amount != c.want || req.Currency != c.cur || req.ReferenceID != "b-run1-a-3f" || req.Description == "" {
			t.Errorf("amount %d exp %d: got %+v", c.amount, c.exp, req)
		}
	}
}

func TestAppendOpenBody(t *testing.T) {
	id := uuid.MustParse("0b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d")
	b := appendOpenBody(nil, id, []byte("bench-r1-open-7"), "USD")
	var req map[string]any
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := map[string]any{"account_id": id.String(), "customer_id": "bench-r1-open-7", "account_type": "checking", "currency": "USD"}
	if len(req) != len(want) {
		t.Fatalf("got %v, want %v", req, want)
	}
	for k, v := range want {
		if req[k] != v {
			t.Errorf("%s = %v, want %v", k, req[k], v)
		}
	}
}

func TestAppendTransferBody(t *testing.T) {
	const src, dst = "0b8e6f6a-4c1e-4d5a-9a44-7d1f1c2b3a4d", "9f3a2e1d-0000-4000-8000-000000000001"
	b := appendTransferBody([]byte("junk"), src, dst, 1234, 2, "EUR", []byte("b-r-1-2"))
	var req map[string]any
	if err := json.Unmarshal(b[len("junk"):], &req); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := map[string]any{"source_account_id": src, "destination_account_id": dst, "amount": "12.34",
		"currency": "EUR", "description": "bursar bench", "reference_id": "b-r-1-2"}
	if len(req) != len(want) {
		t.Fatalf("got %v, want %v", req, want)
	}
	for k, v := range want {
		if req[k] != v {
			t.Errorf("%s = %v, want %v", k, req[k], v)
		}
	}
}

func TestAppendUUID(t *testing.T) {
	for range 100 {
		id := uuid.New()
		if got := string(appendUUID([]byte("x"), id)); got != "x"+id.String() {
			t.Fatalf("appendUUID = %s, want x%s", got, id)
		}
	}
}

func TestSetupRetriable(t *testing.T) {
	for code, want := range map[string]bool{
		codeTransport: true, "UNAVAILABLE": true, "RATE_LIMITED": true, "INTERNAL": true,
		"HTTP_202": true, "HTTP_502": true, "HTTP_504": true,
		"ACCOUNT_EXISTS": false, "IDEMPOTENCY_KEY_REUSED": false, "MALFORMED_REQUEST": false,
		"INSUFFICIENT_FUNDS": false, "HTTP_404": false,
	} {
		if got := setupRetriable(code); got != want {
			t.Errorf("setupRetriable(%s) = %v, want %v", code, got, want)
		}
	}
}
