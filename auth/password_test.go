package auth

import (
	"strings"
	"testing"
)

func TestHashAndVerifyPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	h1, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Fatalf("two hashes of one password are equal (%s): the salt is not random", h1)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %s: not argon2id with OWASP's minimum parameters", h1)
	}
	a, ok := parsePHC(h1)
	if !ok || len(a.salt) != argonSaltLen || len(a.key) != argonKeyLen {
		t.Fatalf("hash %s parses as %+v, %v", h1, a, ok)
	}
	for _, tc := range []struct {
		name, pw string
		want     bool
	}{
		{"the password", pw, true},
		{"another password", "correct horse battery stapler", false},
		{"another case", strings.ToUpper(pw), false},
		{"a prefix", pw[:len(pw)-1], false},
		{"empty", "", false},
	} {
		for _, h := range []string{h1, h2} {
			if ok, err := VerifyPassword(h, tc.pw); err != nil || ok != tc.want {
				t.Errorf("%s: VerifyPassword = %v, %v; want %v", tc.name, ok, err, tc.want)
			}
		}
	}
	if _, err := HashPassword(strings.Repeat("a", PasswordLenMax+1)); err == nil {
		t.Error("a password beyond PasswordLenMax hashed")
	}
}

// TestVerifyPasswordRefusesBadHashes: a stored hash out of form or
// beyond the bounds is an error before any hashing.
func TestVerifyPasswordRefusesBadHashes(t *testing.T) {
	const salt, key = "c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	good := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key
	if _, ok := parsePHC(good); !ok {
		t.Fatalf("the good hash %s is refused", good)
	}
	for _, tc := range []struct{ name, hash string }{
		{"empty", ""},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"another version", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key},
		{"memory beyond 256 MiB", "$argon2id$v=19$m=262145,t=2,p=1$" + salt + "$" + key},
		{"memory of 2^32", "$argon2id$v=19$m=4294967296,t=2,p=1$" + salt + "$" + key},
		{"memory below 8 KiB a lane", "$argon2id$v=19$m=15,t=1,p=2$" + salt + "$" + key},
		{"11 passes", "$argon2id$v=19$m=19456,t=11,p=1$" + salt + "$" + key},
		{"no pass", "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key},
		{"17 lanes", "$argon2id$v=19$m=19456,t=2,p=17$" + salt + "$" + key},
		{"no lane", "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key},
		{"a leading zero", "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key},
		{"a sign", "$argon2id$v=19$m=+19456,t=2,p=1$" + salt + "$" + key},
		{"parameters out of order", "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key},
		{"a parameter missing", "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key},
		{"a key id parameter", "$argon2id$v=19$m=19456,t=2,p=1,keyid=a$" + salt + "$" + key},
		{"no key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{"a field more", good + "$" + key},
		{"a salt of 4 bytes", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + key},
		{"a key of 8 bytes", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$a2V5a2V5a2U"},
		{"a key of 96 bytes", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.Repeat("a2V5", 32)},
		{"padded base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key},
		{"URL base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:len(key)-2] + "-_"},
		{"stray trailing bits", "$argon2id$v=19$m=19456,t=2,p=1$" + salt[:len(salt)-1] + "B$" + key},
		{"a carriage return in the key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$\r" + key},
		{"a newline in the salt", "$argon2id$v=19$m=19456,t=2,p=1$" + salt[:4] + "\n" + salt[4:] + "$" + key},
		{"too long", good + strings.Repeat("A", phcLenMax)},
	} {
		if a, ok := parsePHC(tc.hash); ok {
			t.Errorf("%s: %q parsed as %+v", tc.name, tc.hash, a)
		}
		if ok, err := VerifyPassword(tc.hash, "correct horse battery staple"); err == nil || ok {
			t.Errorf("%s: VerifyPassword = %v, %v; want an error", tc.name, ok, err)
		}
	}
}

func TestCheckPasswordRules(t *testing.T) {
	for _, tc := range []struct {
		name, pw string
		ok       bool
	}{
		{"12 bytes", "abcdefghijkl", true},
		{"11 bytes", "abcdefghijk", false},
		{"256 bytes", strings.Repeat("a", 256), true},
		{"257 bytes", strings.Repeat("a", 257), false},
		{"spaces and punctuation", "correct horse, battery staple!", true},
		{"non-ASCII", "pässwörd-überall", true},
		{"6 characters, 12 bytes", "éééééé", true},
		{"invalid UTF-8", "abcdefghijk\xff", false},
		{"a NUL", "abcdefghijk\x00", false},
		{"a newline", "abcdef\nghijkl", false},
		{"a tab", "abcdef\tghijkl", false},
		{"DEL", "abcdefghijk\x7f", false},
		{"a C1 control", "abcdefghijk\u0085", false},
	} {
		if err := CheckPasswordRules(tc.pw); (err == nil) != tc.ok {
			t.Errorf("%s: CheckPasswordRules = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestDummyHashHasCurrentParameters: Login's check against dummyHash costs
// what a real user's does.
func TestDummyHashHasCurrentParameters(t *testing.T) {
	a, ok := parsePHC(dummyHash)
	if !ok || a.memoryKiB != argonMemoryKiB || a.time != argonTime || a.threads != argonThreads ||
		len(a.salt) != argonSaltLen || len(a.key) != argonKeyLen {
		t.Fatalf("dummyHash parses as %+v, %v: not HashPassword's parameters", a, ok)
	}
}

// FuzzParsePHC: the parser never panics, accepts only parameters within
// the bounds, and what it accepts is exactly what HashPassword would
// write for those parameters.
func FuzzParsePHC(f *testing.F) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{h, dummyHash, "", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parsePHC(s)
		if !ok {
			return
		}
		if a.memoryKiB > argonMemoryKiBMax || a.memoryKiB < 8*uint32(a.threads) || a.time < 1 || a.time > argonTimeMax ||
			a.threads < 1 || a.threads > argonThreadsMax || len(a.salt) < argonSaltLenMin || len(a.salt) > argonSaltLenMax ||
			len(a.key) < argonKeyLenMin || len(a.key) > argonKeyLenMax {
			t.Fatalf("%q parsed beyond the bounds: %+v", s, a)
		}
		if again := a.String(); again != s {
			t.Fatalf("%q parsed and re-encoded as %q", s, again)
		}
	})
}
