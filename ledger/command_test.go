package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// filledCommand returns a command of kind k with every field set to a
// distinct non-zero value, so that a field the codec drops or swaps shows.
func filledCommand(k Kind) Command {
	return Command{
		Kind:           k,
		TxID:           uuid.MustParse("0190f1a2-0000-7000-8000-000000000001"),
		AccountID:      uuid.MustParse("0190f1a2-0000-7000-8000-0000000000aa"),
		Counterparty:   uuid.MustParse("0190f1a2-0000-7000-8000-0000000000bb"),
		TimestampUs:    1_700_000_000_123_456,
		Amount:         12_345,
		Currency:       "EUR",
		RequestHash:    0xdeadbeefcafef00d,
		IdemKey:        "idem-" + k.String(),
		CustomerID:     "customer-42",
		AccountType:    "checking",
		OverdraftLimit: 50_000,
		Description:    "rent for März — ünïcode ok",
		ReferenceID:    "ref-0001",
		ReplyNode:      "node-a/boot-7",
		ReplySeq:       987654321,
		FailCode:       CodeCurrencyMismatch,
	}
}

func allKinds() []Kind {
	var ks []Kind
	for k := KindOpen; k < kindCount; k++ {
		ks = append(ks, k)
	}
	return ks
}

func TestCommandRoundTrip(t *testing.T) {
	cases := []Command{{Kind: KindCredit}} // all zero except the kind
	for _, k := range allKinds() {
		cases = append(cases, filledCommand(k))
	}
	// Every string at its limit, and extreme integers.
	maxed := filledCommand(KindOpen)
	maxed.IdemKey = strings.Repeat("k", IdemKeyLenMax)
	maxed.CustomerID = strings.Repeat("c", CustomerIDLenMax)
	maxed.AccountType = strings.Repeat("t", AccountTypeLenMax)
	maxed.Description = strings.Repeat("d", DescriptionLenMax)
	maxed.ReferenceID = strings.Repeat("r", ReferenceLenMax)
	maxed.ReplyNode = strings.Repeat("n", ReplyNodeLenMax)
	maxed.TimestampUs = -1
	maxed.Amount = -1 << 63
	maxed.OverdraftLimit = 1<<63 - 1
	maxed.RequestHash = 1<<64 - 1
	maxed.ReplySeq = 1<<64 - 1
	maxed.FailCode = 0xffff
	cases = append(cases, maxed)

	for _, c := range cases {
		enc := c.AppendBinary(nil)
		got, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("%v: DecodeCommand: %v", c.Kind, err)
		}
		if got != c {
			t.Fatalf("%v: round trip\n got %+v\nwant %+v", c.Kind, got, c)
		}
		// AppendBinary appends: a prefix in dst is kept and the record
		// after it is the same bytes.
		withPrefix := c.AppendBinary([]byte("prefix"))
		if !bytes.Equal(withPrefix[:6], []byte("prefix")) || !bytes.Equal(withPrefix[6:], enc) {
			t.Fatalf("%v: AppendBinary with a prefix changed the encoding", c.Kind)
		}
	}
}

