package ingress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// frameOutcome is what a framer made of a stream.
type frameOutcome struct {
	handed int   // bytes handed on before the refusal, or all of them
	err    error // errBareLF or nil
	served uint64
	phase  framePhase
}

// frameAll feeds b to a new framer in pieces of at most step bytes (0: at
// once) and stops at the first refusal, as a connection does.
func frameAll(b []byte, step int) frameOutcome {
	var f framer
	var o frameOutcome
	for len(b) > 0 {
		n := len(b)
		if step > 0 && step < n {
			n = step
		}
		k, err := f.feed(b[:n])
		o.handed += k
		if err != nil {
			o.err = err
			break
		}
		b = b[n:]
	}
	o.served, o.phase = f.served, f.phase
	return o
}

const (
	getReq  = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
	postReq = "POST /api/v1/transactions/credit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\n\n\"b\"}"
	chunked = "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nab\ncd\r\n3 \r\n\n\nx\r\n0\r\nX-Trailer: y\r\n\r\n"
)

func TestFramer(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		bareLF int // index of the refused LF; -1: none
		served uint64
		phase  framePhase
	}{
		{"get", getReq, -1, 1, phaseStart},
		{"post with LFs in its body", postReq, -1, 1, phaseStart},
		{"pipelined", getReq + postReq + getReq, -1, 3, phaseStart},
		{"chunked with extensions, LFs in data and a trailer", chunked + getReq, -1, 2, phaseStart},
		{"chunked wins over Content-Length", "POST /x HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", -1, 1, phaseStart},
		{"empty lines before the request line", "\r\n\r\n" + getReq, -1, 1, phaseStart},
		{"case and white space of the framing fields", "POST /x HTTP/1.1\r\ncOnTeNt-LeNgTh:  3 \r\n\r\nabc", -1, 1, phaseStart},
		{"Content-Length 0", "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", -1, 1, phaseStart},
		{"a longer name that starts like a framing field", "POST /x HTTP/1.1\r\nContent-Length-X: 5\r\n\r\n", -1, 1, phaseStart},
		{"head in progress", "GET /healthz HTTP/1.1\r\nHo", -1, 0, phaseHead},
		{"body in progress", postReq[:len(postReq)-3], -1, 0, phaseBody},
		{"trailer in progress", strings.TrimSuffix(chunked, "\r\n"), -1, 0, phaseTrailer},

		{"bare LF ends the head", "GET / HTTP/1.1\r\nHost: t\n\n", len("GET / HTTP/1.1\r\nHost: t"), 0, phaseHead},
		{"bare LF blank line", "GET / HTTP/1.1\r\nHost: t\r\n\n", len("GET / HTTP/1.1\r\nHost: t\r\n"), 0, phaseHead},
		{"bare LF request line", "GET / HTTP/1.1\nHost: t\r\n\r\n", len("GET / HTTP/1.1"), 0, phaseHead},
		{"bare LF before the request line", "\n" + getReq, 0, 0, phaseHead},
		{"bare LF in the second request", getReq + "GET / HTTP/1.1\nHost: t\n\n", len(getReq) + len("GET / HTTP/1.1"), 1, phaseHead},
		{"bare LF in a trailer", "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n", len("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y"), 0, phaseTrailer},

		// Framing fasthttp refuses: the framer stops looking.
		{"gzip transfer coding", "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n\n\n", -1, 0, phaseUnknown},
		{"two Content-Lengths", "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n\n\n", -1, 0, phaseUnknown},
		{"Content-Length not a number", "POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", -1, 0, phaseUnknown},
		{"Content-Length too long", "POST /x HTTP/1.1\r\nContent-Length: 0000000000000000000000001\r\n\r\n", -1, 0, phaseUnknown},
		{"folded line", "POST /x HTTP/1.1\r\nX: a\r\n b\r\n\r\n", -1, 0, phaseUnknown},
		{"bare LF after a chunk size", "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\n", -1, 0, phaseUnknown},
		{"chunk size without digits", "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", -1, 0, phaseUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := frameOutcome{handed: len(tc.in), served: tc.served, phase: tc.phase}
			if tc.bareLF >= 0 {
				want.handed, want.err = tc.bareLF, errBareLF
			}
			for _, step := range []int{0, 1, 2, 3, 7} {
				if got := frameAll([]byte(tc.in), step); got != want {
					t.Fatalf("in pieces of %d: %+v, want %+v", step, got, want)
				}
			}
		})
	}
}

