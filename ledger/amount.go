package ledger

import (
	"strconv"
)

// AmountMax is the largest amount, in minor units, that one command may move.
// It keeps every sum of a few amounts far from int64 overflow and is larger
// than any single payment a bank processes (10^15 minor units is ten trillion
// dollars).
const AmountMax int64 = 999_999_999_999_999

// BalanceMax bounds the absolute value of a balance. A credit that would take a
// balance past it is refused with BALANCE_LIMIT_EXCEEDED instead of
// overflowing.
const BalanceMax int64 = 1 << 62

// currencies maps ISO 4217 alphabetic codes to their minor-unit exponent. The
// list covers the actively traded currencies; funds codes and precious metals
// (XAU, XDR, …) are left out on purpose because they are not account
// currencies.
var currencies = map[string]int{
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2,
	"AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0,
	"BMD": 2, "BND": 2, "BOB": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2,
	"BZD": 2, "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0, "CNY": 2, "COP": 2, "CRC": 2,
	"CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2,
	"ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2,
	"GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2,
	"HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2,
	"JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0,
	"KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2,
	"LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2,
	"MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2,
	"NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2,
	"PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2,
	"RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2,
	"SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2,
	"SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2,
	"TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "UYU": 2, "UZS": 2, "VES": 2,
	"VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XOF": 0, "XPF": 0, "YER": 2,
	"ZAR": 2, "ZMW": 2, "ZWL": 2,
}

// CurrencyExponent returns the number of minor-unit digits of an ISO 4217
// currency code and whether the code is known. Codes are upper case.
func CurrencyExponent(code string) (int, bool) {
	e, ok := currencies[code]
	return e, ok
}

// AmountError says why an amount text was refused. Each value maps to the
// INVALID_AMOUNT code; the text is for the message.
type AmountError string

func (e AmountError) Error() string { return string(e) }

const (
	ErrAmountEmpty       AmountError = "amount is empty"
	ErrAmountSyntax      AmountError = "amount is not a decimal number"
	ErrAmountPrecision   AmountError = "amount has more decimals than the currency allows"
	ErrAmountNotPos      AmountError = "amount must be greater than zero"
	ErrAmountTooLarge    AmountError = "amount is too large"
	ErrAmountLeadingZero AmountError = "amount has a leading zero"
)

// ParseAmount parses a positive decimal text in canonical form into minor
// units of a currency with the given exponent: digits, with no leading zero
// but the one before the dot ("0.5"), and at most exponent decimals ("12",
// "12.3" and "12.34" for a 2-digit currency; "12.340" and "007.50" are
// refused, as are "1e2", ".5" and "5."). Fewer decimals than the exponent
// are canonical enough: "1.0" and "1" are both one unit. One text per
// value, up to those short forms, means a log, a proxy and an audit trail
// cannot read two amounts into one request.
//
// It never goes through float64: digits are accumulated as integers, so
// every accepted text maps to exactly one integer.
func ParseAmount(text []byte, exponent int) (int64, error) {
	if len(text) == 0 {
		return 0, ErrAmountEmpty
	}
	if len(text) > 64 {
		return 0, ErrAmountTooLarge
	}
	var (
		units   int64
		frac    int // fraction digits consumed, scaled into units
		seenDot bool
		digits  int
	)
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '.':
			if seenDot || digits == 0 || i == len(text)-1 {
				return 0, ErrAmountSyntax
			}
			seenDot = true
		case c >= '0' && c <= '9':
			// A digit after a leading zero of the integer part.
			if digits == 1 && !seenDot && text[0] == '0' {
				return 0, ErrAmountLeadingZero
			}
			digits++
			d := int64(c - '0')
			if seenDot {
				if frac == exponent {
					return 0, ErrAmountPrecision
				}
				frac++
			}
			if units > (AmountMax-d)/10 {
				return 0, ErrAmountTooLarge
			}
			units = units*10 + d
		case c == '-':
			if i == 0 {
				return 0, ErrAmountNotPos
			}
			return 0, ErrAmountSyntax
		default:
			return 0, ErrAmountSyntax
		}
	}
	if digits == 0 {
		return 0, ErrAmountSyntax
	}
	for ; frac < exponent; frac++ {
		if units > AmountMax/10 {
			return 0, ErrAmountTooLarge
		}
		units *= 10
	}
	if units == 0 {
		return 0, ErrAmountNotPos
	}
	return units, nil
}

// AppendAmount appends the exact decimal text of a minor-unit amount (which may
// be negative) with the given exponent: 1234 with exponent 2 is "12.34",
// 5 with exponent 0 is "5".
func AppendAmount(dst []byte, units int64, exponent int) []byte {
	if units < 0 {
		dst = append(dst, '-')
		if units == -units { // math.MinInt64 cannot be negated; it never occurs (BalanceMax).
			panic("ledger: amount out of range")
		}
		units = -units
	}
	var buf [24]byte
	s := strconv.AppendInt(buf[:0], units, 10)
	if exponent == 0 {
		return append(dst, s...)
	}
	if len(s) <= exponent {
		dst = append(dst, '0', '.')
		for i := len(s); i < exponent; i++ {
			dst = append(dst, '0')
		}
		return append(dst, s...)
	}
	dst = append(dst, s[:len(s)-exponent]...)
	dst = append(dst, '.')
	return append(dst, s[len(s)-exponent:]...)
}

// FormatAmount is AppendAmount into a new string.
func FormatAmount(units int64, exponent int) string {
	return string(AppendAmount(nil, units, exponent))
}
