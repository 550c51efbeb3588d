package ingress

import (
	"bytes"
	"errors"
)

// A framer follows the request framing of one connection, byte by byte, as
// the connection reads it: where each request's head (request line and
// header fields) ends, how long its body is (Content-Length, or chunked
// with trailers), and where the next request starts. It exists for two
// reasons, both about what fasthttp does not tell us:
//
//   - fasthttp's two header parsers disagree on a head that ends in a bare
//     LF ("\n\n"): the first takes the head as complete, the second waits
//     for a CRLFCRLF that never comes, so the server answers nothing until
//     the client gives up. A framer refuses every line of a head (and of a
//     trailer) that ends in LF without CR, the moment it arrives (RFC 9112
//     §2.2 lets a recipient refuse them; a proxy that reads LF differently
//     from us would otherwise see other requests than we do).
//   - A read that times out is cut; the framer says what was being read
//     (the header, the body, or nothing: an idle keep-alive connection), so
//     that each cut is counted under its own timeout.
//
// The framer never decides what fasthttp accepts: anything it does not
// follow (a Transfer-Encoding other than chunked, an invalid or repeated
// Content-Length, a folded header line, a malformed chunk) fasthttp refuses
// and closes the connection, and the framer stops looking (phaseUnknown).

// errBareLF refuses a head or trailer line that ends in LF without CR.
var errBareLF = errors.New("a request line or header field line ends in LF without CR")

type framePhase uint8

const (
	phaseStart     framePhase = iota // no byte of the next request yet
	phaseHead                        // request line and header fields
	phaseBody                        // a Content-Length body
	phaseChunkSize                   // a chunk-size line
	phaseChunkData                   // chunk data and the CRLF after it
	phaseTrailer                     // trailer fields after the last chunk
	phaseUnknown                     // framing the framer does not follow
)

// chunkSizeMax bounds a chunk size the framer follows (fasthttp's body
// limits are far below it).
const chunkSizeMax = 1 << 40

// fieldValueMax bounds the value of a framing field the framer reads, white
// space included; a longer one it does not follow.
const fieldValueMax = 64

// framer's zero value expects the first byte of a connection.
type framer struct {
	phase  framePhase
	served uint64 // requests whose framing ended

	prevCR  bool // the last byte was CR
	lineLen int  // bytes of the current line so far, its CR included
	gotLine bool // the head's request line has been read

	// A header field line that spans reads, byte by byte: its name,
	// lower-cased, while it may be Content-Length or Transfer-Encoding,
	// then its value.
	name     [len("transfer-encoding")]byte
	nameLen  int
	inValue  bool
	folded   bool                    // the line starts with white space
	framing  bool                    // the name is Content-Length or Transfer-Encoding
	value    [fieldValueMax + 1]byte // and the CR
	valueLen int                     // may exceed len(value)

	clSeen, teSeen bool
	clBad, teBad   bool // unparsable, repeated, or not "chunked"
	contentLength  int64

	remaining int64 // body or chunk bytes still to come
	chunkSize int64
	sizeDigit bool // a hex digit of the chunk size was read
	sizeDone  bool // the chunk size ended (extension or white space follows)
}

// feed takes the next bytes read from the connection. It returns how many
// of them may be handed to the HTTP server: all of b, or on a bare LF in a
// head or trailer, the bytes before it and errBareLF.
func (f *framer) feed(b []byte) (int, error) {
	for i := 0; i < len(b); {
		switch f.phase {
		case phaseUnknown:
			return len(b), nil
		case phaseBody, phaseChunkData:
			n := int64(len(b) - i)
			if n > f.remaining {
				n = f.remaining
			}
			i += int(n)
			f.remaining -= n
			if f.remaining == 0 {
				if f.phase == phaseBody {
					f.endRequest()
				} else {
					f.startChunk()
				}
			}
		case phaseStart, phaseHead, phaseTrailer:
			if f.phase == phaseStart {
				f.phase = phaseHead
			}
			if f.lineLen == 0 {
				// A whole line in b: take it at once.
				if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
					if j == 0 || b[i+j-1] != '\r' {
						return i + j, errBareLF
					}
					f.line(b[i : i+j-1])
					i += j + 1
					continue
				}
			}
			// A line that spans reads: byte by byte.
			c := b[i]
			if c == '\n' && !f.prevCR {
				return i, errBareLF
			}
			f.lineByte(c)
			i++
		case phaseChunkSize:
			f.chunkSizeByte(b[i])
			i++
		}
	}
	return len(b), nil
}

// endRequest readies the framer for the next request.
func (f *framer) endRequest() {
	*f = framer{served: f.served + 1}
}

func (f *framer) startChunk() {
	f.phase, f.chunkSize, f.sizeDigit, f.sizeDone, f.prevCR = phaseChunkSize, 0, false, false, false
}

// line takes a whole head or trailer line, without its CRLF.
func (f *framer) line(l []byte) {
	switch {
	case f.phase == phaseTrailer:
		if len(l) == 0 {
			f.endRequest()
		}
	case !f.gotLine:
		// Empty lines before the request line are ignored (RFC 9112 §2.2).
		f.gotLine = len(l) > 0
	case len(l) == 0:
		f.endHead()
	case l[0] == ' ' || l[0] == '\t':
		f.obsFold()
	default:
		colon := bytes.IndexByte(l, ':')
		if colon != len("content-length") && colon != len("transfer-encoding") {
			return
		}
		var name [len("transfer-encoding")]byte
		for k, c := range l[:colon] {
			name[k] = lower(c)
		}
		if isFramingField(name[:colon]) {
			f.field(colon == len("content-length"), l[colon+1:])
		}
	}
}

