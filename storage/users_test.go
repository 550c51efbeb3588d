package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

func newUser(name, role string) storage.User {
	return storage.User{ID: uuid.NewString(), Username: name, PasswordHash: "$argon2id$not-checked-here", Role: role, CreatedBy: "apikey:test"}
}

// TestUsers: a user is stored lower-cased and found in any case; a name
// taken in any case is ErrUserExists; an unknown name is ErrUserNotFound;
// disabling is found at once and listed among the disabled IDs.
func TestUsers(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	alice := newUser("Alice", "teller")
	if err := s.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, newUser("bob", "customer")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, newUser("ALICE", "admin")); !errors.Is(err, storage.ErrUserExists) {
		t.Fatalf("a taken name in another case: %v, want ErrUserExists", err)
	}
	got, err := s.UserByName(ctx, "aLiCe")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != alice.ID || got.Username != "alice" || got.Role != "teller" || got.PasswordHash != alice.PasswordHash ||
		got.CreatedBy != "apikey:test" || got.CreatedAt.IsZero() || got.Disabled() {
		t.Fatalf("alice read back as %+v", got)
	}
	if _, err := s.UserByName(ctx, "carol"); !errors.Is(err, storage.ErrUserNotFound) {
		t.Fatalf("unknown user: %v, want ErrUserNotFound", err)
	}
	noCreator := newUser("dave", "operator")
	noCreator.CreatedBy = ""
	if err := s.CreateUser(ctx, noCreator); err != nil {
		t.Fatal(err)
	}
	if u, err := s.UserByName(ctx, "dave"); err != nil || u.CreatedBy != "" {
		t.Fatalf("a user created by nobody: %+v %v", u, err)
	}

	users, err := s.Users(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if !slices.Equal(names, []string{"alice", "bob", "dave"}) {
		t.Fatalf("users %v, want alice, bob, dave by name", names)
	}
	if users, err := s.Users(ctx, 2); err != nil || len(users) != 2 {
		t.Fatalf("users with limit 2: %d, %v", len(users), err)
	}

	if ids, err := s.DisabledUserIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("disabled users before any disabling: %v %v", ids, err)
	}
	for range 2 { // the second time is a no-op
		if ok, err := s.DisableUser(ctx, "ALICE"); err != nil || !ok {
			t.Fatalf("disable alice: %v %v", ok, err)
		}
	}
	if ok, err := s.DisableUser(ctx, "carol"); err != nil || ok {
		t.Fatalf("disable an unknown user: %v %v", ok, err)
	}
	if u, err := s.UserByName(ctx, "alice"); err != nil || !u.Disabled() {
		t.Fatalf("alice after disabling: %+v %v", u, err)
	}
	if ids, err := s.DisabledUserIDs(ctx); err != nil || !slices.Equal(ids, []string{alice.ID}) {
		t.Fatalf("disabled users %v %v, want [%s]", ids, err, alice.ID)
	}
	// Disabled longer ago than any token lives: no longer loaded.
	if _, err := s.Pool().Exec(ctx, `UPDATE users SET disabled_at = now() - make_interval(secs => $1) - interval '1 minute'`,
		storage.DisabledUsersWindow.Seconds()); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.DisabledUserIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("users disabled before the window: %v %v", ids, err)
	}
}

// TestUsersTableRefusesBadRows: the table's checks hold whatever a
// caller sends.
func TestUsersTableRefusesBadRows(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	for _, tc := range []struct {
		name string
		u    storage.User
	}{
		{"unknown role", newUser("eve", "root")},
		{"empty role", newUser("eve", "")},
		{"too short a name", newUser("ev", "teller")},
		{"not a UUID", storage.User{ID: "eve", Username: "eve", PasswordHash: "x", Role: "teller"}},
	} {
		if err := s.CreateUser(ctx, tc.u); err == nil || errors.Is(err, storage.ErrUserExists) {
			t.Errorf("%s: %v, want a refusal", tc.name, err)
		}
	}
	// Lower-cased by CreateUser; and the table refuses an upper-case name
	// written past it.
	if _, err := s.Pool().Exec(ctx, `INSERT INTO users (user_id, username, password_hash, role) VALUES ($1, 'Eve', 'x', 'teller')`, uuid.New()); err == nil {
		t.Fatal("an upper-case username written directly was accepted")
	}
}

func signingKey(i int) storage.SigningKey {
	return storage.SigningKey{ID: fmt.Sprintf("kid%02d", i), Algorithm: "EdDSA",
		PrivateKey: bytes.Repeat([]byte{byte(i)}, 32), PublicKey: bytes.Repeat([]byte{byte(i + 100)}, 32)}
}

// TestSigningKeys: keys come back newest first, without the retired ones,
// at most SigningKeysMax; retiring is idempotent; the table refuses keys
// of another algorithm or size.
func TestSigningKeys(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if keys, err := s.SigningKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("signing keys of a new database: %v %v", keys, err)
	}
	for i := range 3 {
		if err := s.AddSigningKey(ctx, signingKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddSigningKey(ctx, signingKey(1)); err == nil {
		t.Fatal("a kid added twice")
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].ID != "kid02" || keys[2].ID != "kid00" {
		t.Fatalf("signing keys %+v, want kid02, kid01, kid00", keys)
	}
	want := signingKey(2)
	if k := keys[0]; k.Algorithm != "EdDSA" || !bytes.Equal(k.PrivateKey, want.PrivateKey) || !bytes.Equal(k.PublicKey, want.PublicKey) ||
		k.CreatedAt.IsZero() || k.RetiredAt != nil {
		t.Fatalf("kid02 read back as %+v", k)
	}
	for range 2 {
		if ok, err := s.RetireSigningKey(ctx, "kid01"); err != nil || !ok {
			t.Fatalf("retire kid01: %v %v", ok, err)
		}
	}
	if ok, err := s.RetireSigningKey(ctx, "nosuchkid"); err != nil || ok {
		t.Fatalf("retire an unknown kid: %v %v", ok, err)
	}
	keys, err = s.SigningKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "kid02" || keys[1].ID != "kid00" {
		t.Fatalf("signing keys after retiring kid01: %+v %v", keys, err)
	}

	for i := 3; i < storage.SigningKeysMax+5; i++ {
		if err := s.AddSigningKey(ctx, signingKey(i)); err != nil {
			t.Fatal(err)
		}
	}
	keys, err = s.SigningKeys(ctx)
	if err != nil || len(keys) != storage.SigningKeysMax {
		t.Fatalf("%d signing keys, %v; want %d", len(keys), err, storage.SigningKeysMax)
	}
	if newest := fmt.Sprintf("kid%02d", storage.SigningKeysMax+4); keys[0].ID != newest {
		t.Fatalf("newest key %s, want %s", keys[0].ID, newest)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i].CreatedAt.After(keys[i-1].CreatedAt) {
			t.Fatalf("keys not newest first: %s after %s", keys[i].ID, keys[i-1].ID)
		}
	}

	bad := signingKey(90)
	bad.Algorithm = "HS256"
	short := signingKey(91)
	short.PublicKey = short.PublicKey[:31]
	for name, k := range map[string]storage.SigningKey{"another algorithm": bad, "a short public key": short} {
		if err := s.AddSigningKey(ctx, k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
