package ingress

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/valyala/fasthttp"
)

// The user service and key management routes. On the API listener:
//
//	POST   /api/v1/auth/token          username + password → a short-lived JWT (no credential)
//	GET    /.well-known/jwks.json      the keys that verify the tokens (no credential)
//
// On the admin listener (--admin-addr), as every admin endpoint is:
//
//	POST   /api/v1/users               create a user (admin)
//	GET    /api/v1/users               list users (admin)
//	POST   /api/v1/users/{name}/disable  disable a user: its tokens stop working (admin)
//	POST   /api/v1/api-keys            create an API key; the token is in this answer only (admin)
//	GET    /api/v1/api-keys            list API keys, without tokens (admin)
//	DELETE /api/v1/api-keys/{key_id}   revoke an API key (admin)

// Directory is the user and key service as the API uses it.
type Directory interface {
	// Login exchanges a username and password for a signed token.
	// auth.ErrBadLogin: unknown user, wrong password or disabled (not
	// told apart); auth.ErrLoginBusy: too many logins at once.
	Login(ctx context.Context, username, password string) (token string, expires time.Time, err error)
	// CreateUser stores a user. An *auth.FieldError names a field that
	// breaks its rules; storage.ErrUserExists: the username is taken.
	CreateUser(ctx context.Context, username, password string, role auth.Role, createdBy string) (storage.User, error)
	Users(ctx context.Context, limit int) ([]storage.User, error)
	// DisableUser reports false when no user has the name.
	DisableUser(ctx context.Context, username string) (bool, error)
	// IsCustomer reports whether userID names a live customer user.
	IsCustomer(ctx context.Context, userID string) (bool, error)
	JWKS() []byte
	// CreateAPIKey stores a key and returns its token (shown once).
	CreateAPIKey(ctx context.Context, name string, scopes []auth.Scope) (string, storage.APIKey, error)
	APIKeys(ctx context.Context) ([]storage.APIKey, error)
	// RevokeAPIKey reports false when no live key has the ID.
	RevokeAPIKey(ctx context.Context, keyID string) (bool, error)
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type userRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

type apiKeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

var (
	loginMembers  = membersOf(loginRequest{})
	userMembers   = membersOf(userRequest{})
	apiKeyMembers = membersOf(apiKeyRequest{})
)

// usersListMax bounds a user list.
const usersListMax = 1000

// routeLogin routes the API listener's token paths; ok is false for any
// other.
func (s *Server) routeLogin(ctx *fasthttp.RequestCtx, path string, want func(string) *apiError) (string, *apiError, bool) {
	switch {
	case path == "/.well-known/jwks.json":
		if err := want("GET"); err != nil {
			return "jwks", err, true
		}
		if s.cfg.Directory == nil {
			return "jwks", bad(ledger.CodeRouteNotFound, "this node serves no user tokens"), true
		}
		ctx.SetStatusCode(200)
		ctx.SetContentType("application/json")
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.SetBody(s.cfg.Directory.JWKS())
		return "jwks", nil, true
	case path == "/api/v1/auth/token":
		if err := want("POST"); err != nil {
			return "token", err, true
		}
		return "token", s.login(ctx), true
	}
	return "", nil, false
}

// routeManagement routes the admin listener's user and key paths; ok is
// false for any other.
func (s *Server) routeManagement(ctx *fasthttp.RequestCtx, path string, want func(string) *apiError) (string, *apiError, bool) {
	switch {
	case path == "/api/v1/users":
		if err := s.authorize(ctx, auth.Admin); err != nil {
			return "users", err, true
		}
		switch string(ctx.Method()) {
		case "POST":
			return "users", s.createUser(ctx), true
		case "GET":
			return "users", s.listUsers(ctx), true
		}
		ctx.Response.Header.Set("Allow", "GET, POST")
		return "users", bad(ledger.CodeMethodNotAllowed, "use GET or POST"), true
	case strings.HasPrefix(path, "/api/v1/users/") && strings.HasSuffix(path, "/disable"):
		if err := s.authorize(ctx, auth.Admin); err != nil {
			return "user_disable", err, true
		}
		if err := want("POST"); err != nil {
			return "user_disable", err, true
		}
		name := strings.TrimSuffix(strings.TrimPrefix(path, "/api/v1/users/"), "/disable")
		return "user_disable", s.disableUser(ctx, name), true
	case path == "/api/v1/api-keys":
		if err := s.authorize(ctx, auth.Admin); err != nil {
			return "api_keys", err, true
		}
		switch string(ctx.Method()) {
		case "POST":
			return "api_keys", s.createAPIKey(ctx), true
		case "GET":
			return "api_keys", s.listAPIKeys(ctx), true
		}
		ctx.Response.Header.Set("Allow", "GET, POST")
		return "api_keys", bad(ledger.CodeMethodNotAllowed, "use GET or POST"), true
	case strings.HasPrefix(path, "/api/v1/api-keys/"):
		if err := s.authorize(ctx, auth.Admin); err != nil {
			return "api_key", err, true
		}
		if err := want("DELETE"); err != nil {
			return "api_key", err, true
		}
		return "api_key", s.revokeAPIKey(ctx, strings.TrimPrefix(path, "/api/v1/api-keys/")), true
	}
	return "", nil, false
}

// directory is the configured Directory, or the answer to give without one.
func (s *Server) directory() (Directory, *apiError) {
	if s.cfg.Directory == nil {
		return nil, bad(ledger.CodeRouteNotFound, "this node runs without authentication (--auth=off): it has no users or keys")
	}
	return s.cfg.Directory, nil
}

// login is POST /api/v1/auth/token. It needs no credential, so it is
// where passwords are guessed: failures are counted against the source
// address (the throttle every credential check uses) and against the
// username (loginThrottle, so that many addresses cannot guess one
// user's password at full speed), and either bucket empty refuses the
// attempt with 429 before the password is looked at.
func (s *Server) login(ctx *fasthttp.RequestCtx) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	if err := s.checkJSON(ctx); err != nil {
		return err
	}
	var req loginRequest
	if err := decodeStrict(ctx.PostBody(), &req, loginMembers); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return bad(ledger.CodeMissingField, "username and password are required")
	}
	user, ok := auth.NormalizeUsername(req.Username)
	if !ok || len(req.Password) > auth.PasswordLenMax {
		// No stored user has such a name or password: a wrong login,
		// without the hash.
		return s.loginFailed(ctx, "")
	}
	addr := sourceAddrOf(ctx)
	wait := time.Duration(0)
	if s.authThrottle != nil && addr.IsValid() {
		wait = s.authThrottle.wait(addr)
	}
	// The per-user bucket stops guessing one user's password from many
	// addresses. An address with no recent failure (clean: its bucket
	// full, seconds after a typo) spends from a second per-user bucket,
	// three times larger, instead: guessing from "dirty" addresses cannot
	// lock the user out, and guessing from clean ones (one guess per
	// address per refill) is still bounded per user. Without an address
	// throttle (behind a proxy) every address counts as dirty.
	clean := s.authThrottle != nil && addr.IsValid() && s.authThrottle.clean(addr)
	userBucket := s.loginThrottle
	if clean {
		userBucket = s.loginCleanThrottle
	}
	if userBucket != nil {
		wait = max(wait, userBucket.wait(user))
	}
	if wait > 0 {
		s.rejected.WithLabelValues("login_throttled").Inc()
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		return bad(ledger.CodeRateLimited, "too many failed logins for this user or from this address; retry after Retry-After seconds")
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	token, expires, err := dir.Login(c, user, req.Password)
	switch {
	case errors.Is(err, auth.ErrBadLogin):
		return s.loginFailed(ctx, user)
	case errors.Is(err, auth.ErrLoginBusy):
		s.rejected.WithLabelValues("login_busy").Inc()
		return bad(ledger.CodeUnavailable, "too many logins at once; retry shortly")
	case err != nil:
		return s.readFailed("users", err)
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	w := getJSONWriter()
	w.Open()
	w.String("access_token", token)
	w.String("token_type", "Bearer")
	w.Int("expires_in", int64(time.Until(expires).Round(time.Second)/time.Second))
	w.String("expires_at", expires.UTC().Format(time.RFC3339))
	w.Close()
	sendJSON(ctx, 200, w)
	putJSONWriter(w)
	return nil
}

// loginFailed counts a failed login against the address and user.
func (s *Server) loginFailed(ctx *fasthttp.RequestCtx, user string) *apiError {
	s.rejected.WithLabelValues("bad_login").Inc()
	addr := sourceAddrOf(ctx)
	// The bucket this attempt was judged by: clean as it was before it.
	clean := s.authThrottle != nil && addr.IsValid() && s.authThrottle.clean(addr)
	if s.authThrottle != nil && addr.IsValid() && !s.authThrottle.fail(addr) {
		s.rejected.WithLabelValues("auth_throttle_full").Inc()
	}
	userBucket := s.loginThrottle
	if clean {
		userBucket = s.loginCleanThrottle
	}
	if userBucket != nil && user != "" && !userBucket.fail(user) {
		s.rejected.WithLabelValues("login_throttle_full").Inc()
	}
	return bad(ledger.CodeUnauthenticated, "wrong username or password")
}

func (s *Server) createUser(ctx *fasthttp.RequestCtx) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	if err := s.checkJSON(ctx); err != nil {
		return err
	}
	var req userRequest
	if err := decodeStrict(ctx.PostBody(), &req, userMembers); err != nil {
		return err
	}
	for _, f := range [...]struct{ name, v string }{{"username", req.Username}, {"password", req.Password}, {"role", req.Role}} {
		if f.v == "" {
			return bad(ledger.CodeMissingField, f.name+" is required")
		}
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return bad(ledger.CodeInvalidField, "role: "+err.Error())
	}
	by := ""
	if p := principalOf(ctx); p != nil {
		by = p.String()
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := dir.CreateUser(c, req.Username, req.Password, role, by)
	var fe *auth.FieldError
	switch {
	case errors.As(err, &fe):
		return bad(ledger.CodeInvalidField, fe.Error())
	case errors.Is(err, storage.ErrUserExists):
		return bad(ledger.CodeUserExists, "a user named "+strings.ToLower(req.Username)+" exists")
	case err != nil:
		return s.readFailed("users", err)
	}
	writeJSON(ctx, 201, userJSON(&u))
	return nil
}

// userJSON is a user as the API shows it: never its password hash.
func userJSON(u *storage.User) map[string]any {
	var disabled any
	if u.DisabledAt != nil {
		disabled = u.DisabledAt.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{
		"user_id": u.ID, "username": u.Username, "role": u.Role,
		"created_at": u.CreatedAt.UTC().Format(time.RFC3339Nano), "disabled_at": disabled,
	}
}

func (s *Server) listUsers(ctx *fasthttp.RequestCtx) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	users, err := dir.Users(c, usersListMax)
	if err != nil {
		return s.readFailed("users", err)
	}
	out := make([]map[string]any, len(users))
	for i := range users {
		out[i] = userJSON(&users[i])
	}
	writeJSON(ctx, 200, map[string]any{"users": out})
	return nil
}

func (s *Server) disableUser(ctx *fasthttp.RequestCtx, name string) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	user, valid := auth.NormalizeUsername(name)
	if !valid {
		return bad(ledger.CodeUserNotFound, "no user named "+strconv.Quote(name))
	}
	ok, err := dir.DisableUser(c, user)
	switch {
	case err != nil:
		return s.readFailed("users", err)
	case !ok:
		return bad(ledger.CodeUserNotFound, "no user named "+strconv.Quote(name))
	}
	writeJSON(ctx, 200, map[string]any{"username": user, "disabled": true})
	return nil
}

