package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bursar/bursar/storage"
	"github.com/google/uuid"
)

func TestParseRole(t *testing.T) {
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Admin", "root", "customer "} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}

func TestRoleScopes(t *testing.T) {
	for _, tc := range []struct {
		role    Role
		want    []Scope
		allowed []Scope // beyond want, through admin
	}{
		{RoleAdmin, []Scope{Admin}, Scopes},
		{RoleOperator, []Scope{Cluster, MetricsRead, AccountsRead, TransactionsRead}, nil},
		{RoleTeller, []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite}, nil},
		{RoleCustomer, []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite}, nil},
		{"root", nil, nil},
	} {
		got := tc.role.Scopes()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: scopes %v, want %v", tc.role, got, tc.want)
		}
		p := Principal{UserID: uuid.NewString(), Role: tc.role, scopes: got}
		for _, s := range Scopes {
			if want := slices.Contains(tc.want, s) || slices.Contains(tc.allowed, s); p.Allows(s) != want {
				t.Errorf("%s: Allows(%s) = %v", tc.role, s, !want)
			}
		}
	}
	// A new slice each call: a caller changing one changes no role.
	s := RoleTeller.Scopes()
	s[0] = Admin
	if RoleTeller.Scopes()[0] != AccountsRead {
		t.Fatal("Role.Scopes shares its slice")
	}
}

func TestPrincipal(t *testing.T) {
	id := uuid.NewString()
	for _, tc := range []struct {
		name   string
		p      Principal
		str    string
		isUser bool
		owner  string
	}{
		{"API key", Principal{KeyID: "abcdefghijklmnop", Name: "ci"}, "apikey:abcdefghijklmnop", false, ""},
		{"admin", Principal{UserID: id, Name: "root", Role: RoleAdmin}, "user:" + id, true, ""},
		{"operator", Principal{UserID: id, Name: "ops", Role: RoleOperator}, "user:" + id, true, ""},
		{"teller", Principal{UserID: id, Name: "tess", Role: RoleTeller}, "user:" + id, true, ""},
		{"customer", Principal{UserID: id, Name: "carl", Role: RoleCustomer}, "user:" + id, true, id},
	} {
		if got := tc.p.String(); got != tc.str || len(got) > 64 {
			t.Errorf("%s: String() = %q, want %q", tc.name, got, tc.str)
		}
		if tc.p.IsUser() != tc.isUser || tc.p.Owner() != tc.owner {
			t.Errorf("%s: IsUser %v, Owner %q; want %v, %q", tc.name, tc.p.IsUser(), tc.p.Owner(), tc.isUser, tc.owner)
		}
	}
}

