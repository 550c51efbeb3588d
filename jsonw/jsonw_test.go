package jsonw

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// stringSeeds are the strings the escaper must get right; FuzzAppendString
// starts from them too.
var stringSeeds = []string{
	"",
	"plain ascii 0123",
	`quote " and backslash \ and slash /`,
	"\b\f\n\r\t",
	"\x00\x01\x1f\x7f",
	"<script>&amp;</script>",
	"é ü 日本語 🙂",
	"\u2028 and \u2029",
	"\u2027\u202a", // the neighbours of U+2028/2029 stay as they are
	"\uFFFD is valid",
	"bad \xff byte",
	"\xc3", // truncated two-byte sequence
	"\xe2\x80",
	"\xed\xa0\x80",             // a UTF-16 surrogate, invalid in UTF-8
	"\xc0\xaf",                 // overlong '/'
	"\xf4\x90\x80\x80",         // beyond U+10FFFF
	"mixed \x00é\xff\u2028\"<", // all of the above in one
	strings.Repeat("x", 300) + "\"",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range stringSeeds {
		checkString(t, s)
	}
	// Every single byte and every rune up to U+FFFF, alone and between
	// ASCII, so the copy of pending bytes is exercised too.
	for b := 0; b < 256; b++ {
		checkString(t, string([]byte{byte(b)}))
		checkString(t, "a"+string([]byte{byte(b)})+"z")
	}
	for r := rune(0); r <= 0xffff; r++ {
		checkString(t, "a"+string(r)+"z")
	}
}

// checkString holds AppendString to encoding/json: the same bytes, valid
// JSON, decoding to s with each invalid byte replaced by U+FFFD.
func checkString(t *testing.T, s string) {
	t.Helper()
	prefix := []byte("prefix:")
	got := AppendString(append([]byte(nil), prefix...), s)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendString(%q) overwrote dst: %q", s, got)
	}
	got = got[len(prefix):]
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
	}
	if !json.Valid(got) {
		t.Fatalf("AppendString(%q) = %s is not valid JSON", s, got)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("AppendString(%q) = %s: %v", s, got, err)
	}
	// Converting to []rune turns each invalid byte into one U+FFFD, as
	// the encoder does.
	if want := string([]rune(s)); back != want {
		t.Fatalf("AppendString(%q) decodes to %q, want %q", s, back, want)
	}
	if !utf8.ValidString(back) {
		t.Fatalf("AppendString(%q) decodes to invalid UTF-8 %q", s, back)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkString(t, s)
	})
}

func TestAppendUUID(t *testing.T) {
	ids := []uuid.UUID{uuid.Nil, uuid.Max, uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a")}
	for range 100 {
		ids = append(ids, uuid.New())
	}
	for _, id := range ids {
		if got := string(AppendUUID(nil, id)); got != id.String() {
			t.Fatalf("AppendUUID(%v) = %s", id, got)
		}
	}
}

// TestWriterMatchesMarshal writes a struct's fields with the Writer,
// nested objects and arrays included, and compares with json.Marshal of
// the struct: byte for byte, since the field order is the same.
func TestWriterMatchesMarshal(t *testing.T) {
	type leg struct {
		N int64  `json:"n"`
		S string `json:"s"`
	}
	type inner struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	type doc struct {
		ID      string    `json:"id"`
		Text    string    `json:"text"`
		Neg     int64     `json:"neg"`
		Yes     bool      `json:"yes"`
		No      bool      `json:"no"`
		Nothing *string   `json:"nothing"`
		At      time.Time `json:"at"`
		Amount  string    `json:"amount"`
		Error   inner     `json:"error"`
		Legs    []leg     `json:"legs"`
		None    []leg     `json:"none"`
		Empty   struct{}  `json:"empty"`
		Last    string    `json:"last"`
	}
	id := uuid.MustParse("0b0c0d0e-0f10-4112-8314-15161718191a")
	at := time.UnixMicro(1_700_000_000_123_400).UTC()
	v := doc{
		ID: id.String(), Text: "a\"b\\c\x00é\u2028\xff<", Neg: -42, Yes: true, At: at, Amount: "-12.34",
		Error: inner{"INSUFFICIENT_FUNDS", "no \"money\""},
		Legs:  []leg{{1, "x"}, {2, "y"}, {3, ""}}, None: []leg{},
		Last: "end",
	}
	var w Writer
	w.Open()
	w.UUID("id", id)
	w.String("text", v.Text)
	w.Int("neg", v.Neg)
	w.Bool("yes", true)
	w.Bool("no", false)
	w.Null("nothing")
	w.Time("at", at)
	w.Key("amount")
	w.B = append(w.B, `"-12.34"`...) // a value the caller appends itself
	w.Key("error")
	w.Open()
	w.String("code", v.Error.Code)
	w.String("message", v.Error.Message)
	w.Close()
	w.Key("legs")
	w.OpenArray()
	for _, l := range v.Legs {
		w.Open()
		w.Int("n", l.N)
		w.String("s", l.S)
		w.Close()
	}
	w.CloseArray()
	w.Key("none")
	w.OpenArray()
	w.CloseArray()
	w.Key("empty")
	w.Open()
	w.Close()
	w.String("last", v.Last)
	w.Close()

	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.B, want) {
		t.Fatalf("writer:\n %s\nencoding/json:\n %s", w.B, want)
	}

	w.Reset()
	if len(w.B) != 0 {
		t.Fatal("Reset left bytes")
	}
	w.Open()
	w.Int("a", 1)
	w.Close()
	if got := string(w.B); got != `{"a":1}` {
		t.Fatalf("after Reset: %s", got)
	}
}

func TestTimeMatchesFormat(t *testing.T) {
	for _, us := range []int64{0, 1, 1_700_000_000_000_000, 1_700_000_000_123_456, 1_700_000_000_100_000, -1} {
		tm := time.UnixMicro(us).UTC()
		var w Writer
		w.Open()
		w.Time("t", tm)
		w.Close()
		var got struct{ T string }
		if err := json.Unmarshal(w.B, &got); err != nil {
			t.Fatal(err)
		}
		if want := tm.Format(time.RFC3339Nano); got.T != want {
			t.Fatalf("Time(%d) = %s, want %s", us, got.T, want)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	for _, tc := range []struct{ name, s string }{
		{"ascii", "rent for march, invoice 2024-03-0042"},
		{"escapes", `a "quoted" <tag> & back\slash` + "\n\t"},
		{"unicode", "loyer de mars — café été 日本語"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.s)))
			for b.Loop() {
				buf = AppendString(buf[:0], tc.s)
			}
		})
	}
}