// TestCommandEncodingIsStable pins the byte layout. Records live in Kafka
// and are replayed by later releases, so the format must never change
// silently; a deliberate change needs a new version byte.
func TestCommandEncodingIsStable(t *testing.T) {
	c := Command{
		Kind:           KindTransferRefund,
		TxID:           uuid.UUID{0: 0x11, 15: 0x1f},
		AccountID:      uuid.UUID{0: 0x22, 15: 0x2f},
		Counterparty:   uuid.UUID{0: 0x33, 15: 0x3f},
		TimestampUs:    0x0102030405060708,
		Amount:         0x1234,
		OverdraftLimit: 0x10,
		RequestHash:    0xa1a2a3a4a5a6a7a8,
		ReplySeq:       7,
		FailCode:       CodeAccountNotFound,
		Currency:       "USD",
		IdemKey:        "",
		CustomerID:     "c",
		AccountType:    "",
		Description:    strings.Repeat("x", 200), // two-byte length prefix
		ReferenceID:    "",
		ReplyNode:      "n1",
	}
	var want []byte
	want = append(want, 1, 6) // version, kind
	want = append(want, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1f)
	want = append(want, 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2f)
	want = append(want, 0x33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3f)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)                         // timestamp
	want = append(want, 0, 0, 0, 0, 0, 0, 0x12, 0x34)                   // amount
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 0x10)                      // overdraft
	want = append(want, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8) // request hash
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 7)                         // reply seq
	want = append(want, 0, 6)                                           // fail code
	want = append(want, 3, 'U', 'S', 'D')                               // currency
	want = append(want, 0)                                              // idem key
	want = append(want, 1, 'c')                                         // customer
	want = append(want, 0)                                              // account type
	want = append(want, 0xc8, 0x01)                                     // description: 200
	want = append(want, bytes.Repeat([]byte{'x'}, 200)...)
	want = append(want, 0)           // reference
	want = append(want, 2, 'n', '1') // reply node
	if got := c.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	vc := filledCommand(KindTransferDebit)
	valid := vc.AppendBinary(nil)
	with := func(mut func(b []byte) []byte) []byte {
		return mut(append([]byte(nil), valid...))
	}
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"nil", nil, ErrShortRecord},
		{"empty", []byte{}, ErrShortRecord},
		{"version 0", with(func(b []byte) []byte { b[0] = 0; return b }), ErrBadVersion},
		{"version 2 without its created_by", with(func(b []byte) []byte { b[0] = 2; return b }), ErrShortRecord},
		{"version 2 with an empty created_by", with(func(b []byte) []byte { b[0] = 2; return append(b, 0) }), ErrNonCanonical},
		{"created_by too long", with(func(b []byte) []byte {
			b[0] = 2
			return append(binary.AppendUvarint(b, CreatedByLenMax+1), strings.Repeat("k", CreatedByLenMax+1)...)
		}), ErrFieldTooLong},
		{"version 3 without its created_by and owner", with(func(b []byte) []byte { b[0] = 3; return b }), ErrShortRecord},
		{"version 3 without its owner", with(func(b []byte) []byte { b[0] = 3; return append(b, 1, 'k') }), ErrShortRecord},
		{"version 3 with an empty owner", with(func(b []byte) []byte { b[0] = 3; return append(b, 1, 'k', 0) }), ErrNonCanonical},
		{"version 3 with an empty owner and created_by", with(func(b []byte) []byte { b[0] = 3; return append(b, 0, 0) }), ErrNonCanonical},
		{"owner too long", with(func(b []byte) []byte {
			b[0] = 3
			return append(binary.AppendUvarint(append(b, 0), OwnerLenMax+1), strings.Repeat("o", OwnerLenMax+1)...)
		}), ErrFieldTooLong},
		{"version 4", with(func(b []byte) []byte { b[0] = 4; return b }), ErrBadVersion},
		{"version only 2", []byte{2}, ErrShortRecord},
		{"version only 3", []byte{3}, ErrShortRecord},
		{"version only 4", []byte{4}, ErrBadVersion},
		{"kind invalid", with(func(b []byte) []byte { b[1] = byte(KindInvalid); return b }), ErrBadKind},
		{"kind past the table", with(func(b []byte) []byte { b[1] = byte(kindCount); return b }), ErrBadKind},
		{"kind 255", with(func(b []byte) []byte { b[1] = 255; return b }), ErrBadKind},
		{"trailing byte", append(append([]byte(nil), valid...), 0), ErrTrailingBytes},
		{"trailing record", append(append([]byte(nil), valid...), valid...), ErrTrailingBytes},
		{"length prefix overflows uint64", append(append([]byte(nil), valid[:fixedLen]...),
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrShortRecord},
		{"huge length prefix", binary.AppendUvarint(append([]byte(nil), valid[:fixedLen]...), 1<<63), ErrFieldTooLong},
		{"currency length 4", append(append([]byte(nil), valid[:fixedLen]...), 4, 'U', 'S', 'D', 'X'), ErrFieldTooLong},
		{"length says more than there is", append(append([]byte(nil), valid[:fixedLen]...), 3, 'U', 'S'), ErrShortRecord},
		{"non-minimal length prefix", append(append([]byte(nil), valid[:fixedLen]...), 0x83, 0x00, 'U', 'S', 'D'), ErrNonCanonical},
		{"non-minimal zero length", with(func(b []byte) []byte { return append(b[:len(b)-len("node-a/boot-7")-1], 0x80, 0x00) }), ErrNonCanonical},
	}
	for _, tt := range tests {
		if _, err := DecodeCommand(tt.in); err != tt.err {
			t.Errorf("%s: DecodeCommand = %v; want %v", tt.name, err, tt.err)
		}
	}
}

