// Package jsonw appends JSON to a byte slice without reflection, for the
// bodies on the write path (API responses, events) where encoding/json's
// reflection and maps cost a visible share of the CPU.
//
// Strings are escaped exactly as encoding/json's Marshal escapes them
// (HTML-safe, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped), so an
// object written here is byte for byte what json.Marshal makes of a struct
// with the same fields in the same order. The tests hold it to that.
package jsonw

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Writer appends one JSON value to B. Object members are written by the
// methods that take a key; Open and Close (OpenArray and CloseArray)
// bracket an object (array), nested as deep as the caller likes.
//
// The separator is worked out from the last byte of B: after '{', '[' or
// ':' the next member or element starts at once, after anything else a
// comma comes first. So a caller may append a value to B itself after Key
// (an amount, say) and the writer still gets the commas right. B must
// start empty (or end in one of those three bytes).
//
// The zero Writer is ready to use. Writer does not check that the calls
// nest properly; the tests of each caller decode its output.
type Writer struct {
	B []byte
}

// Reset empties B, keeping its capacity.
func (w *Writer) Reset() { w.B = w.B[:0] }

func (w *Writer) sep() {
	if n := len(w.B); n > 0 {
		switch w.B[n-1] {
		case '{', '[', ':':
		default:
			w.B = append(w.B, ',')
		}
	}
}

// Open starts an object: the top-level value, an array element, or the
// value of the member whose Key was just written.
func (w *Writer) Open() {
	w.sep()
	w.B = append(w.B, '{')
}

// Close ends the innermost object.
func (w *Writer) Close() { w.B = append(w.B, '}') }

// OpenArray starts an array, like Open.
func (w *Writer) OpenArray() {
	w.sep()
	w.B = append(w.B, '[')
}

// CloseArray ends the innermost array.
func (w *Writer) CloseArray() { w.B = append(w.B, ']') }

// Key writes the key of the next member; its value follows: a call to
// Open or OpenArray, or bytes the caller appends to B.
func (w *Writer) Key(k string) {
	w.sep()
	w.B = AppendString(w.B, k)
	w.B = append(w.B, ':')
}

// String writes member k with string value v, escaped.
func (w *Writer) String(k, v string) {
	w.Key(k)
	w.B = AppendString(w.B, v)
}

// Int writes member k with integer value v.
func (w *Writer) Int(k string, v int64) {
	w.Key(k)
	w.B = strconv.AppendInt(w.B, v, 10)
}

// Bool writes member k with value true or false.
func (w *Writer) Bool(k string, v bool) {
	w.Key(k)
	w.B = strconv.AppendBool(w.B, v)
}

// Null writes member k with value null.
func (w *Writer) Null(k string) {
	w.Key(k)
	w.B = append(w.B, "null"...)
}

// UUID writes member k with the canonical text of a UUID as its string
// value ("0b0c0d0e-0f10-4112-8314-15161718191a", lower case, as
// uuid.UUID.String). A uuid.UUID is assignable to [16]byte.
func (w *Writer) UUID(k string, id [16]byte) {
	w.Key(k)
	w.B = append(w.B, '"')
	w.B = AppendUUID(w.B, id)
	w.B = append(w.B, '"')
}

// Time writes member k with t in RFC 3339 with nanoseconds (trailing zeros
// dropped) as its string value, as t.Format(time.RFC3339Nano). Pass t in
// UTC for a "Z" suffix.
func (w *Writer) Time(k string, t time.Time) {
	w.Key(k)
	w.B = append(w.B, '"')
	w.B = t.AppendFormat(w.B, time.RFC3339Nano)
	w.B = append(w.B, '"')
}

const hexDigits = "0123456789abcdef"

// AppendUUID appends the canonical 36-byte text of id, unquoted.
func AppendUUID(dst []byte, id [16]byte) []byte {
	var b [36]byte
	j := 0
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[x>>4], hexDigits[x&0xf]
		j += 2
	}
	return append(dst, b[:]...)
}

// safe[b] is true for the ASCII bytes encoding/json writes as they are
// (with HTML escaping, its default): printable ASCII and DEL, except '"',
// '\\', '<', '>' and '&'.
var safe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		switch b {
		case '"', '\\', '<', '>', '&':
		default:
			t[b] = true
		}
	}
	return t
}()

// AppendString appends s as a quoted JSON string, escaped as
// encoding/json's Marshal escapes it:
//
//   - '"' and '\\' as \" and \\; \b, \f, \n, \r, \t as such; other bytes
//     below 0x20 and '<', '>', '&' as \u00XX;
//   - each byte that is not part of valid UTF-8 as \ufffd (so the decoded
//     text is valid UTF-8, one U+FFFD per bad byte);
//   - U+2028 and U+2029 as \u2028 and \u2029 (JavaScript line terminators);
//   - everything else, including other non-ASCII text, as it is.
//
// strconv.Quote is not a substitute: it writes \x00-style and \U escapes
// that JSON does not have.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as it is
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if safe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // other control bytes, '<', '>', '&'
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