func TestNewUser(t *testing.T) {
	const pw = "a long enough password"
	for _, tc := range []struct {
		name, username, pw string
		role               Role
		want               string // the stored username; "" for a refusal
		field              string // the field refused
	}{
		{"lower case", "alice", pw, RoleTeller, "alice", ""},
		{"lower-cased", "Alice.Smith@Example-Bank_1", pw, RoleCustomer, "alice.smith@example-bank_1", ""},
		{"3 characters", "abc", pw, RoleAdmin, "abc", ""},
		{"64 characters", strings.Repeat("a", 64), pw, RoleOperator, strings.Repeat("a", 64), ""},
		{"2 characters", "ab", pw, RoleTeller, "", "username"},
		{"65 characters", strings.Repeat("a", 65), pw, RoleTeller, "", "username"},
		{"a space", "alice smith", pw, RoleTeller, "", "username"},
		{"a slash", "alice/smith", pw, RoleTeller, "", "username"},
		{"non-ASCII", "alicé", pw, RoleTeller, "", "username"},
		{"the Kelvin sign", "\u212aelvin", pw, RoleTeller, "", "username"},
		{"a short password", "alice", "short", RoleTeller, "", "password"},
		{"a control character", "alice", pw + "\n", RoleTeller, "", "password"},
		{"an unknown role", "alice", pw, "root", "", "role"},
	} {
		u, err := NewUser(tc.username, tc.pw, tc.role, "apikey:abcdefghijklmnop")
		if tc.want == "" {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Errorf("%s: %+v, %v; want a refusal of the %s", tc.name, u, err, tc.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if _, err := uuid.Parse(u.ID); err != nil || u.Username != tc.want || u.Role != string(tc.role) || u.CreatedBy != "apikey:abcdefghijklmnop" {
			t.Errorf("%s: %+v", tc.name, u)
		}
		if ok, err := VerifyPassword(u.PasswordHash, tc.pw); !ok || err != nil {
			t.Errorf("%s: the password does not verify against the hash: %v %v", tc.name, ok, err)
		}
	}
}

// TestTokenTTLMaxWithinDisabledWindow: a disabled user stays loaded for
// longer than any token of theirs can be valid.
func TestTokenTTLMaxWithinDisabledWindow(t *testing.T) {
	if TokenTTLMax+2*tokenLeeway >= storage.DisabledUsersWindow {
		t.Fatalf("TokenTTLMax %s (and leeway %s) reaches storage.DisabledUsersWindow %s", TokenTTLMax, tokenLeeway, storage.DisabledUsersWindow)
	}
}

const testPassword = "correct horse battery staple"

// addUser stores a user with testPassword.
func addUser(t *testing.T, s *storage.Store, name string, role Role) storage.User {
	t.Helper()
	u, err := NewUser(name, testPassword, role, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func newTestVerifier(t *testing.T, s Source) *Verifier {
	t.Helper()
	v, err := NewVerifier(context.Background(), s, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLogin: the right password gets a token that Check accepts as the
// user with their role's scopes; a wrong password, an unknown user and a
// disabled user get one error alike; the counters count them; a token
// issued before the disabling is refused from the next reload on.
func TestLogin(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	alice := addUser(t, s, "alice", RoleCustomer)
	addUser(t, s, "olga", RoleOperator)
	v := newTestVerifier(t, s)

	token, expires, p, err := v.Login(ctx, s, "Alice", testPassword, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != alice.ID || p.Name != "alice" || p.Role != RoleCustomer || p.Owner() != alice.ID || p.String() != "user:"+alice.ID {
		t.Fatalf("login principal %+v", p)
	}
	if d := time.Until(expires); d <= 58*time.Minute || d > time.Hour {
		t.Fatalf("a 1 h token expires in %s", d)
	}
	got, err := v.Check(ctx, []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != alice.ID || got.Name != "alice" || got.Role != RoleCustomer || got.KeyID != "" ||
		!got.Allows(TransactionsWrite) || got.Allows(Cluster) || got.Allows(Admin) {
		t.Fatalf("checked principal %+v", got)
	}
	if got, err := v.CheckLoaded([]byte(token)); err != nil || got.UserID != alice.ID {
		t.Fatalf("CheckLoaded: %+v %v", got, err)
	}
	if _, _, p, err := v.Login(ctx, s, "olga", testPassword, 10*time.Minute); err != nil || !p.Allows(Cluster) || p.Allows(AccountsWrite) {
		t.Fatalf("operator: %+v %v", p, err)
	}

	if _, err := s.DisableUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, username, password string }{
		{"wrong password", "olga", testPassword + "!"},
		{"empty password", "olga", ""},
		{"unknown user", "mallory", testPassword},
		{"invalid username", "no such user", testPassword},
		{"password beyond the maximum", "olga", strings.Repeat("a", PasswordLenMax+1)},
		{"disabled user", "alice", testPassword},
	} {
		token, _, p, err := v.Login(ctx, s, tc.username, tc.password, time.Hour)
		if !errors.Is(err, ErrBadLogin) || token != "" || p != nil {
			t.Errorf("%s: %q %+v %v, want ErrBadLogin", tc.name, token, p, err)
		}
	}
	if n, f := v.Logins.Load(), v.LoginFailures.Load(); n != 2 || f != 6 {
		t.Fatalf("counted %d logins and %d failures, want 2 and 6", n, f)
	}
	for _, ttl := range []time.Duration{0, time.Second, TokenTTLMax + time.Second} {
		if _, _, _, err := v.Login(ctx, s, "olga", testPassword, ttl); err == nil || errors.Is(err, ErrBadLogin) {
			t.Errorf("TTL %s: %v, want a refusal of the TTL", ttl, err)
		}
	}

	// Alice's token was issued before the disabling: it works until the
	// next reload, and is refused from then on.
	if _, err := v.CheckLoaded([]byte(token)); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	if err := v.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func() (*Principal, error){
		"Check":       func() (*Principal, error) { return v.Check(ctx, []byte(token)) },
		"CheckLoaded": func() (*Principal, error) { return v.CheckLoaded([]byte(token)) },
	} {
		if p, err := check(); !errors.Is(err, ErrUserDisabled) || p != nil {
			t.Fatalf("%s of a disabled user's token: %+v %v, want ErrUserDisabled", name, p, err)
		}
	}
}

// TestLoginBusy: with every turn taken, a login waits LoginWaitMax and is
// refused with ErrLoginBusy, counted; once a turn is free it goes through.
func TestLoginBusy(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addUser(t, s, "alice", RoleTeller)
	v := newTestVerifier(t, s)
	for range LoginsMax {
		v.logins <- struct{}{} // stands for a password check under way
	}
	if _, _, _, err := v.Login(ctx, s, "alice", testPassword, time.Hour); !errors.Is(err, ErrLoginBusy) {
		t.Fatalf("login with every turn taken: %v, want ErrLoginBusy", err)
	}
	if b, f := v.LoginBusy.Load(), v.LoginFailures.Load(); b != 1 || f != 0 {
		t.Fatalf("busy %d, failures %d; want 1 and 0", b, f)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := v.Login(cancelled, s, "alice", testPassword, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("login with every turn taken and its context cancelled: %v", err)
	}
	v.releaseLogin()
	if _, _, _, err := v.Login(ctx, s, "alice", testPassword, time.Hour); err != nil {
		t.Fatalf("login with a turn free: %v", err)
	}
}

// TestFirstLoginsCreateOneKey: a node with no signing key creates one at
// its first login, one only however many log in at once, and signs with
// it.
func TestFirstLoginsCreateOneKey(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addUser(t, s, "alice", RoleTeller)
	v := newTestVerifier(t, s)
	if string(v.JWKS()) != `{"keys":[]}` {
		t.Fatalf("JWKS with no key: %s", v.JWKS())
	}
	var wg sync.WaitGroup
	tokens := make([]string, LoginsMax)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _, _, err := v.Login(ctx, s, "alice", testPassword, time.Hour)
			if err != nil {
				t.Errorf("login %d: %v", i, err)
			}
			tokens[i] = tok
		}()
	}
	wg.Wait()
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("signing keys after the first logins: %d, %v; want 1", len(keys), err)
	}
	for i, tok := range tokens {
		if kid := tokenKid(t, tok); kid != keys[0].ID {
			t.Errorf("token %d has kid %q, want %q", i, kid, keys[0].ID)
		}
		if _, err := v.Check(ctx, []byte(tok)); err != nil {
			t.Errorf("token %d: %v", i, err)
		}
	}
}