func TestDecodeCommandTruncated(t *testing.T) {
	for _, k := range allKinds() {
		c := filledCommand(k)
		c.Description = strings.Repeat("d", 300) // a two-byte length prefix to cut through
		enc := c.AppendBinary(nil)
		for n := range len(enc) {
			if _, err := DecodeCommand(enc[:n]); err != ErrShortRecord {
				t.Fatalf("%v: DecodeCommand(first %d of %d bytes) = %v; want %v", k, n, len(enc), err, ErrShortRecord)
			}
		}
	}
}

func TestDecodeCommandFieldLimits(t *testing.T) {
	fields := []struct {
		name  string
		limit int
		set   func(c *Command, s string)
	}{
		{"Currency", CurrencyLen, func(c *Command, s string) { c.Currency = s }},
		{"IdemKey", IdemKeyLenMax, func(c *Command, s string) { c.IdemKey = s }},
		{"CustomerID", CustomerIDLenMax, func(c *Command, s string) { c.CustomerID = s }},
		{"AccountType", AccountTypeLenMax, func(c *Command, s string) { c.AccountType = s }},
		{"Description", DescriptionLenMax, func(c *Command, s string) { c.Description = s }},
		{"ReferenceID", ReferenceLenMax, func(c *Command, s string) { c.ReferenceID = s }},
		{"ReplyNode", ReplyNodeLenMax, func(c *Command, s string) { c.ReplyNode = s }},
	}
	for _, f := range fields {
		c := filledCommand(KindOpen)
		f.set(&c, strings.Repeat("a", f.limit))
		if got, err := DecodeCommand(c.AppendBinary(nil)); err != nil || got != c {
			t.Errorf("%s at its limit %d: DecodeCommand = %v", f.name, f.limit, err)
		}
		// AppendBinary does not check limits (ingress does); the decoder
		// must refuse what would not fit.
		f.set(&c, strings.Repeat("a", f.limit+1))
		if _, err := DecodeCommand(c.AppendBinary(nil)); err != ErrFieldTooLong {
			t.Errorf("%s one past its limit: DecodeCommand = %v; want %v", f.name, err, ErrFieldTooLong)
		}
	}
}