// lineByte takes one byte of a head or trailer line that spans reads (never
// a bare LF).
func (f *framer) lineByte(c byte) {
	if c != '\n' {
		f.prevCR = c == '\r'
		if f.phase == phaseHead && f.gotLine {
			f.fieldByte(c)
		}
		f.lineLen++
		return
	}
	empty := f.lineLen == 1 // the line was just its CR
	f.prevCR, f.lineLen = false, 0
	switch {
	case f.phase == phaseTrailer:
		if empty {
			f.endRequest()
		}
	case !f.gotLine:
		f.gotLine = !empty
	case empty:
		f.endHead()
	default:
		framing, isCL, folded := f.framing, f.nameLen == len("content-length"), f.folded
		v := f.value[:min(f.valueLen, len(f.value))]
		long := f.valueLen > len(f.value)
		f.nameLen, f.inValue, f.framing, f.valueLen, f.folded = 0, false, false, 0, false
		if folded {
			f.obsFold()
			return
		}
		if framing {
			if long {
				f.phase = phaseUnknown
				return
			}
			f.field(isCL, v[:len(v)-1]) // without the CR
		}
	}
}

// fieldByte takes one byte of a header field line that spans reads, its
// CR included.
func (f *framer) fieldByte(c byte) {
	if f.lineLen == 0 && (c == ' ' || c == '\t') {
		f.folded = true // decided at the line's end, as for a whole line
	}
	if f.inValue {
		if f.framing {
			if f.valueLen < len(f.value) {
				f.value[f.valueLen] = c
			}
			f.valueLen++
		}
		return
	}
	if c == ':' {
		f.inValue = true
		f.framing = f.nameLen <= len(f.name) && isFramingField(f.name[:f.nameLen])
		return
	}
	if f.nameLen < len(f.name) {
		f.name[f.nameLen] = lower(c)
	}
	f.nameLen++
}

// obsFold stops following: a folded line (obs-fold) is joined by fasthttp
// to the field above, which may be a framing field.
func (f *framer) obsFold() { f.phase = phaseUnknown }

// field applies the value v of a Content-Length (isCL) or
// Transfer-Encoding field line.
func (f *framer) field(isCL bool, v []byte) {
	if len(v) > fieldValueMax {
		f.phase = phaseUnknown
		return
	}
	v = trimOWS(v)
	if isCL {
		n, ok := parseDecimal(v)
		f.clBad = f.clBad || f.clSeen || !ok
		f.clSeen, f.contentLength = true, n
		return
	}
	f.teBad = f.teBad || f.teSeen || !equalFoldASCII(v, "chunked")
	f.teSeen = true
}

// endHead starts the body the head announced, or the next request.
func (f *framer) endHead() {
	switch {
	case f.teBad || f.clBad && !f.teSeen:
		f.phase = phaseUnknown
	case f.teSeen:
		// Chunked wins over a Content-Length, as in fasthttp.
		f.startChunk()
	case f.contentLength > 0:
		f.phase, f.remaining = phaseBody, f.contentLength
	default:
		f.endRequest()
	}
}

// chunkSizeByte takes one byte of a chunk-size line: hex digits, then an
// extension or white space up to CRLF. fasthttp refuses anything else.
func (f *framer) chunkSizeByte(c byte) {
	switch {
	case c == '\n':
		if !f.prevCR || !f.sizeDigit {
			f.phase = phaseUnknown
			return
		}
		if f.chunkSize == 0 {
			f.phase, f.prevCR, f.lineLen = phaseTrailer, false, 0
			return
		}
		f.phase, f.remaining = phaseChunkData, f.chunkSize+2 // data, CRLF
	case f.prevCR:
		f.phase = phaseUnknown // CR not followed by LF
	case c == '\r':
		f.prevCR = true
	case !f.sizeDone && hexDigit(c) >= 0:
		f.chunkSize = f.chunkSize<<4 | int64(hexDigit(c))
		f.sizeDigit = true
		if f.chunkSize > chunkSizeMax {
			f.phase = phaseUnknown
		}
	default:
		f.sizeDone = true
	}
}

// reading says what a read that timed out was waiting for: the next
// request on a connection that served one ("idle"), a header (or a first
// request), a body, or something the framer does not follow ("unknown").
func (f *framer) reading() string {
	switch f.phase {
	case phaseStart:
		if f.served > 0 {
			return "idle"
		}
		return "header"
	case phaseHead:
		return "header"
	case phaseUnknown:
		return "unknown"
	default:
		return "body"
	}
}

// isFramingField says whether a lower-cased field name sets the body's
// length (the switch on string(name) does not allocate).
func isFramingField(name []byte) bool {
	switch string(name) {
	case "content-length", "transfer-encoding":
		return true
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// parseDecimal parses 1 to 18 decimal digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if lower(c) != s[i] {
			return false
		}
	}
	return true
}
