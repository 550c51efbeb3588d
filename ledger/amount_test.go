package ledger

import (
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func TestParseAmount(t *testing.T) {
	tests := []struct {
		text string
		exp  int
		want int64
		err  error
	}{
		// Exponent 2, the common case.
		{"12.34", 2, 1234, nil},
		{"12", 2, 1200, nil},
		{"0.5", 2, 50, nil},
		{"0.05", 2, 5, nil},
		{"0.01", 2, 1, nil},
		{"1.2", 2, 120, nil},  // fewer decimals than the exponent are fine
		{"1.0", 2, 100, nil},  // so is a zero among them
		{"1.00", 2, 100, nil}, // and as many as the exponent
		{"10", 2, 1000, nil},
		{"1.230", 2, 0, ErrAmountPrecision},   // a trailing zero past the exponent is not canonical
		{"1.20000", 2, 0, ErrAmountPrecision}, // however many
		{"0.010", 2, 0, ErrAmountPrecision},
		{"0.000", 2, 0, ErrAmountPrecision},
		{"1.235", 2, 0, ErrAmountPrecision},
		{"1.2301", 2, 0, ErrAmountPrecision}, // a non-zero digit after zeros
		{"0.001", 2, 0, ErrAmountPrecision},
		{"0", 2, 0, ErrAmountNotPos},
		{"0.00", 2, 0, ErrAmountNotPos},
		{"000", 2, 0, ErrAmountLeadingZero},
		{"00", 2, 0, ErrAmountLeadingZero},
		{"0.0", 2, 0, ErrAmountNotPos},
		{"00001.00", 2, 0, ErrAmountLeadingZero},
		{"01", 2, 0, ErrAmountLeadingZero},
		{"00.5", 2, 0, ErrAmountLeadingZero},
		{"0x", 2, 0, ErrAmountSyntax},
		{"-1", 2, 0, ErrAmountNotPos},
		{"-0.5", 2, 0, ErrAmountNotPos},
		{"--1", 2, 0, ErrAmountNotPos},
		{"1-", 2, 0, ErrAmountSyntax},
		{"1e2", 2, 0, ErrAmountSyntax},
		{"1E2", 2, 0, ErrAmountSyntax},
		{".5", 2, 0, ErrAmountSyntax},
		{"5.", 2, 0, ErrAmountSyntax},
		{".", 2, 0, ErrAmountSyntax},
		{"-", 2, 0, ErrAmountNotPos},
		{"", 2, 0, ErrAmountEmpty},
		{"1..2", 2, 0, ErrAmountSyntax},
		{"1.2.3", 2, 0, ErrAmountSyntax},
		{" 1", 2, 0, ErrAmountSyntax},
		{"1 ", 2, 0, ErrAmountSyntax},
		{"+1", 2, 0, ErrAmountSyntax},
		{"1,00", 2, 0, ErrAmountSyntax},
		{"0x10", 2, 0, ErrAmountSyntax},
		{"NaN", 2, 0, ErrAmountSyntax},
		{"Inf", 2, 0, ErrAmountSyntax},
		{"١", 2, 0, ErrAmountSyntax}, // Arabic-Indic digit one: not ASCII
		{"12\x00", 2, 0, ErrAmountSyntax},
		{"007.50", 2, 0, ErrAmountLeadingZero},
		{"0000000000000000000000000000000000000000000000000000000000000001", 2, 0, ErrAmountLeadingZero}, // 64 bytes
		{"00000000000000000000000000000000000000000000000000000000000000001", 2, 0, ErrAmountTooLarge},
		{"9999999999999.99", 2, AmountMax, nil},
		{"9999999999999.990", 2, 0, ErrAmountPrecision},
		{"9999999999999.999", 2, 0, ErrAmountPrecision},
		{"10000000000000", 2, 0, ErrAmountTooLarge},    // overflows while scaling
		{"10000000000000.00", 2, 0, ErrAmountTooLarge}, // overflows while reading digits
		{"9999999999999.991", 2, 0, ErrAmountPrecision},
		{"99999999999999999999999", 2, 0, ErrAmountTooLarge},

		// Exponent 0 (JPY, KRW, …).
		{"12", 0, 12, nil},
		{"1.0", 0, 0, ErrAmountPrecision}, // no decimals at all
		{"1.00", 0, 0, ErrAmountPrecision},
		{"007", 0, 0, ErrAmountLeadingZero},
		{"0.5", 0, 0, ErrAmountPrecision},
		{"12.34", 0, 0, ErrAmountPrecision},
		{"0", 0, 0, ErrAmountNotPos},
		{"999999999999999", 0, AmountMax, nil},
		{"999999999999998", 0, AmountMax - 1, nil},
		{"1000000000000000", 0, 0, ErrAmountTooLarge},
		{"9223372036854775807", 0, 0, ErrAmountTooLarge},  // math.MaxInt64
		{"18446744073709551617", 0, 0, ErrAmountTooLarge}, // wraps uint64

		// Exponent 3 (BHD, KWD, …).
		{"1.235", 3, 1235, nil},
		{"1.2350", 3, 0, ErrAmountPrecision},
		{"1.23", 3, 1230, nil},
		{"0.010", 3, 10, nil},
		{"0.001", 3, 1, nil},
		{"0.0001", 3, 0, ErrAmountPrecision},
		{"12", 3, 12000, nil},
		{"0.5", 3, 500, nil},
		{"999999999999.999", 3, AmountMax, nil},
		{"1000000000000", 3, 0, ErrAmountTooLarge},
		{"0.000", 3, 0, ErrAmountNotPos},
	}
	for _, tt := range tests {
		got, err := ParseAmount([]byte(tt.text), tt.exp)
		if got != tt.want || err != tt.err {
			t.Errorf("ParseAmount(%q, %d) = %d, %v; want %d, %v", tt.text, tt.exp, got, err, tt.want, tt.err)
		}
	}
}

func TestAmountErrorsMapToMessages(t *testing.T) {
	for _, e := range []AmountError{ErrAmountEmpty, ErrAmountSyntax, ErrAmountPrecision, ErrAmountNotPos, ErrAmountTooLarge, ErrAmountLeadingZero} {
		if e.Error() == "" || e.Error() != string(e) {
			t.Errorf("AmountError %q: Error() = %q", string(e), e.Error())
		}
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct {
		units int64
		exp   int
		want  string
	}{
		{1234, 2, "12.34"},
		{5, 2, "0.05"},
		{50, 2, "0.50"},
		{100, 2, "1.00"},
		{0, 2, "0.00"},
		{-5, 2, "-0.05"},
		{-1234, 2, "-12.34"},
		{-100, 2, "-1.00"},
		{5, 0, "5"},
		{0, 0, "0"},
		{-7, 0, "-7"},
		{1, 3, "0.001"},
		{12, 3, "0.012"},
		{1234, 3, "1.234"},
		{1000, 3, "1.000"},
		{-1, 3, "-0.001"},
		{0, 3, "0.000"},
		{AmountMax, 2, "9999999999999.99"},
		{AmountMax, 0, "999999999999999"},
		{AmountMax, 3, "999999999999.999"},
		{BalanceMax, 2, "46116860184273879.04"},
		{-BalanceMax, 0, "-4611686018427387904"},
		{math.MaxInt64, 2, "92233720368547758.07"},
		{-math.MaxInt64, 2, "-92233720368547758.07"},
	}
	for _, tt := range tests {
		if got := FormatAmount(tt.units, tt.exp); got != tt.want {
			t.Errorf("FormatAmount(%d, %d) = %q; want %q", tt.units, tt.exp, got, tt.want)
		}
		// AppendAmount appends after what dst holds and leaves that alone.
		if got := string(AppendAmount([]byte("x="), tt.units, tt.exp)); got != "x="+tt.want {
			t.Errorf("AppendAmount(\"x=\", %d, %d) = %q; want %q", tt.units, tt.exp, got, "x="+tt.want)
		}
	}
}

func TestAppendAmountMinInt64Panics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("AppendAmount(math.MinInt64) did not panic")
		}
	}()
	AppendAmount(nil, math.MinInt64, 2)
}

func TestAmountRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(u int64, e int) {
		t.Helper()
		s := FormatAmount(u, e)
		got, err := ParseAmount([]byte(s), e)
		if err != nil || got != u {
			t.Fatalf("ParseAmount(FormatAmount(%d, %d) = %q) = %d, %v", u, e, s, got, err)
		}
	}
	for _, e := range []int{0, 2, 3} {
		// Edges: 1, AmountMax and every power of ten in between.
		for u := int64(1); u <= AmountMax; u *= 10 {
			check(u, e)
			if u > 1 {
				check(u-1, e)
			}
		}
		check(AmountMax, e)
		for range 20_000 {
			// Uniform over [1, AmountMax], plus small values, which are
			// otherwise almost never drawn and exercise the zero padding.
			check(1+rng.Int64N(AmountMax), e)
			check(1+rng.Int64N(10_000), e)
		}
	}
}

func TestCurrencyExponent(t *testing.T) {
	tests := []struct {
		code string
		exp  int
		ok   bool
	}{
		{"USD", 2, true},
		{"EUR", 2, true},
		{"JPY", 0, true},
		{"KRW", 0, true},
		{"BHD", 3, true},
		{"KWD", 3, true},
		{"usd", 0, false}, // codes are upper case
		{"XAU", 0, false}, // precious metals are not account currencies
		{"XDR", 0, false},
		{"", 0, false},
		{"USDX", 0, false},
	}
	for _, tt := range tests {
		exp, ok := CurrencyExponent(tt.code)
		if exp != tt.exp || ok != tt.ok {
			t.Errorf("CurrencyExponent(%q) = %d, %v; want %d, %v", tt.code, exp, ok, tt.exp, tt.ok)
		}
	}
	// Every listed code is three upper-case letters with an exponent the
	// amount code handles.
	for code, e := range currencies {
		if len(code) != CurrencyLen || strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Errorf("currency %q is not a 3-letter upper-case code", code)
		}
		if e != 0 && e != 2 && e != 3 {
			t.Errorf("currency %q has exponent %d", code, e)
		}
	}
}

