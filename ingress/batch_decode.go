package ingress

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/bursar/bursar/ledger"
)

// A batch body is {"items":[ITEM, …]}. The envelope is decoded as a
// whole (a refusal refuses the batch); each item is then decoded on its
// own, by the rules of the single endpoint of its type, and a refused
// item fails alone.

type batchRequest struct {
	Items []json.RawMessage `json:"items"`
}

// batchItemFields are the members an item has beyond its endpoint's body:
// its type, and the key the single endpoint takes from the Idempotency-Key
// header.
type batchItemFields struct {
	Type           string `json:"type"`
	IdempotencyKey string `json:"idempotency_key"`
}

// moneyItem and transferItem are an item's shape by type: decodeStrict
// refuses what the single endpoint refuses (unknown fields, another
// type's fields, wrong types), and accepts the two item fields.
type moneyItem struct {
	batchItemFields
	moneyRequest
}

type transferItem struct {
	batchItemFields
	transferRequest
}

// decodedItem is one item as decoded: its command, or why it is refused.
type decodedItem struct {
	cmd ledger.Command
	err *apiError
}

// decodeBatch decodes a batch body of at most itemsMax items. A non-nil
// error refuses the whole batch; otherwise every item has a command or
// its own refusal, in item order.
func decodeBatch(body []byte, itemsMax int) ([]decodedItem, *apiError) {
	var req batchRequest
	if err := decodeStrict(body, &req, batchMembers); err != nil {
		return nil, err
	}
	// decodeStrict leaves Items nil for both a missing and a null member;
	// an empty array decodes to an empty, non-nil slice.
	switch {
	case req.Items == nil:
		return nil, bad(ledger.CodeMissingField, "items is required: an array of 1 to "+strconv.Itoa(itemsMax)+" items")
	case len(req.Items) == 0 || len(req.Items) > itemsMax:
		return nil, bad(ledger.CodeInvalidField, "items holds "+strconv.Itoa(len(req.Items))+" items; a batch holds 1 to "+strconv.Itoa(itemsMax))
	}
	out := make([]decodedItem, len(req.Items))
	for i, raw := range req.Items {
		out[i].cmd, out[i].err = decodeItem(raw)
	}
	return out, nil
}

// decodeItem decodes one item into its command: the kind comes from
// "type", the rest is the single endpoint's body, and idempotency_key,
// when set, plays the Idempotency-Key header's part (same syntax; without
// it, reference_id is the key).
func decodeItem(raw []byte) (ledger.Command, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return ledger.Command{}, bad(ledger.CodeMalformedRequest, "item must be a JSON object")
	}
	kind, aerr := itemKind(raw)
	if aerr != nil {
		return ledger.Command{}, aerr
	}
	var fields *batchItemFields
	var command func(key string) (ledger.Command, *apiError)
	switch kind {
	case ledger.KindTransferDebit:
		var it transferItem
		if err := decodeStrict(raw, &it, transferItemMembers); err != nil {
			return ledger.Command{}, err
		}
		fields, command = &it.batchItemFields, it.transferRequest.command
	default:
		var it moneyItem
		if err := decodeStrict(raw, &it, moneyItemMembers); err != nil {
			return ledger.Command{}, err
		}
		fields = &it.batchItemFields
		command = func(key string) (ledger.Command, *apiError) { return it.moneyRequest.command(kind, key) }
	}
	// itemKind has refused a second "type" and a case variant ("TYPE"),
	// so both passes read the one "type" there is.
	if k, _ := parseItemType(fields.Type); k != kind {
		panic("ingress: batch item type decoded as " + strconv.Quote(fields.Type) + " after " + kind.String())
	}
	key := fields.IdempotencyKey
	if key != "" {
		if err := checkKey(key, "idempotency_key"); err != nil {
			return ledger.Command{}, err
		}
	}
	return command(key)
}

// itemKind reads an item's "type": which shape to decode the item into
// strictly. The envelope's decode has checked the item's syntax. A second
// "type", or one spelled in another case, is refused here, before the
// shape is chosen by it.
func itemKind(raw []byte) (ledger.Kind, *apiError) {
	var t []byte
	for it := (memberIter{b: raw}); it.next(); {
		switch {
		case string(it.name) == "type" && t != nil:
			return 0, bad(ledger.CodeMalformedRequest, `member "type" appears more than once`)
		case string(it.name) == "type":
			t = it.value
		case bytes.EqualFold(it.name, []byte("type")):
			return 0, bad(ledger.CodeMalformedRequest, "member "+quoteShort(it.name)+` is not spelled as documented ("type"); member names are case-sensitive`)
		}
	}
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return 0, bad(ledger.CodeMissingField, "type is required: credit, debit or transfer")
	}
	var name string
	if t[0] != '"' || json.Unmarshal(t, &name) != nil {
		return 0, bad(ledger.CodeMalformedRequest, `field "type" has the wrong type (want a string)`)
	}
	if name == "" {
		return 0, bad(ledger.CodeMissingField, "type is required: credit, debit or transfer")
	}
	kind, ok := parseItemType(name)
	if !ok {
		return 0, bad(ledger.CodeInvalidField, "type "+strconv.Quote(name)+" is not credit, debit or transfer")
	}
	return kind, nil
}

// parseItemType maps an item's type to the kind of its command.
func parseItemType(name string) (ledger.Kind, bool) {
	switch name {
	case "credit":
		return ledger.KindCredit, true
	case "debit":
		return ledger.KindDebit, true
	case "transfer":
		return ledger.KindTransferDebit, true
	}
	return 0, false
}