func (s *Server) createAPIKey(ctx *fasthttp.RequestCtx) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	if err := s.checkJSON(ctx); err != nil {
		return err
	}
	var req apiKeyRequest
	if err := decodeStrict(ctx.PostBody(), &req, apiKeyMembers); err != nil {
		return err
	}
	if err := checkText(req.Name, "name", 64, true); err != nil {
		return err
	}
	if len(req.Scopes) == 0 {
		return bad(ledger.CodeMissingField, "scopes is required: a list of "+strings.Join(auth.Names(auth.Scopes), ", "))
	}
	scopes, err := auth.ParseScopes(strings.Join(req.Scopes, ","))
	if err != nil {
		return bad(ledger.CodeInvalidField, "scopes: "+err.Error())
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	token, k, err := dir.CreateAPIKey(c, req.Name, scopes)
	switch {
	case errors.Is(err, storage.ErrTooManyKeys):
		return bad(ledger.CodeAPIKeyLimit, "the database holds "+strconv.Itoa(storage.APIKeysMax)+" live API keys, the most it may: revoke some first")
	case err != nil:
		return s.readFailed("api keys", err)
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, 201, map[string]any{
		"key_id": k.ID, "name": k.Name, "token": token, "scopes": k.Scopes,
		"created_at": k.CreatedAt.UTC().Format(time.RFC3339Nano),
	})
	return nil
}

func (s *Server) listAPIKeys(ctx *fasthttp.RequestCtx) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := dir.APIKeys(c)
	if err != nil {
		return s.readFailed("api keys", err)
	}
	writeJSON(ctx, 200, map[string]any{"api_keys": keys})
	return nil
}

func (s *Server) revokeAPIKey(ctx *fasthttp.RequestCtx, id string) *apiError {
	dir, aerr := s.directory()
	if aerr != nil {
		return aerr
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := dir.RevokeAPIKey(c, id)
	switch {
	case err != nil:
		return s.readFailed("api keys", err)
	case !ok:
		return bad(ledger.CodeAPIKeyNotFound, "no live API key "+strconv.Quote(id))
	}
	writeJSON(ctx, 200, map[string]any{"key_id": id, "revoked": true})
	return nil
}
