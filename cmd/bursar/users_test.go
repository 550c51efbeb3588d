package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bursar/bursar/storage/pgtest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// userClient is a client of n that carries a user's token.
func userClient(t *testing.T, n *node, username, password string) (*apiClient, string) {
	t.Helper()
	c := newClient(n.addr)
	c.key = ""
	r, err := c.do(context.Background(), "POST", "/api/v1/auth/token", map[string]any{"username": username, "password": password}, nil)
	if err != nil || r.status != 200 || r.str("token_type") != "Bearer" || !strings.HasPrefix(r.str("access_token"), "eyJ") {
		t.Fatalf("login %s: %v %+v", username, err, r)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("a token answer may be cached: %v", r.header)
	}
	c.key = r.str("access_token")
	return c, c.key
}

// createUser creates a user through the API with the admin key.
func createUser(t *testing.T, admin *apiClient, username, role string) string {
	t.Helper()
	r, err := admin.do(context.Background(), "POST", "/api/v1/users",
		map[string]any{"username": username, "password": username + "-password-1", "role": role}, nil)
	if err != nil || r.status != 201 || r.str("role") != role || r.str("username") != username {
		t.Fatalf("create user %s: %v %+v", username, err, r)
	}
	if strings.Contains(string(r.raw), "argon2") {
		t.Fatalf("a user answer shows the password hash: %s", r.raw)
	}
	return r.str("user_id")
}

// appliedCommands sums bursar_engine_commands_applied_total over its
// labels, from the node's metrics.
func appliedCommands(t *testing.T, c *apiClient) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %d", err, resp.StatusCode)
	}
	var sum float64
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "bursar_engine_commands_applied_total{"); ok {
			f, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metric line %q", line)
			}
			sum += f
		}
	}
	return sum
}

