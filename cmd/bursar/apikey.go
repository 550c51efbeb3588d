package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/storage"
)

const apikeyUsage = "usage: bursar apikey create --name NAME --scopes SCOPES | ls | revoke KEY_ID  [--database-url URL] (or DATABASE_URL)"

// runAPIKey manages API keys in PostgreSQL: create prints a new token
// once (only its hash is stored), ls lists keys without their tokens,
// revoke ends a key (on every node within --auth-refresh).
func runAPIKey(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(apikeyUsage)}
	}
	switch args[0] {
	case "create":
		return apikeyCreate(args[1:], stdout)
	case "ls":
		return apikeyList(args[1:], stdout)
	case "revoke":
		return apikeyRevoke(args[1:], stdout)
	}
	return &exitError{code: 2, err: errors.New(apikeyUsage)}
}

// openKeyStore opens PostgreSQL for a key command, with the command's
// deadline (30 s), and applies the migrations (the keys table may be new);
// done closes both.
func openKeyStore(url string) (context.Context, *storage.Store, func(), error) {
	if url == "" {
		return nil, nil, nil, &exitError{code: 2, err: errors.New("--database-url (or DATABASE_URL) is required")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	store, err := storage.Open(ctx, storage.Config{URL: url, MaxConns: 2})
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if _, err := store.Migrate(ctx); err != nil {
		store.Close()
		cancel()
		return nil, nil, nil, err
	}
	return ctx, store, func() { store.Close(); cancel() }, nil
}

// storeCommand is the flags every command that prints rows from
// PostgreSQL takes: --database-url and --format.
type storeCommand struct {
	fs          *flag.FlagSet
	url, format *string
}

// newStoreCommand registers --database-url and --format on a new flag
// set; the command adds its own flags to fs before parse.
func newStoreCommand(name, help string) storeCommand {
	fs := newFlagSet(name, help)
	return storeCommand{fs: fs, url: fs.String("database-url", "", "PostgreSQL connection URL (required)"), format: formatFlag(fs)}
}

// parse parses args and checks --format (exit 2 on either).
func (c storeCommand) parse(args []string) error {
	if err := parseFlags(c.fs, args); err != nil {
		return err
	}
	return checkFormat(*c.format)
}

// open opens PostgreSQL (openKeyStore).
func (c storeCommand) open() (context.Context, *storage.Store, func(), error) {
	return openKeyStore(*c.url)
}

func apikeyCreate(args []string, stdout io.Writer) error {
	fs := newFlagSet("apikey create", "Creates an API key and prints its token once: only its SHA-256 is stored, so keep it.\nScopes: "+scopeList()+"; all (every one but admin). admin grants every scope.")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	name := fs.String("name", "", "what the key is for, shown by ls (required, 1-100 characters)")
	scopes := fs.String("scopes", "", "comma-separated scopes (required)")
	out := fs.String("out", "", "also write the token to this file (mode 0600; refused if it exists)")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(*name); n < 1 || n > 100 || !utf8.ValidString(*name) || strings.ContainsFunc(*name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return &exitError{code: 2, err: errors.New("--name must be 1-100 printable characters")}
	}
	sc, err := auth.ParseScopes(*scopes)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--scopes: %w", err)}
	}
	ctx, store, done, err := openKeyStore(*url)
	if err != nil {
		return err
	}
	defer done()
	token, id, hash := auth.NewToken()
	names := auth.Names(sc)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		_, werr := fmt.Fprintln(f, token)
		if err := errors.Join(werr, f.Close()); err != nil {
			os.Remove(*out) //nolint:errcheck // best effort
			return fmt.Errorf("--out: %w", err)
		}
	}
	if err := store.CreateAPIKey(ctx, storage.APIKey{ID: id, Name: *name, Hash: hash[:], Scopes: names}); err != nil {
		if *out != "" {
			os.Remove(*out) //nolint:errcheck // the key does not exist
		}
		return err
	}
	if *format == "json" {
		return writeJSONOut(stdout, map[string]any{"key_id": id, "name": *name, "scopes": names, "token": token})
	}
	fmt.Fprintf(stdout, "%s\n# key %s (%s), scopes %s: shown once, only its hash is stored\n", token, id, *name, strings.Join(names, ","))
	return nil
}

func scopeList() string { return strings.Join(auth.Names(auth.Scopes), ", ") }

func apikeyList(args []string, stdout io.Writer) error {
	cmd := newStoreCommand("apikey ls", "Lists API keys: ID, name, scopes, created, revoked (never the tokens).")
	if err := cmd.parse(args); err != nil {
		return err
	}
	format := cmd.format
	ctx, store, done, err := cmd.open()
	if err != nil {
		return err
	}
	defer done()
	keys, err := store.APIKeys(ctx)
	if err != nil {
		return err
	}
	if keys == nil {
		keys = []storage.APIKey{}
	}
	return render(stdout, *format, keys, func(w io.Writer, keys []storage.APIKey) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tNAME\tSCOPES\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), k.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		tw.Flush()
	})
}

func apikeyRevoke(args []string, stdout io.Writer) error {
	fs := newFlagSet("apikey revoke", "Revokes an API key by its ID: every node refuses it within its --auth-refresh.")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return parseFlags(fs, args)
		}
		return &exitError{code: 2, err: errors.New("usage: bursar apikey revoke KEY_ID [--database-url URL]")}
	}
	id := args[0]
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx, store, done, err := openKeyStore(*url)
	if err != nil {
		return err
	}
	defer done()
	if err := store.RevokeAPIKey(ctx, id); err != nil {
		if errors.Is(err, storage.ErrNoSuchKey) {
			return &exitError{code: 1, err: fmt.Errorf("no API key %q", id)}
		}
		return err
	}
	fmt.Fprintf(stdout, "revoked %s: refused by every node within its --auth-refresh\n", id)
	return nil
}
