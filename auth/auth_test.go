package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
)

func openStore(t *testing.T) *storage.Store {
	t.Helper()
	ctx := context.Background()
	s, err := storage.Open(ctx, storage.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// create stores a new key with scopes and returns its token and ID.
func create(t *testing.T, s *storage.Store, name string, scopes ...Scope) (string, string) {
	t.Helper()
	token, id, hash := NewToken()
	if err := s.CreateAPIKey(context.Background(), storage.APIKey{ID: id, Name: name, Hash: hash[:], Scopes: Names(scopes)}); err != nil {
		t.Fatal(err)
	}
	return token, id
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestTokensAreWellFormedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		token, id, hash := NewToken()
		if len(token) != TokenLen || !strings.HasPrefix(token, Prefix) {
			t.Fatalf("token %q: length %d, want %d with prefix %s", token, len(token), TokenLen, Prefix)
		}
		got, ok := KeyID([]byte(token))
		if !ok || got != id || Hash(token) != hash {
			t.Fatalf("token %q: KeyID %q %v, want %q", token, got, ok, id)
		}
		if seen[id] || seen[token] {
			t.Fatalf("token or ID minted twice: %s", token)
		}
		seen[id], seen[token] = true, true
	}
}

func TestKeyIDRefusesMalformedTokens(t *testing.T) {
	good, _, _ := NewToken()
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"prefix only", Prefix},
		{"wrong prefix", "bsx_" + good[4:]},
		{"upper case", strings.ToUpper(good)},
		{"one short", good[:len(good)-1]},
		{"one long", good + "a"},
		{"no separator", good[:len(Prefix)+idLen] + "a" + good[len(Prefix)+idLen+1:]},
		{"outside the alphabet", good[:len(good)-1] + "1"},
		{"a space", good[:10] + " " + good[11:]},
		{"a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
	} {
		if _, ok := KeyID([]byte(tc.token)); ok {
			t.Errorf("%s: %q accepted", tc.name, tc.token)
		}
	}
}

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Scope
		bad  bool
	}{
		{"accounts:read", []Scope{AccountsRead}, false},
		{"accounts:read, transactions:write,accounts:read", []Scope{AccountsRead, TransactionsWrite}, false},
		{"all", []Scope{AccountsRead, AccountsWrite, TransactionsRead, TransactionsWrite, MetricsRead}, false},
		{"admin", []Scope{Admin}, false},
		{"", nil, true},
		{"accounts:delete", nil, true},
		{"ADMIN", nil, true},
	} {
		got, err := ParseScopes(tc.in)
		if (err != nil) != tc.bad || strings.Join(Names(got), ",") != strings.Join(Names(tc.want), ",") {
			t.Errorf("ParseScopes(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestVerifier: a live key is accepted with its scopes, admin carries
// every scope, a revoked key stops working at the next reload, and an
// unknown or malformed one is refused; a key created after the load works
// at once (a miss reloads); while PostgreSQL is down the keys loaded stay.
func TestVerifier(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	reader, readerID := create(t, s, "reader", AccountsRead, TransactionsRead)
	admin, _ := create(t, s, "root", Admin)
	v, err := NewVerifier(ctx, s, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Check(ctx, []byte(reader))
	if err != nil || p.KeyID != readerID || p.Name != "reader" {
		t.Fatalf("reader: %+v %v", p, err)
	}
	if !p.Allows(AccountsRead) || !p.Allows(TransactionsRead) || p.Allows(TransactionsWrite) || p.Allows(Admin) {
		t.Fatalf("reader's scopes wrong: %+v", p)
	}
	if p, err := v.Check(ctx, []byte(admin)); err != nil || !p.Allows(TransactionsWrite) || !p.Allows(MetricsRead) {
		t.Fatalf("admin: %+v %v", p, err)
	}
	// Created after the load: found by the miss's reload.
	late, _ := create(t, s, "late", TransactionsWrite)
	if _, err := v.Check(ctx, []byte(late)); err != nil {
		t.Fatalf("a key created after the load: %v", err)
	}
	// A forged token with a real key ID and another secret.
	forged := reader[:len(Prefix)+idLen+1] + strings.Repeat("a", secretLen)
	for name, tok := range map[string]string{"malformed": "Bearer nope", "unknown ID": func() string { t, _, _ := NewToken(); return t }(), "forged secret": forged} {
		if _, err := v.Check(ctx, []byte(tok)); err == nil {
			t.Errorf("%s token accepted", name)
		}
	}
	// Revoked: refused once reloaded (Run's refresh; here by hand).
	if err := s.RevokeAPIKey(ctx, readerID); err != nil {
		t.Fatal(err)
	}
	if err := v.load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Check(ctx, []byte(reader)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked key: %v, want ErrRevoked", err)
	}
	if err := s.RevokeAPIKey(ctx, "nosuchkeyid00000"); !errors.Is(err, storage.ErrNoSuchKey) {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	// PostgreSQL gone: the keys loaded keep working, the failure counted.
	loads := v.LoadErrors.Load()
	s.Close()
	if err := v.load(ctx); err == nil || v.LoadErrors.Load() != loads+1 {
		t.Fatalf("load with the store closed: %v, errors %d", err, v.LoadErrors.Load())
	}
	if _, err := v.Check(ctx, []byte(admin)); err != nil {
		t.Fatalf("a loaded key while PostgreSQL is down: %v", err)
	}
}

// TestUnknownKeysShareReloads: a flood of tokens with unknown IDs costs
// about one reload a second, shared by every miss waiting meanwhile, not
// one per request; and a key created right after a miss's reload is still
// found by the next miss (it waits for the next reload instead of being
// refused).
func TestUnknownKeysShareReloads(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	v, err := NewVerifier(ctx, s, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	before := v.Loads.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _, _ := NewToken()
			if _, err := v.Check(ctx, []byte(tok)); !errors.Is(err, ErrUnknown) {
				t.Errorf("unknown key: %v", err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if n := v.Loads.Load() - before; n < 1 || int64(n) > 2+int64(took/missReloadEvery) {
		t.Fatalf("200 unknown keys caused %d reloads in %s", n, took)
	}
	// A miss just reloaded; a key created now is found by the next miss.
	unknown, _, _ := NewToken()
	v.Check(ctx, []byte(unknown)) //nolint:errcheck // refused: it makes the reload
	fresh, _ := create(t, s, "fresh", AccountsRead)
	if _, err := v.Check(ctx, []byte(fresh)); err != nil {
		t.Fatalf("a key created just after a miss's reload: %v", err)
	}
}

// loadSignal is the store as the verifier's Source, signalling each load
// it answered: the test wakes on a reload instead of polling for one.
type loadSignal struct {
	*storage.Store
	loaded chan struct{}
}

func (l loadSignal) LiveAPIKeys(ctx context.Context) ([]storage.APIKey, error) {
	keys, err := l.Store.LiveAPIKeys(ctx)
	if err == nil {
		select {
		case l.loaded <- struct{}{}:
		default:
		}
	}
	return keys, err
}

// TestRunRevokesWithinTheRefresh: a key revoked in PostgreSQL stops
// working on a running verifier at its next periodic reload.
func TestRunRevokesWithinTheRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openStore(t)
	tok, id := create(t, s, "soon revoked", AccountsRead)
	src := loadSignal{Store: s, loaded: make(chan struct{}, 1)}
	v, err := NewVerifier(ctx, src, 100*time.Millisecond, quiet)
	if err != nil {
		t.Fatal(err)
	}
	<-src.loaded // NewVerifier's own load
	go v.Run(ctx)
	if _, err := v.Check(ctx, []byte(tok)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The first reload signalled may have queried before the revocation;
	// the second started after it.
	deadline := time.After(10 * time.Second)
	for range 2 {
		select {
		case <-src.loaded:
		case <-deadline:
			t.Fatal("no periodic reload within 10 s with a 100 ms refresh")
		}
	}
	if _, err := v.Check(ctx, []byte(tok)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a revoked key after two periodic reloads: %v, want ErrRevoked", err)
	}
}

func TestCreateRefusesBeyondTheLimit(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	// Fill to the limit in one statement, then one more is refused.
	if _, err := s.Pool().Exec(ctx, `INSERT INTO api_keys (key_id, name, token_hash, scopes)
SELECT 'k' || g, 'bulk', decode(repeat('00', 32), 'hex'), '{accounts:read}' FROM generate_series(1, $1) g`, storage.APIKeysMax); err != nil {
		t.Fatal(err)
	}
	_, id, hash := NewToken()
	if err := s.CreateAPIKey(ctx, storage.APIKey{ID: id, Name: "one more", Hash: hash[:], Scopes: []string{"admin"}}); !errors.Is(err, storage.ErrTooManyKeys) {
		t.Fatalf("key beyond the limit: %v, want ErrTooManyKeys", err)
	}
}

func FuzzCheck(f *testing.F) {
	good, _, _ := NewToken()
	for _, seed := range []string{good, "", Prefix, "Bearer " + good, good[:len(good)-1] + "\x00", strings.Repeat("a", TokenLen)} {
		f.Add([]byte(seed))
	}
	// No store: the keys count as loaded after every miss, which then
	// does not reload.
	v := &Verifier{keys: map[string]key{}, log: quiet, loadedAt: time.Now().Add(time.Hour), reload: make(chan struct{}, 1)}
	f.Fuzz(func(t *testing.T, token []byte) {
		id, ok := KeyID(token)
		if ok && (len(id) != idLen || string(token[len(Prefix):len(Prefix)+idLen]) != id) {
			t.Fatalf("KeyID(%q) = %q", token, id)
		}
		if p, err := v.Check(context.Background(), token); err == nil || p != nil {
			t.Fatalf("Check(%q) accepted with no keys: %+v", token, p)
		}
	})
}

// TestMissesDoNotQueueWhilePostgreSQLHangs: with the keys table locked (a
// reload hangs), unknown tokens are refused within about the miss reload's
// timeout each, not one timeout after another; the keys loaded before go
// on working.
func TestMissesDoNotQueueWhilePostgreSQLHangs(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	good, _ := create(t, s, "good", AccountsRead)
	v, err := NewVerifier(ctx, s, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // released at the end
	if _, err := tx.Exec(ctx, `LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	misses := func(what string) {
		t.Helper()
		start := time.Now()
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, _, _ := NewToken()
				if _, err := v.Check(ctx, []byte(tok)); !errors.Is(err, ErrUnknown) {
					t.Errorf("unknown key, %s: %v", what, err)
				}
			}()
		}
		wg.Wait()
		if took := time.Since(start); took > 4*missReloadTimeout {
			t.Fatalf("8 unknown keys, %s, took %s: they queued", what, took)
		}
	}
	// One miss's reload hangs, fails at its timeout, and the others give
	// up with it.
	misses("the keys table locked")
	// A periodic reload hanging (its timeout is 5 s) holds the reload
	// token: the misses do not wait behind it. Holding the token here
	// stands for it.
	v.reload <- struct{}{}
	v.missFailedAt, v.missedAt = time.Time{}, time.Time{} // as if no miss had failed yet
	misses("a periodic reload in progress")
	v.unlockReload()
	if _, err := v.Check(ctx, []byte(good)); err != nil {
		t.Fatalf("a loaded key while the database hangs: %v", err)
	}
}
