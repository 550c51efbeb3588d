package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Passwords are hashed with argon2id and kept as PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// salt and key in unpadded standard base64. The parameters are OWASP's
// minimum for argon2id (19 MiB, two passes, one lane): a check costs some
// 20–50 ms and 19 MiB, which is why Login bounds how many run at once.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds on the parameters VerifyPassword accepts from a stored hash, so
// that a corrupt or hostile row cannot make a check allocate or run
// without bound.
const (
	argonMemoryKiBMax = 256 * 1024 // 256 MiB
	argonTimeMax      = 10
	argonThreadsMax   = 16
	argonSaltLenMin   = 8
	argonSaltLenMax   = 64
	argonKeyLenMin    = 16
	argonKeyLenMax    = 64
	// phcLenMax is longer than any string within the bounds above.
	phcLenMax = 256
)

// Password rules (CheckPasswordRules). The maximum bounds the work a login
// does before it hashes anything.
const (
	PasswordLenMin = 12  // bytes
	PasswordLenMax = 256 // bytes
)

var phcB64 = base64.RawStdEncoding.Strict()

// argonParams are the parameters and salt of a PHC string, and its key.
type argonParams struct {
	memoryKiB, time uint32
	threads         uint8
	salt, key       []byte
}

func (a *argonParams) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, a.memoryKiB, a.time, a.threads,
		phcB64.EncodeToString(a.salt), phcB64.EncodeToString(a.key))
}

// HashPassword hashes pw with a new random salt and returns the PHC
// string. It does not apply the password rules (CheckPasswordRules).
func HashPassword(pw string) (string, error) {
	if len(pw) > PasswordLenMax {
		return "", fmt.Errorf("auth: a password is at most %d bytes", PasswordLenMax)
	}
	a := argonParams{memoryKiB: argonMemoryKiB, time: argonTime, threads: argonThreads, salt: make([]byte, argonSaltLen)}
	rand.Read(a.salt) //nolint:errcheck // crypto/rand.Read never fails (it panics)
	a.key = argon2.IDKey([]byte(pw), a.salt, a.time, a.memoryKiB, a.threads, argonKeyLen)
	return a.String(), nil
}

// errBadHash is VerifyPassword's error for a stored hash it cannot read.
var errBadHash = errors.New("auth: the stored password hash is not an argon2id PHC string within bounds")

// VerifyPassword reports whether pw is the password encoded hashes. The
// parameters come from encoded, within bounds (errBadHash beyond them);
// the keys are compared in constant time.
func VerifyPassword(encoded, pw string) (bool, error) {
	a, ok := parsePHC(encoded)
	if !ok {
		return false, errBadHash
	}
	key := argon2.IDKey([]byte(pw), a.salt, a.time, a.memoryKiB, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(key, a.key) == 1, nil
}

// parsePHC reads an argon2id PHC string in the one form HashPassword
// writes (fields in its order, decimal numbers without leading zeros,
// canonical base64), so that what it accepts re-encodes to itself, and
// refuses parameters beyond the bounds.
func parsePHC(s string) (argonParams, bool) {
	var a argonParams
	if len(s) > phcLenMax {
		return a, false
	}
	rest, ok := strings.CutPrefix(s, "$argon2id$v=")
	if !ok {
		return a, false
	}
	fields := strings.Split(rest, "$")
	if len(fields) != 4 {
		return a, false
	}
	if v, ok := phcUint(fields[0], "", 0xff); !ok || v != argon2.Version {
		return a, false
	}
	params := strings.Split(fields[1], ",")
	if len(params) != 3 {
		return a, false
	}
	m, okM := phcUint(params[0], "m=", argonMemoryKiBMax)
	t, okT := phcUint(params[1], "t=", argonTimeMax)
	p, okP := phcUint(params[2], "p=", argonThreadsMax)
	// argon2 needs at least 8 KiB of memory a lane.
	if !okM || !okT || !okP || t < 1 || p < 1 || m < 8*p {
		return a, false
	}
	a.memoryKiB, a.time, a.threads = uint32(m), uint32(t), uint8(p)
	// The decoder skips CR and LF; a stored hash has none.
	if strings.ContainsAny(fields[2], "\r\n") || strings.ContainsAny(fields[3], "\r\n") {
		return argonParams{}, false
	}
	var err error
	if a.salt, err = phcB64.DecodeString(fields[2]); err != nil || len(a.salt) < argonSaltLenMin || len(a.salt) > argonSaltLenMax {
		return argonParams{}, false
	}
	if a.key, err = phcB64.DecodeString(fields[3]); err != nil || len(a.key) < argonKeyLenMin || len(a.key) > argonKeyLenMax {
		return argonParams{}, false
	}
	return a, true
}

// phcUint reads "<name><decimal>" with a decimal of at most max and no
// sign or leading zero.
func phcUint(s, name string, max uint64) (uint64, bool) {
	digits, ok := strings.CutPrefix(s, name)
	if !ok || digits == "" || len(digits) > 10 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

// CheckPasswordRules reports why pw may not be a password, or nil:
// PasswordLenMin to PasswordLenMax bytes of valid UTF-8 without control
// characters. The error is fit to show whoever chose the password.
func CheckPasswordRules(pw string) error {
	switch {
	case len(pw) < PasswordLenMin:
		return fmt.Errorf("a password is at least %d bytes", PasswordLenMin)
	case len(pw) > PasswordLenMax:
		return fmt.Errorf("a password is at most %d bytes", PasswordLenMax)
	case !utf8.ValidString(pw):
		return errors.New("a password must be valid UTF-8")
	}
	for _, r := range pw {
		if unicode.IsControl(r) {
			return errors.New("a password may not contain control characters")
		}
	}
	return nil
}
