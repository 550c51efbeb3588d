package ingress

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/bursar/bursar/ledger"
)

// encoding/json matches member names without regard to case ("AMOUNT" is
// amount, and so, through Unicode folding, is "ſource_account_id" source)
// and lets the last of two duplicates win. A proxy, a WAF or an audit log
// reading the same body by other rules would then see another request
// than the one applied. members.check closes that gap after the decode: a
// body's members must be spelled exactly as documented, each at most once.
// It reads the bytes the decoder has already checked, allocates nothing
// unless a name holds an escape, and costs one pass over the body
// (skipString and skipValue, in batch.go).

// members is the set of member names of one request shape: the json tags
// of its struct, embedded structs included, as encoding/json sees them.
type members struct {
	names []string
}

// membersMax bounds a shape's members: check records the ones it has seen
// in one uint64.
const membersMax = 64

// membersOf returns the members of the struct v. It panics on a shape
// check could not hold (a broken invariant of this package, found at init).
func membersOf(v any) *members {
	m := &members{}
	collectMembers(reflect.TypeOf(v), &m.names)
	if len(m.names) > membersMax {
		panic("ingress: " + reflect.TypeOf(v).String() + " has more than " + strconv.Itoa(membersMax) + " members")
	}
	for i, a := range m.names {
		for _, b := range m.names[:i] {
			if strings.EqualFold(a, b) {
				panic("ingress: " + reflect.TypeOf(v).String() + " has members " + strconv.Quote(a) + " and " + strconv.Quote(b))
			}
		}
	}
	return m
}

func collectMembers(t reflect.Type, names *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			collectMembers(f.Type, names)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		*names = append(*names, name)
	}
}

// The request shapes' members.
var (
	openMembers         = membersOf(openRequest{})
	moneyMembers        = membersOf(moneyRequest{})
	transferMembers     = membersOf(transferRequest{})
	batchMembers        = membersOf(batchRequest{})
	moneyItemMembers    = membersOf(moneyItem{})
	transferItemMembers = membersOf(transferItem{})
)

// check refuses a member spelled otherwise than documented, or present
// twice, in body: one JSON object that decodeStrict has decoded, so its
// syntax is known good and only its member names are read here.
func (m *members) check(body []byte) *apiError {
	var seen uint64
	for it := (memberIter{b: body}); it.next(); {
		k := m.index(it.name)
		switch {
		case k < 0:
			return m.misspelled(it.name)
		case seen&(1<<k) != 0:
			return bad(ledger.CodeMalformedRequest, "member "+strconv.Quote(m.names[k])+" appears more than once")
		}
		seen |= 1 << k
	}
	return nil
}

// memberIter walks the members of b, one JSON object known to be valid
// (decoded, or part of a decoded body): name is each member's name,
// unescaped, and value its raw value.
type memberIter struct {
	b           []byte
	i           int // where the next member (or the closing brace) starts; 0 before the first
	name, value []byte
}

func (it *memberIter) next() bool {
	b, i := it.b, it.i
	if i == 0 {
		i = skipSpace(b, 0) + 1 // past '{'
	}
	i = skipSpace(b, i)
	if b[i] == '}' {
		return false
	}
	if b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	end := skipString(b, i)
	it.name = b[i+1 : end-1]
	if bytes.IndexByte(it.name, '\\') >= 0 {
		// An escaped name ("\u0061mount") is the name it spells, as for
		// any other reader; only this rare case allocates.
		var s string
		if err := json.Unmarshal(b[i:end], &s); err != nil {
			panic("ingress: member name of a decoded body does not unquote: " + err.Error())
		}
		it.name = []byte(s)
	}
	i = skipSpace(b, skipSpace(b, end)+1) // past ':'
	end = skipValue(b, i)
	it.value, it.i = b[i:end], end
	return true
}

func (m *members) index(name []byte) int {
	for k, n := range m.names {
		if string(name) == n {
			return k
		}
	}
	return -1
}

// misspelled refuses a name that is not one of m's: a case variant of one
// (all encoding/json lets through), else an unknown member.
func (m *members) misspelled(name []byte) *apiError {
	q := quoteShort(name)
	for _, n := range m.names {
		if bytes.EqualFold(name, []byte(n)) {
			return bad(ledger.CodeMalformedRequest, "member "+q+" is not spelled as documented ("+strconv.Quote(n)+"); member names are case-sensitive")
		}
	}
	return bad(ledger.CodeMalformedRequest, "unknown field "+q)
}

// quoteShort quotes a client's name or text for a message, cut to a
// length a message can hold.
func quoteShort(b []byte) string {
	const quotedLenMax = 64
	if len(b) > quotedLenMax {
		return strconv.Quote(string(b[:quotedLenMax])) + "…"
	}
	return strconv.Quote(string(b))
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