// decimalRE is what ParseAmount accepts syntactically: digits without a
// leading zero (but the one of "0.5") with at most one interior dot.
var decimalRE = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// referenceParse is a deliberately different implementation of ParseAmount's
// contract, through math/big: the text is a plain canonical decimal of at
// most 64 bytes, with at most exp decimals, whose value times 10^exp is an
// integer in [1, AmountMax].
func referenceParse(text string, exp int) (int64, bool) {
	if len(text) > 64 || !decimalRE.MatchString(text) {
		return 0, false
	}
	if dot := strings.IndexByte(text, '.'); dot >= 0 && len(text)-dot-1 > exp {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return 0, false
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	if !r.IsInt() {
		return 0, false
	}
	n := r.Num()
	if n.Sign() <= 0 || n.Cmp(big.NewInt(AmountMax)) > 0 {
		return 0, false
	}
	return n.Int64(), true
}

func TestParseAmountMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0000123456789..-e "
	for range 200_000 {
		n := 1 + rng.IntN(20)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		exp := rng.IntN(4)
		got, err := ParseAmount(b, exp)
		want, ok := referenceParse(string(b), exp)
		if (err == nil) != ok || got != want {
			t.Fatalf("ParseAmount(%q, %d) = %d, %v; reference says %d, %v", b, exp, got, err, want, ok)
		}
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"12.34", "0.05", "1.230", "1.235", "0", "-1", "1e2", ".5", "5.", "", "1..2", " 1",
		"9999999999999.99", "10000000000000", "007.50", "999999999999999", "0.010", "00001.00", "1.0", "1.00", "00", "0.5"} {
		for exp := range uint8(4) {
			f.Add(s, exp)
		}
	}
	f.Fuzz(func(t *testing.T, text string, exp uint8) {
		e := int(exp % 4)
		got, err := ParseAmount([]byte(text), e)
		want, ok := referenceParse(text, e)
		if (err == nil) != ok || got != want {
			t.Fatalf("ParseAmount(%q, %d) = %d, %v; reference says %d, %v", text, e, got, err, want, ok)
		}
		if err != nil {
			if _, isAmountErr := err.(AmountError); !isAmountErr {
				t.Fatalf("ParseAmount(%q, %d): error %v is not an AmountError", text, e, err)
			}
			return
		}
		if got < 1 || got > AmountMax {
			t.Fatalf("ParseAmount(%q, %d) = %d, out of [1, AmountMax]", text, e, got)
		}
		s := FormatAmount(got, e)
		again, err := ParseAmount([]byte(s), e)
		if err != nil || again != got {
			t.Fatalf("ParseAmount(FormatAmount(%d, %d) = %q) = %d, %v", got, e, s, again, err)
		}
	})
}