func TestHashRequest(t *testing.T) {
	base := filledCommand(KindTransferDebit)
	h := HashRequest(&base)
	if h2 := HashRequest(&base); h2 != h {
		t.Fatalf("HashRequest is not a function of its input: %x then %x", h, h2)
	}

	same := []struct {
		name string
		mut  func(c *Command)
	}{
		{"TxID", func(c *Command) { c.TxID = uuid.MustParse("0190f1a2-0000-7000-8000-0000000000ff") }},
		{"TimestampUs", func(c *Command) { c.TimestampUs++ }},
		{"ReplyNode", func(c *Command) { c.ReplyNode = "node-b/boot-1" }},
		{"ReplySeq", func(c *Command) { c.ReplySeq++ }},
		{"IdemKey", func(c *Command) { c.IdemKey = "another-key" }},
		{"RequestHash", func(c *Command) { c.RequestHash = 0 }},
		{"FailCode", func(c *Command) { c.FailCode = OK }},
		{"all of them", func(c *Command) {
			c.TxID, c.TimestampUs, c.ReplyNode, c.ReplySeq, c.IdemKey = uuid.Nil, 0, "", 0, ""
		}},
	}
	for _, tt := range same {
		c := base
		tt.mut(&c)
		if got := HashRequest(&c); got != h {
			t.Errorf("changing %s changed the request hash", tt.name)
		}
	}

	different := []struct {
		name string
		mut  func(c *Command)
	}{
		{"Kind", func(c *Command) { c.Kind = KindDebit }},
		{"AccountID", func(c *Command) { c.AccountID[15]++ }},
		{"Counterparty", func(c *Command) { c.Counterparty[0]++ }},
		{"accounts swapped", func(c *Command) { c.AccountID, c.Counterparty = c.Counterparty, c.AccountID }},
		{"Amount", func(c *Command) { c.Amount++ }},
		{"Amount high byte", func(c *Command) { c.Amount += 1 << 56 }},
		{"OverdraftLimit", func(c *Command) { c.OverdraftLimit++ }},
		{"Currency", func(c *Command) { c.Currency = "USD" }},
		{"CustomerID", func(c *Command) { c.CustomerID += "x" }},
		{"AccountType", func(c *Command) { c.AccountType = "savings" }},
		{"Description", func(c *Command) { c.Description = "rent for April" }},
		{"Description emptied", func(c *Command) { c.Description = "" }},
		{"ReferenceID", func(c *Command) { c.ReferenceID = "ref-0002" }},
		// Length prefixes keep adjacent strings apart: moving a byte from
		// one field to the next is a different request.
		{"bytes moved between fields", func(c *Command) {
			c.Description, c.ReferenceID = c.Description+c.ReferenceID[:1], c.ReferenceID[1:]
		}},
	}
	seen := map[uint64]string{h: "base"}
	for _, tt := range different {
		c := base
		tt.mut(&c)
		got := HashRequest(&c)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives the same request hash as %s", tt.name, prev)
		}
		seen[got] = tt.name
	}
}

func TestKindNames(t *testing.T) {
	// The numeric values are stored in Kafka and PostgreSQL: pin them.
	want := map[Kind]string{
		0: "invalid", 1: "open", 2: "credit", 3: "debit",
		4: "transfer_debit", 5: "transfer_credit", 6: "transfer_refund",
	}
	for k, name := range want {
		if k.String() != name {
			t.Errorf("Kind(%d).String() = %q; want %q", k, k.String(), name)
		}
		if k != KindInvalid && ParseKind(name) != k {
			t.Errorf("ParseKind(%q) = %v; want %v", name, ParseKind(name), k)
		}
	}
	if Kind(kindCount) != 7 {
		t.Errorf("kindCount = %d; a kind was added without updating this test", kindCount)
	}
	for _, s := range []string{"invalid", "", "Open", "credit ", "bogus"} {
		if ParseKind(s) != KindInvalid {
			t.Errorf("ParseKind(%q) = %v; want invalid", s, ParseKind(s))
		}
	}
	if Kind(200).String() != "invalid" {
		t.Errorf("Kind(200).String() = %q", Kind(200).String())
	}
}

// fuzzCommandSeeds are the encodings the fuzz target starts from; the same
// list is committed under testdata/fuzz/FuzzDecodeCommand (see
// TestFuzzSeedCorpus).
func fuzzCommandSeeds() [][]byte {
	var seeds [][]byte
	for _, k := range allKinds() {
		c := filledCommand(k)
		seeds = append(seeds, c.AppendBinary(nil))
	}
	seeds = append(seeds, (&Command{Kind: KindCredit}).AppendBinary(nil))
	long := filledCommand(KindOpen)
	long.Description = strings.Repeat("d", DescriptionLenMax)
	seeds = append(seeds, long.AppendBinary(nil))
	by := filledCommand(KindTransferDebit)
	by.CreatedBy = "apikey:kwsgtrsxflbwghsx"
	seeds = append(seeds, by.AppendBinary(nil))
	owned := filledCommand(KindDebit)
	owned.Owner = "0190f1a2-0000-7000-8000-0000000000cc"
	seeds = append(seeds, owned.AppendBinary(nil))
	owned.CreatedBy = "user:0190f1a2-0000-7000-8000-0000000000cc"
	seeds = append(seeds, owned.AppendBinary(nil))
	return seeds
}

