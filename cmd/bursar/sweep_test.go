package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSweepFlagsRefused: a bad --sweep or --baseline-pools list, or a
// flag that does not go with a sweep, is a usage error (exit 2) that
// names the flag, before anything is sent.
func TestSweepFlagsRefused(t *testing.T) {
	base := []string{"bench", "--target", "http://127.0.0.1:1", "--database-url", "postgres://127.0.0.1:1/none"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sweep", ""}, "--sweep: empty list"},
		{[]string{"--sweep", "0,8"}, "--sweep: 0 is outside [1, 65536]"},
		{[]string{"--sweep", "-1"}, "--sweep: -1 is outside"},
		{[]string{"--sweep", "1,x"}, `--sweep: "x" is not a whole number`},
		{[]string{"--sweep", "8,8"}, "--sweep: 8 appears twice"},
		{[]string{"--sweep", "1,65537"}, "--sweep: 65537 is outside [1, 65536]"},
		{[]string{"--sweep", "1,,2"}, "--sweep: empty value"},
		{[]string{"--sweep", "1", "--baseline-pools", "0"}, "--baseline-pools: 0 is outside [1, 1024]"},
		{[]string{"--sweep", "1", "--baseline-pools", "8,2000"}, "--baseline-pools: 2000 is outside"},
		{[]string{"--sweep", "1", "--baseline-pools", ""}, "--baseline-pools: empty list"},
		{[]string{"--sweep", "1", "--concurrency", "4"}, "--concurrency does not go with --sweep"},
		{[]string{"--sweep", "1", "--rate", "100"}, "--rate does not go with --sweep"},
		{[]string{"--sweep", "1", "--compare", "baseline"}, "--compare does not go with --sweep"},
		{[]string{"--sweep", "1", "--node-pid", "-3"}, "--node-pid"},
		{[]string{"--baseline-pools", "8"}, "need --sweep"},
		{[]string{"--node-pid", "1"}, "need --sweep"},
		{[]string{"--workload", "batch", "--compare", "baseline"}, "no batch endpoint"},
		{[]string{"--workload", "batch", "--batch-size", "1001"}, "batch size must be in [1, 1000]"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append(append([]string{}, base...), tc.args...), &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout %q", stdout.String())
			}
		})
	}
}