// TestFramerMatchesFasthttp: for streams fasthttp reads, the framer finds
// the same request boundaries.
func TestFramerMatchesFasthttp(t *testing.T) {
	for _, in := range []string{getReq, postReq, chunked, getReq + postReq + chunked + getReq, "\r\n" + postReq + postReq} {
		checkFramerBoundaries(t, []byte(in), true)
	}
}

// checkFramerBoundaries reads b's requests with fasthttp and checks that
// the framer, fed what fasthttp consumed, saw as many requests end there.
// strict: every request must be read.
func checkFramerBoundaries(t *testing.T, b []byte, strict bool) {
	t.Helper()
	src := bytes.NewReader(b)
	br := bufio.NewReaderSize(src, 64<<10)
	var f framer
	fed, count := 0, uint64(0)
	for {
		var req fasthttp.Request
		err := req.Read(br)
		if err != nil {
			if strict && (!errors.Is(err, io.EOF) || fed != len(b)) {
				t.Fatalf("fasthttp stopped after %d requests, %d of %d bytes: %v", count, fed, len(b), err)
			}
			return
		}
		if req.MayContinue() {
			return // fasthttp.Request.Read leaves the body for later
		}
		count++
		consumed := len(b) - src.Len() - br.Buffered()
		if _, ferr := f.feed(b[fed:consumed]); ferr != nil || f.phase == phaseUnknown {
			if strict {
				t.Fatalf("framer refused a stream fasthttp reads: %v, phase %d", ferr, f.phase)
			}
			return // the framer is stricter (bare LF) or stopped looking
		}
		fed = consumed
		if f.served != count || f.phase != phaseStart {
			t.Fatalf("after %d bytes fasthttp read %d requests, the framer %d (phase %d)", fed, count, f.served, f.phase)
		}
	}
}

func TestFramerReading(t *testing.T) {
	var f framer
	steps := []struct {
		feed, want string
	}{
		{"", "header"}, // a new connection that sent nothing yet
		{"POST /x HTTP/1.1\r\nContent-Length: 2\r\n", "header"},
		{"\r\n", "body"},
		{"a", "body"},
		{"b", "idle"},
		{"G", "header"},
		{"ET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "unknown"},
	}
	for _, s := range steps {
		if _, err := f.feed([]byte(s.feed)); err != nil {
			t.Fatal(err)
		}
		if got := f.reading(); got != s.want {
			t.Fatalf("after %q: reading %q, want %q", s.feed, got, s.want)
		}
	}
}

func FuzzFraming(f *testing.F) {
	for _, s := range []string{getReq, postReq, chunked, getReq + postReq, "GET / HTTP/1.1\r\nHost: t\n\n",
		"\r\n" + getReq, "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		whole := frameAll(b, 0)
		if pieces := frameAll(b, int(step)); pieces != whole {
			t.Fatalf("in pieces of %d: %+v; at once: %+v", step, pieces, whole)
		}
		if whole.err != nil {
			// A refusal is at an LF, and hands on everything before it.
			// (The byte before may be a CR: the last of a body.)
			if k := whole.handed; b[k] != '\n' {
				t.Fatalf("refused at %d, not an LF: %q", k, b[k])
			}
		} else if whole.handed != len(b) {
			t.Fatalf("handed %d of %d bytes without a refusal", whole.handed, len(b))
		}
		checkFramerBoundaries(t, b, false)
	})
}

// BenchmarkFramer feeds a transfer as the bench sends it: the framer's
// cost per request.
func BenchmarkFramer(b *testing.B) {
	body := `{"source_account_id":"` + testAccount + `","destination_account_id":"` + otherAccount + `","amount":"1","currency":"USD"}`
	req := []byte("POST /api/v1/transactions/transfer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n" +
		"Idempotency-Key: bench-1234567890\r\nUser-Agent: bursar-bench\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	var f framer
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := f.feed(req); err != nil {
			b.Fatal(err)
		}
	}
}
