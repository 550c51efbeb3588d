package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bursar/bursar/ledger"
	"github.com/google/uuid"
)

// apiError is a refusal with a stable code and a message for humans.
type apiError struct {
	code ledger.Code
	msg  string
}

func (e *apiError) Error() string { return e.code.String() + ": " + e.msg }

func bad(code ledger.Code, msg string) *apiError { return &apiError{code: code, msg: msg} }

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields, wrong types and trailing data, and then (members.check) names
// not spelled exactly as m documents them and names given twice.
func decodeStrict(body []byte, v any, m *members) *apiError {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return bad(ledger.CodeMalformedRequest, "request body is empty; expected a JSON object")
	}
	// json.Decoder decodes a top-level null into a struct as a no-op, which
	// would turn "null" into a missing-field error; refuse every non-object
	// (null, arrays, strings, numbers) the same way, up front.
	if trimmed[0] != '{' {
		return bad(ledger.CodeMalformedRequest, "body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &ute):
			return bad(ledger.CodeMalformedRequest, "field "+strconv.Quote(ute.Field)+" has the wrong type (got "+ute.Value+")")
		case errors.As(err, &se):
			return bad(ledger.CodeMalformedRequest, "body is not valid JSON: "+se.Error())
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return bad(ledger.CodeMalformedRequest, strings.TrimPrefix(err.Error(), "json: "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return bad(ledger.CodeMalformedRequest, "body is truncated JSON")
		}
		return bad(ledger.CodeMalformedRequest, "body is not a valid request: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad(ledger.CodeMalformedRequest, "body has data after the JSON object")
	}
	return m.check(body)
}

// amountText returns the decimal text of a JSON amount given as a string
// ("12.34") or a number literal (12.34), without going through float64.
func amountText(raw json.RawMessage, field string) ([]byte, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, bad(ledger.CodeMissingField, field+" is required")
	}
	switch raw[0] {
	case '"':
		// The decoder has checked the string: without an escape its text
		// is the bytes between the quotes, and taking them allocates
		// nothing. (Bytes that are not ASCII digits fail ParseAmount
		// either way.)
		if text := raw[1 : len(raw)-1]; bytes.IndexByte(text, '\\') < 0 {
			return text, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, bad(ledger.CodeInvalidAmount, field+" is not a valid string")
		}
		return []byte(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return raw, nil
	}
	return nil, bad(ledger.CodeInvalidAmount, field+" must be a decimal string or number")
}

func parseAmount(raw json.RawMessage, field string, exp int) (int64, *apiError) {
	text, aerr := amountText(raw, field)
	if aerr != nil {
		return 0, aerr
	}
	v, err := ledger.ParseAmount(text, exp)
	if err != nil {
		return 0, bad(ledger.CodeInvalidAmount, field+": "+err.Error())
	}
	return v, nil
}

func parseCurrency(s string) (string, int, *apiError) {
	if s == "" {
		return "", 0, bad(ledger.CodeMissingField, "currency is required")
	}
	exp, ok := ledger.CurrencyExponent(s)
	if !ok {
		return "", 0, bad(ledger.CodeUnsupportedCurrency, "currency "+strconv.Quote(s)+" is not a supported ISO 4217 code (use upper case, e.g. USD)")
	}
	return s, exp, nil
}

func parseID(s, field string) (uuid.UUID, *apiError) {
	if s == "" {
		return uuid.Nil, bad(ledger.CodeMissingField, field+" is required")
	}
	// Only the canonical form (RFC 9562's 8-4-4-4-12 hex digits, lower
	// case): uuid.Parse also takes URNs, braces, no hyphens and upper case.
	// Two spellings of one account would be two accounts to a log or a
	// proxy that matches IDs as text.
	if len(s) != 36 {
		return uuid.Nil, bad(ledger.CodeInvalidField, field+" must be a UUID in canonical form: 36 characters, lower-case hex and hyphens, like 3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'F' {
			return uuid.Nil, bad(ledger.CodeInvalidField, field+" must be a UUID in canonical form: lower-case hex, like 3f2b8c1e-9a4d-4c6e-8f10-2a3b4c5d6e7f")
		}
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, bad(ledger.CodeInvalidField, field+" must be a non-nil UUID")
	}
	return id, nil
}

// checkText enforces a length limit and refuses characters that would
// let a text read otherwise than it is stored: control characters, the
// bidirectional controls and the invisible ones (textCharOK).
func checkText(s, field string, max int, required bool) *apiError {
	if s == "" && required {
		return bad(ledger.CodeMissingField, field+" is required")
	}
	if len(s) > max {
		return bad(ledger.CodeInvalidField, field+" is longer than "+strconv.Itoa(max)+" bytes")
	}
	for i := 0; i < len(s); {
		// ASCII, the common case, without decoding runes.
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return bad(ledger.CodeInvalidField, field+" contains the control character "+runeName(rune(c)))
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !textCharOK(r) {
			if r == utf8.RuneError {
				return bad(ledger.CodeInvalidField, field+" contains invalid UTF-8 or U+FFFD")
			}
			return bad(ledger.CodeInvalidField, field+" contains the control or invisible character "+runeName(r))
		}
		i += n
	}
	return nil
}

// textCharOK reports whether a non-ASCII rune may appear in free text.
// Refused: C1 controls (U+0080–U+009F, e.g. the CSI terminal escape);
// the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E,
// U+2066–U+2069), with which a text can display in another order than it
// is stored; the zero-width and other invisible format characters
// (U+200B–U+200D, U+2060–U+206F, U+FEFF), with which two texts that look
// alike differ; the line and paragraph separators (U+2028, U+2029), line
// breaks as \n is; and U+FFFD, which is what the JSON decoder makes of
// invalid UTF-8.
func textCharOK(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f,
		r == 0x061c,
		r >= 0x200b && r <= 0x200f,
		r >= 0x2028 && r <= 0x202e,
		r >= 0x2060 && r <= 0x206f,
		r == 0xfeff,
		r == utf8.RuneError:
		return false
	}
	return true
}

// runeName names a rune for a message: U+202E.
func runeName(r rune) string {
	h := strings.ToUpper(strconv.FormatInt(int64(r), 16))
	return "U+" + strings.Repeat("0", max(0, 4-len(h))) + h
}

// checkKey validates an idempotency key: 1–128 of [A-Za-z0-9._:-]. The
// ledger reserves '#' for transfer legs.
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

type openRequest struct {
	CustomerID     string          `json:"customer_id"`
	AccountType    string          `json:"account_type"`
	Currency       string          `json:"currency"`
	OverdraftLimit json.RawMessage `json:"overdraft_limit"`
	AccountID      *string         `json:"account_id"`
	// OwnerID names the customer user who owns the account (a teller or
	// a service opening it for them); a customer's own open takes its
	// owner from its token.
	OwnerID *string `json:"owner_id"`
}

// accountTypes are the types an account may be opened with (the README
// lists them). Only the ingress checks: the core applies the type of any
// open record, as a log written before this list must replay as it did.
var accountTypes = [...]string{"checking", "savings", "business", "merchant"}

func checkAccountType(s string) *apiError {
	if s == "" {
		return bad(ledger.CodeMissingField, "account_type is required")
	}
	for _, t := range accountTypes {
		if s == t {
			return nil
		}
	}
	return bad(ledger.CodeInvalidField, "account_type "+quoteShort([]byte(s))+" is not one of "+strings.Join(accountTypes[:], ", "))
}

// openNamespace derives account IDs from idempotency keys, so a retried
// open without account_id names the same account.
var openNamespace = uuid.MustParse("6f1c1f7e-2d1a-4a8e-9d1b-6b7572736172")

// decodeOpen turns an open-account body into a command. idemKey is the
// Idempotency-Key header ("" if absent).
func decodeOpen(body []byte, idemKey string) (ledger.Command, *apiError) {
	return decodeOpenAs(body, idemKey, "")
}

// decodeOpenAs decodes an open for the customer user asOwner ("" for any
// other caller): the account is that user's, and an account ID derived
// from the idempotency key is derived within the user's own namespace, so
// that two customers' keys never name one account.
func decodeOpenAs(body []byte, idemKey, asOwner string) (ledger.Command, *apiError) {
	var req openRequest
	var c ledger.Command
	if err := decodeStrict(body, &req, openMembers); err != nil {
		return c, err
	}
	if err := checkText(req.CustomerID, "customer_id", ledger.CustomerIDLenMax, true); err != nil {
		return c, err
	}
	if err := checkAccountType(req.AccountType); err != nil {
		return c, err
	}
	cur, exp, aerr := parseCurrency(req.Currency)
	if aerr != nil {
		return c, aerr
	}
	var overdraft int64
	if len(req.OverdraftLimit) > 0 && !bytes.Equal(bytes.TrimSpace(req.OverdraftLimit), []byte("null")) {
		text, aerr := amountText(req.OverdraftLimit, "overdraft_limit")
		if aerr != nil {
			return c, aerr
		}
		// ParseAmount validates the syntax first, so a zero is accepted only
		// when well formed: "0.00" is, "0." and ".0" are not.
		v, err := ledger.ParseAmount(text, exp)
		switch {
		case err == nil:
			overdraft = v
		case errors.Is(err, ledger.ErrAmountNotPos) && isZero(text):
			// A zero limit is the default.
		default:
			return c, bad(ledger.CodeInvalidAmount, "overdraft_limit: "+err.Error())
		}
	}
	var owner string
	if req.OwnerID != nil {
		id, aerr := parseID(*req.OwnerID, "owner_id")
		if aerr != nil {
			return c, aerr
		}
		owner = id.String()
	}
	if asOwner != "" {
		if owner != "" && owner != asOwner {
			return c, bad(ledger.CodeForbidden, "a customer opens accounts for itself only: leave owner_id out, or give your own user ID")
		}
		if req.AccountID != nil {
			// ACCOUNT_EXISTS for an ID taken would tell a customer which
			// accounts exist.
			return c, bad(ledger.CodeForbidden, "a customer does not choose its account's ID: leave account_id out (with an Idempotency-Key, a retry names the same account)")
		}
		owner = asOwner
	}
	switch {
	case req.AccountID != nil:
		id, aerr := parseID(*req.AccountID, "account_id")
		if aerr != nil {
			return c, aerr
		}
		c.AccountID = id
	case idemKey != "" && asOwner != "":
		c.AccountID = uuid.NewSHA1(openNamespace, []byte("owner:"+asOwner+"\x00"+idemKey))
	case idemKey != "":
		c.AccountID = uuid.NewSHA1(openNamespace, []byte(idemKey))
	default:
		c.AccountID = uuid.New()
	}
	c.Owner = owner
	c.Kind = ledger.KindOpen
	c.CustomerID, c.AccountType, c.Currency, c.OverdraftLimit = req.CustomerID, req.AccountType, cur, overdraft
	c.IdemKey = idemKey
	return c, nil
}

// isZero reports whether a decimal text is a zero ("0", "0.00").
func isZero(text []byte) bool {
	digits := 0
	for _, b := range text {
		switch {
		case b == '0':
			digits++
		case b == '.':
		default:
			return false
		}
	}
	return digits > 0
}

// moneyFields are the fields every money request shares.
type moneyFields struct {
	Amount      json.RawMessage `json:"amount"`
	Currency    string          `json:"currency"`
	Description string          `json:"description"`
	ReferenceID string          `json:"reference_id"`
}

// validate checks the shared fields and returns the amount in minor units,
// the currency and the idempotency key: the Idempotency-Key header wins over
// reference_id.
func (f *moneyFields) validate(idemKey string) (amount int64, currency, key string, aerr *apiError) {
	cur, exp, aerr := parseCurrency(f.Currency)
	if aerr != nil {
		return 0, "", "", aerr
	}
	amount, aerr = parseAmount(f.Amount, "amount", exp)
	if aerr != nil {
		return 0, "", "", aerr
	}
	if err := checkText(f.Description, "description", ledger.DescriptionLenMax, false); err != nil {
		return 0, "", "", err
	}
	if err := checkKey(f.ReferenceID, "reference_id"); err != nil {
		return 0, "", "", err
	}
	if idemKey == "" {
		idemKey = f.ReferenceID
	}
	return amount, cur, idemKey, nil
}

type moneyRequest struct {
	AccountID string `json:"account_id"`
	moneyFields
}

// decodeMoney turns a credit or debit body into a command.
func decodeMoney(kind ledger.Kind, body []byte, idemKey string) (ledger.Command, *apiError) {
	var req moneyRequest
	if err := decodeStrict(body, &req, moneyMembers); err != nil {
		return ledger.Command{}, err
	}
	return req.command(kind, idemKey)
}

// command validates a decoded credit or debit request (a body, or an item
// of a batch) into its command.
func (req *moneyRequest) command(kind ledger.Kind, idemKey string) (ledger.Command, *apiError) {
	var c ledger.Command
	id, aerr := parseID(req.AccountID, "account_id")
	if aerr != nil {
		return c, aerr
	}
	amount, cur, key, aerr := req.moneyFields.validate(idemKey)
	if aerr != nil {
		return c, aerr
	}
	c = ledger.Command{
		Kind: kind, AccountID: id, Amount: amount, Currency: cur,
		Description: req.Description, ReferenceID: req.ReferenceID, IdemKey: key,
	}
	return c, nil
}