// TestOwnerRoundTrips: a command with an Owner is a version-3 record
// ending in CreatedBy (possibly empty) and Owner, and decodes to the same
// command. The owner of a debit does not change its request hash (it comes
// from the credential); an open's does (it is what is asked for), and an
// open without one hashes as it always did.
func TestOwnerRoundTrips(t *testing.T) {
	const owner = "0190f1a2-0000-7000-8000-0000000000cc"
	for _, by := range []string{"", "user:" + owner} {
		c := filledCommand(KindDebit)
		c.CreatedBy = by
		before := c.AppendBinary(nil)
		c.Owner = owner
		v3 := c.AppendBinary(nil)
		tail := append(append(append([]byte{byte(len(by))}, by...), byte(len(owner))), owner...)
		if v3[0] != 3 || !bytes.Equal(v3[1:fixedLen], before[1:fixedLen]) || !bytes.HasSuffix(v3, tail) {
			t.Fatalf("created_by %q: encodings:\n before %x\n v3 %x", by, before, v3)
		}
		got, err := DecodeCommand(v3)
		if err != nil || got != c {
			t.Fatalf("DecodeCommand(v3) = %+v, %v; want %+v", got, err, c)
		}
		plain := c
		plain.Owner = ""
		if HashRequest(&c) != HashRequest(&plain) {
			t.Fatal("a debit's owner changes its request hash: a teller's retry of a customer's request would be refused")
		}
	}
	open := filledCommand(KindOpen)
	h := HashRequest(&open)
	open.Owner = owner
	if HashRequest(&open) == h {
		t.Fatal("an open's owner does not change its request hash")
	}
}

// TestCreatedByRoundTrips: a command with CreatedBy is a version-2
// record ending in it, and decodes to the same command; one without is
// the version-1 record it always was.
func TestCreatedByRoundTrips(t *testing.T) {
	c := filledCommand(KindCredit)
	v1 := c.AppendBinary(nil)
	c.CreatedBy = "apikey:kwsgtrsxflbwghsx"
	v2 := c.AppendBinary(nil)
	if v1[0] != 1 || v2[0] != 2 || !bytes.Equal(v2[1:len(v1)], v1[1:]) || !bytes.Equal(v2[len(v1):], append([]byte{23}, c.CreatedBy...)) {
		t.Fatalf("encodings:\n v1 %x\n v2 %x", v1, v2)
	}
	got, err := DecodeCommand(v2)
	if err != nil || got != c {
		t.Fatalf("DecodeCommand(v2) = %+v, %v; want %+v", got, err, c)
	}
	if HashRequest(&got) != HashRequest(&Command{Kind: c.Kind, AccountID: c.AccountID, Counterparty: c.Counterparty, Amount: c.Amount,
		OverdraftLimit: c.OverdraftLimit, Currency: c.Currency, CustomerID: c.CustomerID, AccountType: c.AccountType,
		Description: c.Description, ReferenceID: c.ReferenceID}) {
		t.Fatal("CreatedBy changes the request hash: a retry under another key would be refused")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range fuzzCommandSeeds() {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			switch {
			case errors.Is(err, ErrShortRecord), errors.Is(err, ErrBadVersion), errors.Is(err, ErrBadKind),
				errors.Is(err, ErrFieldTooLong), errors.Is(err, ErrTrailingBytes), errors.Is(err, ErrNonCanonical):
			default:
				t.Fatalf("DecodeCommand: unexpected error %v", err)
			}
			return
		}
		if c.Kind == KindInvalid || c.Kind >= kindCount {
			t.Fatalf("DecodeCommand accepted kind %d", c.Kind)
		}
		// One record, one encoding: re-encoding gives back the input.
		if enc := c.AppendBinary(nil); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n  in %x\n out %x", b, enc)
		}
	})
}
