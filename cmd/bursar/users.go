package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bursar/bursar/auth"
	"github.com/bursar/bursar/storage"
)

const userUsage = "usage: bursar user create --username NAME --role ROLE (--password-stdin | --password-file FILE) | ls | disable USERNAME  [--database-url URL] (or DATABASE_URL)"

// runUser manages users in PostgreSQL: create stores a user with an
// argon2id hash of its password, ls lists users (never hashes), disable
// ends a user's logins at once and its tokens on every node within
// --auth-refresh.
func runUser(args []string, stdout io.Writer, stdin io.Reader) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(userUsage)}
	}
	switch args[0] {
	case "create":
		return userCreate(args[1:], stdout, stdin)
	case "ls":
		return userList(args[1:], stdout)
	case "disable":
		return userDisable(args[1:], stdout)
	}
	return &exitError{code: 2, err: errors.New(userUsage)}
}

func roleList() string {
	names := make([]string, len(auth.Roles))
	for i, r := range auth.Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

func userCreate(args []string, stdout io.Writer, stdin io.Reader) error {
	fs := newFlagSet("user create", "Creates a user who logs in with POST /api/v1/auth/token. Roles: "+roleList()+
		".\nadmin: everything; operator: cluster endpoints, metrics and reads; teller: any account; customer: only the accounts it owns.")
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	username := fs.String("username", "", "3-64 characters of a-z 0-9 . _ @ - (stored lower-case; required)")
	role := fs.String("role", "", "the user's role (required)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	file := fs.String("password-file", "", "read the password from the first line of this file")
	format := formatFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--role: %w", err)}
	}
	if *fromStdin == (*file != "") {
		return &exitError{code: 2, err: errors.New("give the password with exactly one of --password-stdin and --password-file (never on the command line, where ps shows it)")}
	}
	src := stdin
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--password-file: %w", err)}
		}
		defer f.Close()
		src = f
	}
	line, err := bufio.NewReader(io.LimitReader(src, auth.PasswordLenMax+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	u, err := auth.NewUser(*username, password, r, "cli")
	var fe *auth.FieldError
	if errors.As(err, &fe) {
		return &exitError{code: 2, err: err}
	}
	if err != nil {
		return err
	}
	ctx, store, done, err := openKeyStore(*url)
	if err != nil {
		return err
	}
	defer done()
	if err := store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, storage.ErrUserExists) {
			return &exitError{code: 1, err: fmt.Errorf("a user named %q exists", u.Username)}
		}
		return err
	}
	if *format == "json" {
		return writeJSONOut(stdout, map[string]any{"user_id": u.ID, "username": u.Username, "role": u.Role})
	}
	fmt.Fprintf(stdout, "created %s %s (user_id %s)\n", u.Role, u.Username, u.ID)
	return nil
}

func userList(args []string, stdout io.Writer) error {
	cmd := newStoreCommand("user ls", "Lists users: ID, name, role, created, disabled (never password hashes).")
	if err := cmd.parse(args); err != nil {
		return err
	}
	format := cmd.format
	ctx, store, done, err := cmd.open()
	if err != nil {
		return err
	}
	defer done()
	users, err := store.Users(ctx, storage.UsersListMax)
	if err != nil {
		return err
	}
	type row struct {
		ID         string     `json:"user_id"`
		Username   string     `json:"username"`
		Role       string     `json:"role"`
		CreatedAt  time.Time  `json:"created_at"`
		DisabledAt *time.Time `json:"disabled_at"`
	}
	rows := make([]row, len(users))
	for i, u := range users {
		rows[i] = row{u.ID, u.Username, u.Role, u.CreatedAt, u.DisabledAt}
	}
	return render(stdout, *format, rows, func(w io.Writer, rows []row) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER ID\tUSERNAME\tROLE\tCREATED\tDISABLED")
		for _, u := range rows {
			disabled := "-"
			if u.DisabledAt != nil {
				disabled = u.DisabledAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Role, u.CreatedAt.UTC().Format(time.RFC3339), disabled)
		}
		tw.Flush()
	})
}