func psql(t *testing.T, dbURL, query string) string {
	t.Helper()
	out, err := exec.Command("psql", dbURL, "-Atc", query).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v %s", query, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCustomersReachOnlyTheirAccounts: users log in for tokens; a
// customer opens, withdraws from and transfers out of its own accounts
// only, cannot deposit, and every route that names another customer's
// account or transaction answers as if it did not exist (404), appending
// nothing and writing no row; a teller reaches every account and opens
// accounts for customers; an operator reaches the cluster endpoints but
// moves no money. An expired token, a disabled user's token and a token
// of a retired signing key are refused; the audit is clean.
func TestCustomersReachOnlyTheirAccounts(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	rd := startRedisProcess(t) // eventual reads must hide other owners' accounts too
	n := startNode(t, freePort(t), "--database-url", dbURL, "--data-dir", t.TempDir(), "--partitions", "4", "--auth-refresh", "300ms",
		"--redis-url", "redis://"+rd.Addr)
	ctx := context.Background()
	admin := newClient(n.admin) // users and keys are managed on the admin listener
	api := newClient(n.addr)
	aliceID := createUser(t, admin, "alice", "customer")
	bobID := createUser(t, admin, "bob", "customer")
	tinaID := createUser(t, admin, "tina", "teller")
	createUser(t, admin, "olga", "operator")

	// Bad users and bad logins.
	for _, tc := range []struct {
		body   map[string]any
		status int
		code   string
	}{
		{map[string]any{"username": "carol", "password": "short", "role": "customer"}, 400, "INVALID_FIELD"},
		{map[string]any{"username": "carol", "password": "long-enough-password", "role": "king"}, 400, "INVALID_FIELD"},
		{map[string]any{"username": "x", "password": "long-enough-password", "role": "customer"}, 400, "INVALID_FIELD"},
		{map[string]any{"username": "Alice", "password": "long-enough-password", "role": "customer"}, 409, "USER_EXISTS"},
		{map[string]any{"username": "carol", "role": "customer"}, 400, "MISSING_FIELD"},
		{map[string]any{"username": "carol", "password": "long-enough-password", "role": "customer", "is_admin": true}, 400, "MALFORMED_REQUEST"},
	} {
		if r, err := admin.do(ctx, "POST", "/api/v1/users", tc.body, nil); err != nil || r.status != tc.status || r.errCode() != tc.code {
			t.Errorf("create user %v: %v %d %s; want %d %s", tc.body, err, r.status, r.raw, tc.status, tc.code)
		}
	}
	if r, err := api.do(ctx, "POST", "/api/v1/users", map[string]any{"username": "carol", "password": "long-enough-password", "role": "admin"}, nil); err != nil || r.status != 404 || r.errCode() != "NOT_FOUND" {
		t.Fatalf("user management on the API listener: %v %+v", err, r)
	}
	anon := newClient(n.addr)
	anon.key = ""
	for _, body := range []map[string]any{
		{"username": "alice", "password": "wrong-password-1"},
		{"username": "nobody", "password": "alice-password-1"},
		{"username": strings.Repeat("a", 200), "password": "alice-password-1"},
	} {
		if r, err := anon.do(ctx, "POST", "/api/v1/auth/token", body, nil); err != nil || r.status != 401 || r.errCode() != "UNAUTHENTICATED" || !strings.Contains(string(r.raw), "wrong username or password") {
			t.Errorf("login %v: %v %+v", body["username"], err, r)
		}
	}

	alice, aliceToken := userClient(t, n, "alice", "alice-password-1")
	bob, _ := userClient(t, n, "bob", "bob-password-1")
	tina, _ := userClient(t, n, "tina", "tina-password-1")
	olga, _ := userClient(t, n, "olga", "olga-password-1")

	open := func(c *apiClient, key string, extra map[string]any) *apiResponse {
		t.Helper()
		body := map[string]any{"customer_id": "crm-" + key, "account_type": "checking", "currency": "USD"}
		for k, v := range extra {
			body[k] = v
		}
		r, err := c.do(ctx, "POST", "/api/v1/accounts", body, map[string]string{"Idempotency-Key": key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := open(alice, "main", nil), open(bob, "main", nil)
	if ra.status != 201 || rb.status != 201 || ra.str("owner_id") != aliceID || rb.str("owner_id") != bobID || ra.str("account_id") == rb.str("account_id") {
		t.Fatalf("customers open accounts under one key: %s / %s", ra.raw, rb.raw)
	}
	a, b := ra.str("account_id"), rb.str("account_id")
	if r := open(alice, "theft", map[string]any{"owner_id": bobID}); r.status != 403 || r.errCode() != "FORBIDDEN" {
		t.Fatalf("a customer opening an account for another: %d %s", r.status, r.raw)
	}
	if r := open(alice, "probe", map[string]any{"account_id": b}); r.status != 403 || r.errCode() != "FORBIDDEN" {
		t.Fatalf("a customer choosing an account ID (ACCOUNT_EXISTS would tell it exists): %d %s", r.status, r.raw)
	}
	rt := open(tina, "for-alice", map[string]any{"owner_id": aliceID})
	if rt.status != 201 || rt.str("owner_id") != aliceID {
		t.Fatalf("a teller opening an account for a customer: %d %s", rt.status, rt.raw)
	}
	if r := open(tina, "for-tina", map[string]any{"owner_id": tinaID}); r.status != 400 || r.errCode() != "INVALID_FIELD" {
		t.Fatalf("an owner that is no customer: %d %s", r.status, r.raw)
	}
	if r := open(tina, "no-owner", nil); r.status != 201 || r.body["owner_id"] != nil {
		t.Fatalf("a teller's account without an owner: %d %s", r.status, r.raw)
	}
	for _, acct := range []string{a, b} {
		if r := tina.deposit(t, acct, "100.00", "fund-"+acct); r.status != 201 {
			t.Fatalf("teller deposit: %d %s", r.status, r.raw)
		}
	}
	if r := alice.deposit(t, a, "5.00", "self-fund"); r.status != 403 || r.errCode() != "FORBIDDEN" {
		t.Fatalf("a customer's deposit: %d %s", r.status, r.raw)
	}
	money := func(c *apiClient, kind, acct, amount, key string) *apiResponse {
		t.Helper()
		r, err := c.do(ctx, "POST", "/api/v1/transactions/"+kind,
			map[string]any{"account_id": acct, "amount": amount, "currency": "USD"}, map[string]string{"Idempotency-Key": key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	bobDebit := money(bob, "debit", b, "1.00", "k1")
	if bobDebit.status != 201 {
		t.Fatalf("bob's debit of his account: %d %s", bobDebit.status, bobDebit.raw)
	}

	// Every route naming bob's account or transaction, as alice.
	var bobTx string
	eventually(t, 10*time.Second, func() (bool, string) {
		r, err := bob.do(ctx, "GET", "/api/v1/transactions/"+bobDebit.str("transaction_id"), nil, nil)
		if err == nil && r.status == 200 {
			bobTx = r.str("transaction_id")
			return true, ""
		}
		return false, fmt.Sprintf("bob's debit not readable by bob: %v %+v", err, r)
	})
	// Bob's balance is in Redis (bob reads it from there), so alice's
	// eventual read below would find it.
	eventually(t, 10*time.Second, func() (bool, string) {
		r, err := bob.do(ctx, "GET", "/api/v1/accounts/"+b+"/balance?consistency=eventual", nil, nil)
		return err == nil && r.status == 200 && r.str("consistency") == "eventual", fmt.Sprintf("bob's eventual balance: %v %+v", err, r)
	})
	appliedBefore := appliedCommands(t, api)
	missing := uuid.NewString()
	refused := []struct {
		name, method, path string
		body               any
		code               string
	}{
		{"debit", "POST", "/api/v1/transactions/debit", map[string]any{"account_id": b, "amount": "1.00", "currency": "USD"}, "ACCOUNT_NOT_FOUND"},
		{"debit under bob's key", "POST", "/api/v1/transactions/debit", map[string]any{"account_id": b, "amount": "1.00", "currency": "USD"}, "ACCOUNT_NOT_FOUND"},
		{"transfer out", "POST", "/api/v1/transactions/transfer", map[string]any{"source_account_id": b, "destination_account_id": a, "amount": "1.00", "currency": "USD"}, "ACCOUNT_NOT_FOUND"},
		{"account", "GET", "/api/v1/accounts/" + b, nil, "ACCOUNT_NOT_FOUND"},
		{"balance", "GET", "/api/v1/accounts/" + b + "/balance", nil, "ACCOUNT_NOT_FOUND"},
		{"eventual balance", "GET", "/api/v1/accounts/" + b + "/balance?consistency=eventual", nil, "ACCOUNT_NOT_FOUND"},
		{"history", "GET", "/api/v1/accounts/" + b + "/transactions", nil, "ACCOUNT_NOT_FOUND"},
		{"transaction", "GET", "/api/v1/transactions/" + bobTx, nil, "TRANSACTION_NOT_FOUND"},
		{"missing account's balance", "GET", "/api/v1/accounts/" + missing + "/balance", nil, "ACCOUNT_NOT_FOUND"},
		{"missing account's debit", "POST", "/api/v1/transactions/debit", map[string]any{"account_id": missing, "amount": "1.00", "currency": "USD"}, "ACCOUNT_NOT_FOUND"},
		{"deposit", "POST", "/api/v1/transactions/credit", map[string]any{"account_id": b, "amount": "1.00", "currency": "USD"}, "FORBIDDEN"},
	}
	for _, rq := range refused {
		headers := map[string]string{}
		if strings.HasSuffix(rq.name, "under bob's key") {
			headers["Idempotency-Key"] = "k1" // bob's key on his account
		}
		r, err := alice.do(ctx, rq.method, rq.path, rq.body, headers)
		if err != nil || r.errCode() != rq.code {
			t.Errorf("alice's %s: %v %d %s; want %s", rq.name, err, r.status, r.raw, rq.code)
			continue
		}
		if rq.code == "ACCOUNT_NOT_FOUND" && strings.Contains(string(r.raw), b) && !strings.Contains(string(r.raw), "no account "+b) {
			t.Errorf("alice's %s tells more than a missing account would: %s", rq.name, r.raw)
		}
	}
	aliceAdmin := newClient(n.admin)
	aliceAdmin.key = alice.key
	for path, body := range map[string]any{"/api/v1/users": nil, "/api/v1/api-keys": map[string]any{"name": "mine", "scopes": []string{"admin"}}} {
		method := "GET"
		if body != nil {
			method = "POST"
		}
		if r, err := aliceAdmin.do(ctx, method, path, body, nil); err != nil || r.status != 403 || r.errCode() != "FORBIDDEN" {
			t.Errorf("a customer's %s %s: %v %+v", method, path, err, r)
		}
	}
	batch, err := alice.do(ctx, "POST", "/api/v1/transactions/batch", map[string]any{"items": []any{
		map[string]any{"type": "debit", "account_id": b, "amount": "1.00", "currency": "USD", "idempotency_key": "k1"},
	}}, nil)
	if err != nil || batch.status != 200 || !strings.Contains(string(batch.raw), "ACCOUNT_NOT_FOUND") {
		t.Fatalf("alice's batch debit of bob's account: %v %+v", err, batch)
	}
	// Anything appended to bob's partition before this deposit is applied
	// before it.
	if r := tina.deposit(t, b, "1.00", "marker"); r.status != 201 {
		t.Fatalf("marker deposit: %d %s", r.status, r.raw)
	}
	if got := appliedCommands(t, api); got != appliedBefore+1 {
		t.Fatalf("%v commands applied across the refusals and one deposit; want %v + 1: a refusal was appended", got, appliedBefore)
	}
	// Once the marker's row is stored, so is every row before it in its
	// partition: alice has none but her open's.
	eventually(t, 10*time.Second, func() (bool, string) {
		return psql(t, dbURL, "SELECT count(*) FROM transactions WHERE idem_key = 'marker'") == "1", "the marker deposit was not flushed"
	})
	if rows := psql(t, dbURL, "SELECT count(*) FROM transactions WHERE created_by = 'user:"+aliceID+"' AND kind <> 'open'"); rows != "0" {
		t.Fatalf("%s rows of alice's after her refused requests", rows)
	}

	// What alice may do.
	if r := money(alice, "debit", a, "10.00", "own"); r.status != 201 {
		t.Fatalf("alice's debit of her account: %d %s", r.status, r.raw)
	}
	tr, err := alice.do(ctx, "POST", "/api/v1/transactions/transfer",
		map[string]any{"source_account_id": a, "destination_account_id": b, "amount": "5.00", "currency": "USD"}, map[string]string{"Idempotency-Key": "pay-bob"})
	if err != nil || tr.status != 201 || tr.str("status") != "completed" {
		t.Fatalf("alice pays bob: %v %+v", err, tr)
	}
	if r, err := alice.do(ctx, "GET", "/api/v1/accounts/"+a+"/balance", nil, nil); err != nil || r.status != 200 || r.str("current_balance") != "85.00" {
		t.Fatalf("alice's balance: %v %+v", err, r)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		r, err := alice.do(ctx, "GET", "/api/v1/accounts/"+a+"/balance?consistency=eventual", nil, nil)
		return err == nil && r.status == 200 && r.str("consistency") == "eventual" && r.str("current_balance") == "85.00", fmt.Sprintf("alice's eventual balance: %v %+v", err, r)
	})
	if r, err := alice.do(ctx, "GET", "/api/v1/accounts/"+rt.str("account_id"), nil, nil); err != nil || r.status != 200 {
		t.Fatalf("the account the teller opened for alice: %v %+v", err, r)
	}
	// Each party sees the transfer, and the balance after only its own
	// leg; created_by only when it is itself.
	for _, party := range []struct {
		c       *apiClient
		own, by string
	}{{alice, a, "user:" + aliceID}, {bob, b, ""}} {
		var r *apiResponse
		eventually(t, 10*time.Second, func() (bool, string) {
			r, err = party.c.do(ctx, "GET", "/api/v1/transactions/"+tr.str("transaction_id"), nil, nil)
			if err != nil {
				return false, err.Error()
			}
			legs, _ := r.body["legs"].([]any)
			return r.status == 200 && len(legs) == 2, fmt.Sprintf("the transfer as a party to it: %d %s", r.status, r.raw)
		})
		if by, _ := r.body["created_by"].(string); by != party.by {
			t.Fatalf("the transfer's created_by as seen by %s: %q, want %q: %s", party.own, by, party.by, r.raw)
		}
		for _, l := range r.body["legs"].([]any) {
			leg := l.(map[string]any)
			own := leg["account_id"] == party.own
			if (leg["balance_after"] != nil) != own || (leg["sequence"] != nil) != own {
				t.Fatalf("a party sees the balance after the other's leg (or not its own): %s", r.raw)
			}
		}
	}
	if r, err := alice.do(ctx, "GET", "/api/v1/accounts/"+a+"/transactions", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("alice's history: %v %+v", err, r)
	}

	// The operator: cluster endpoints, no money.
	opAdmin := newClient(n.admin)
	opAdmin.key = olga.key
	if r, err := opAdmin.do(ctx, "GET", "/internal/node", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("operator on /internal/node: %v %+v", err, r)
	}
	if r := olga.deposit(t, a, "1.00", "op"); r.status != 403 {
		t.Fatalf("an operator's deposit: %d %s", r.status, r.raw)
	}
	if r, err := opAdmin.do(ctx, "GET", "/debug/pprof/heap", nil, nil); err != nil || r.status != 403 {
		t.Fatalf("operator on the profiles (admin only): %v %+v", err, r)
	}

	// An expired token, signed with the node's own key.
	kid, seedHex, _ := strings.Cut(psql(t, dbURL, "SELECT kid || '|' || encode(private_key, 'hex') FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1"), "|")
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("signing key seed: %v (%d bytes)", err, len(seed))
	}
	past := time.Now().Add(-time.Hour)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "bursar", "aud": "bursar", "sub": aliceID, "name": "alice", "role": "customer", "jti": "expired",
		"iat": past.Add(-time.Minute).Unix(), "nbf": past.Add(-time.Minute).Unix(), "exp": past.Unix(),
	})
	tok.Header["kid"] = kid
	expired, err := tok.SignedString(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	stale := newClient(n.addr)
	stale.key = expired
	if r, err := stale.do(ctx, "GET", "/api/v1/accounts/"+a+"/balance", nil, nil); err != nil || r.status != 401 || !strings.Contains(string(r.raw), "expired") {
		t.Fatalf("an expired token: %v %+v", err, r)
	}

	// A disabled user's token stops working within --auth-refresh.
	if r, err := admin.do(ctx, "POST", "/api/v1/users/bob/disable", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("disable bob: %v %+v", err, r)
	}
	refusedWithin(t, bob, "/api/v1/accounts/"+b+"/balance", 3*time.Second)
	if r, err := anon.do(ctx, "POST", "/api/v1/auth/token", map[string]any{"username": "bob", "password": "bob-password-1"}, nil); err != nil || r.status != 401 {
		t.Fatalf("a disabled user's login: %v %+v", err, r)
	}

	// Rotation: new tokens carry the new key, old ones verify until the
	// old key is retired.
	out, err := exec.Command(binPath, "signing-key", "rotate", "--database-url", dbURL).CombinedOutput()
	if err != nil {
		t.Fatalf("signing-key rotate: %v %s", err, out)
	}
	newKid := strings.SplitN(string(out), "\n", 2)[0]
	out, err = exec.Command(binPath, "signing-key", "ls", "--format", "json", "--database-url", dbURL).CombinedOutput()
	var keys []struct {
		Kid   string `json:"kid"`
		Signs bool   `json:"signs"`
	}
	if err != nil || json.Unmarshal(out, &keys) != nil || len(keys) != 2 || keys[0].Kid != newKid || !keys[0].Signs || keys[1].Kid != kid || keys[1].Signs {
		t.Fatalf("signing-key ls after a rotation: %v %s", err, out)
	}
	out, err = exec.Command(binPath, "user", "ls", "--format", "json", "--database-url", dbURL).CombinedOutput()
	if err != nil || strings.Contains(string(out), "argon2") || !strings.Contains(string(out), `"username": "alice"`) || !strings.Contains(string(out), `"role": "operator"`) {
		t.Fatalf("user ls: %v %s", err, out)
	}
	// A user made on the command line logs in.
	create := exec.Command(binPath, "user", "create", "--username", "dora", "--role", "teller", "--password-stdin", "--database-url", dbURL)
	create.Stdin = strings.NewReader("dora-password-1\n")
	if out, err := create.CombinedOutput(); err != nil || !strings.Contains(string(out), "created teller dora") {
		t.Fatalf("user create: %v %s", err, out)
	}
	userClient(t, n, "dora", "dora-password-1")
	for _, bad := range [][]string{
		{"user", "create", "--username", "eve", "--role", "teller"},                                     // no password source
		{"user", "create", "--username", "eve", "--role", "god", "--password-stdin"},                    // no such role
		{"user", "create", "--username", "dora", "--role", "teller", "--password-file", "/nonexistent"}, // unreadable
		{"user", "disable"},
		{"signing-key", "retire"},
	} {
		cmd := exec.Command(binPath, append(bad, "--database-url", dbURL)...)
		cmd.Stdin = strings.NewReader("a long enough password\n")
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%v: exit 0: %s", bad, out)
		} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2: %s", bad, err, out)
		}
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		_, fresh := userClient(t, n, "alice", "alice-password-1")
		h, _, _ := jwt.NewParser().ParseUnverified(fresh, jwt.MapClaims{})
		return h != nil && h.Header["kid"] == newKid, "new tokens still signed by the old key after rotating to " + newKid
	})
	if r, err := alice.do(ctx, "GET", "/api/v1/accounts/"+a+"/balance", nil, nil); err != nil || r.status != 200 {
		t.Fatalf("a token of the rotated-out key: %v %+v", err, r)
	}
	if out, err := exec.Command(binPath, "signing-key", "retire", kid, "--database-url", dbURL).CombinedOutput(); err != nil {
		t.Fatalf("signing-key retire: %v %s", err, out)
	}
	alice.key = aliceToken
	refusedWithin(t, alice, "/api/v1/accounts/"+a+"/balance", 3*time.Second)

	n.stop()
	if code, out := auditProcess(t, dbURL); code != 0 {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
}

// refusedWithin waits until c's token is refused (401) on path.
func refusedWithin(t *testing.T, c *apiClient, path string, d time.Duration) {
	t.Helper()
	eventually(t, d, func() (bool, string) {
		r, err := c.do(context.Background(), "GET", path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.status == http.StatusUnauthorized && r.errCode() == "UNAUTHENTICATED",
			fmt.Sprintf("a token still works %s after it should not: %d %s", d, r.status, r.raw)
	})
}

// eventually polls ok until it holds, for at most d, and fails the test
// with ok's last description otherwise. The process tests wait on another
// process (a node's flush into PostgreSQL, its reload of credentials),
// which sends this one no signal to wait on, so they poll; the interval
// is short against the waits' bounds.
func eventually(t *testing.T, d time.Duration, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		done, why := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterWideCredentials checks, on a running cluster, that users and
// keys are the cluster's: a customer created through one node logs in on
// another (which signs its token with a key the others have not loaded
// yet) and its token works on every node; its accounts, wherever their
// partitions live, are read through any node (the owner crosses nodes
// over remote), and the unowned accounts are not found to it; a key
// revoked through one node is refused by every node within
// --auth-refresh (300ms here, so 3 s is a generous bound).
func clusterWideCredentials(t *testing.T, nodes []*node, dbURL string, unowned []string) {
	t.Helper()
	ctx := context.Background()
	ownerID := createUser(t, newClient(nodes[0].admin), "carol", "customer")
	_, token := userClient(t, nodes[1], "carol", "carol-password-1")
	via := func(n *node) *apiClient { c := newClient(n.addr); c.key = token; return c }
	for i := range 8 {
		r, err := via(nodes[i%len(nodes)]).do(ctx, "POST", "/api/v1/accounts",
			map[string]any{"customer_id": "carol", "account_type": "savings", "currency": "USD"},
			map[string]string{"Idempotency-Key": "carol-" + strconv.Itoa(i)})
		if err != nil || r.status != 201 || r.str("owner_id") != ownerID {
			t.Fatalf("carol's open %d: %v %+v", i, err, r)
		}
		for _, n := range nodes {
			if r, err := via(n).do(ctx, "GET", "/api/v1/accounts/"+r.str("account_id")+"/balance", nil, nil); err != nil || r.status != 200 {
				t.Fatalf("carol's account %d through %s: %v %+v", i, n.addr, err, r)
			}
		}
	}
	for i, acct := range unowned {
		if r, err := via(nodes[i%len(nodes)]).do(ctx, "GET", "/api/v1/accounts/"+acct, nil, nil); err != nil || r.status != 404 || r.errCode() != "ACCOUNT_NOT_FOUND" {
			t.Fatalf("an unowned account as carol: %v %+v", err, r)
		}
	}

	out, err := exec.Command(binPath, "apikey", "create", "--name", "reader", "--scopes", "accounts:read", "--database-url", dbURL).Output()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.SplitN(string(out), "\n", 2)[0]
	readers := make([]*apiClient, len(nodes))
	for i, n := range nodes {
		readers[i] = newClient(n.addr)
		readers[i].key = key
		if r, err := readers[i].do(ctx, "GET", "/api/v1/accounts/"+unowned[0], nil, nil); err != nil || r.status != 200 {
			t.Fatalf("a new key on %s: %v %+v", n.addr, err, r)
		}
	}
	id := strings.SplitN(strings.TrimPrefix(key, "bsk_"), "_", 2)[0]
	mgmt := newClient(nodes[2].admin)
	if r, err := mgmt.do(ctx, "DELETE", "/api/v1/api-keys/"+id, nil, nil); err != nil || r.status != 200 {
		t.Fatalf("revoking through the API: %v %+v", err, r)
	}
	if r, err := mgmt.do(ctx, "DELETE", "/api/v1/api-keys/nosuchkey", nil, nil); err != nil || r.status != 404 || r.errCode() != "API_KEY_NOT_FOUND" {
		t.Fatalf("revoking an unknown key: %v %+v", err, r)
	}
	for _, rc := range readers {
		refusedWithin(t, rc, "/api/v1/accounts/"+unowned[0], 3*time.Second)
	}
}
