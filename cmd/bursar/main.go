// Command bursar is Bursar's one binary: the node (serve), its schema
// (migrate), the development broker (broker), the money audit (audit) and
// the operator views. Data goes to stdout, diagnostics to stderr.
//
// Exit codes: 0 success; 1 failure (for audit: a violation); 2 usage error
// (for audit: could not check).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bursar/bursar/engine"
)

type command struct {
	name  string
	usage string
	run   func(args []string, stdout io.Writer) error
}

var commands = []command{
	{"serve", "run a node (REST API, engine, embedded broker unless KAFKA_BROKERS is set)", runServe},
	{"migrate", "apply the embedded PostgreSQL migrations", runMigrate},
	{"broker", "run the embedded Kafka-protocol development broker on its own", runBroker},
	{"audit", "check the money invariants in PostgreSQL (exit 1 on a violation, 2 if it could not check)", runAudit},
	{"bench", "drive load through the REST API and report throughput, latency and errors (optionally audit)", runBench},
	{"cluster", "cluster status: nodes, roles, health, partitions owned, epochs, lag and unflushed rows", runCluster},
	{"node", "node drain <node-id>: move a node's partitions away so it can be stopped safely", runNode},
	{"partitions", "partitions ls: list partitions, owners, epochs and committed offsets", runPartitions},
	{"apikey", "apikey create|ls|revoke: API keys (tokens are shown once; only their hashes are stored)", runAPIKey},
	{"user", "user create|ls|disable: users who log in for short-lived tokens (roles admin, operator, teller, customer)", func(args []string, stdout io.Writer) error {
		return runUser(args, stdout, os.Stdin)
	}},
	{"signing-key", "signing-key rotate|ls|retire: the Ed25519 keys that sign user tokens", runSigningKey},
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	engine.TuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout)
		if err == nil {
			return 0
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(stderr, "bursar "+c.name+":", ee.err)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "bursar "+c.name+":", err)
		return 1
	}
	fmt.Fprintf(stderr, "bursar: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: bursar <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun 'bursar <command> --help' for its flags. Every flag also reads an environment variable:")
	fmt.Fprintln(w, "BURSAR_<FLAG_NAME> (upper case, - as _), or DATABASE_URL, KAFKA_BROKERS, REDIS_URL.")
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	switch flagName {
	case "database-url":
		return "DATABASE_URL"
	case "kafka-brokers":
		return "KAFKA_BROKERS"
	case "redis-url":
		return "REDIS_URL"
	}
	return "BURSAR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet returns a flag set whose usage lists each flag with its
// environment variable and default.
func newFlagSet(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("bursar "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: bursar %s [flags]\n\n%s\n\nFlags (environment variable in brackets):\n", name, summary)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(w, "  --%s [%s]\n        %s (default %s)\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	return fs
}

// parseFlags applies environment variables to flags not given on the
// command line, then parses.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	return nil
}