// oneArg splits "NAME [flags]" for the commands that take one argument.
func oneArg(fs interface{ Parse([]string) error }, args []string, usage string) (string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return "", fs.Parse(args)
		}
		return "", &exitError{code: 2, err: errors.New(usage)}
	}
	return args[0], nil
}

func userDisable(args []string, stdout io.Writer) error {
	return onArg("user disable", "Disables a user: its logins are refused at once, its tokens by every node within its --auth-refresh.",
		"usage: bursar user disable USERNAME [--database-url URL]", args,
		func(ctx context.Context, store *storage.Store, name string) error {
			ok, err := store.DisableUser(ctx, name)
			if err != nil {
				return err
			}
			if !ok {
				return &exitError{code: 1, err: fmt.Errorf("no user %q", name)}
			}
			fmt.Fprintf(stdout, "disabled %s: logins refused now, its tokens by every node within its --auth-refresh\n", strings.ToLower(name))
			return nil
		})
}

// onArg runs a command of the form "NAME ARG [--database-url URL]": fn
// gets ARG and PostgreSQL.
func onArg(name, help, usage string, args []string, fn func(context.Context, *storage.Store, string) error) error {
	fs := newFlagSet(name, help)
	url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
	arg, err := oneArg(fs, args, usage)
	if err != nil || arg == "" {
		return err
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx, store, done, err := openKeyStore(*url)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, store, arg)
}

const signingKeyUsage = "usage: bursar signing-key rotate | ls | retire KID  [--database-url URL] (or DATABASE_URL)"

// runSigningKey manages the keys that sign user tokens: rotate adds a
// key that signs from then on (the older ones keep verifying), retire
// ends a key, and every token it signed, once those have expired.
func runSigningKey(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &exitError{code: 2, err: errors.New(signingKeyUsage)}
	}
	switch args[0] {
	case "rotate":
		fs := newFlagSet("signing-key rotate", "Adds an Ed25519 signing key: every node signs new tokens with it within its --auth-refresh; older keys keep verifying until retired.")
		url := fs.String("database-url", "", "PostgreSQL connection URL (required)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		ctx, store, done, err := openKeyStore(*url)
		if err != nil {
			return err
		}
		defer done()
		kid, err := auth.RotateSigningKey(ctx, store)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n# signs new tokens from the next --auth-refresh; retire the previous key once its tokens have expired (--token-ttl)\n", kid)
		return nil
	case "ls":
		cmd := newStoreCommand("signing-key ls", "Lists the signing keys in use (not retired), newest (the one that signs) first; never the private keys.")
		if err := cmd.parse(args[1:]); err != nil {
			return err
		}
		format := cmd.format
		ctx, store, done, err := cmd.open()
		if err != nil {
			return err
		}
		defer done()
		keys, err := store.SigningKeys(ctx)
		if err != nil {
			return err
		}
		type row struct {
			Kid       string    `json:"kid"`
			Algorithm string    `json:"algorithm"`
			CreatedAt time.Time `json:"created_at"`
			Signs     bool      `json:"signs"`
		}
		rows := make([]row, len(keys))
		for i, k := range keys {
			rows[i] = row{k.ID, k.Algorithm, k.CreatedAt, i == 0}
		}
		return render(stdout, *format, rows, func(w io.Writer, rows []row) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALGORITHM\tCREATED\tSIGNS")
			for _, k := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", k.Kid, k.Algorithm, k.CreatedAt.UTC().Format(time.RFC3339), k.Signs)
			}
			tw.Flush()
		})
	case "retire":
		return onArg("signing-key retire", "Retires a signing key: tokens it signed are refused by every node within its --auth-refresh.",
			"usage: bursar signing-key retire KID [--database-url URL]", args[1:],
			func(ctx context.Context, store *storage.Store, kid string) error {
				ok, err := store.RetireSigningKey(ctx, kid)
				if err != nil {
					return err
				}
				if !ok {
					return &exitError{code: 1, err: fmt.Errorf("no signing key %q in use", kid)}
				}
				fmt.Fprintf(stdout, "retired %s: its tokens are refused by every node within its --auth-refresh\n", kid)
				return nil
			})
	}
	return &exitError{code: 2, err: errors.New(signingKeyUsage)}
}
