package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestServeRefusesBadFlags: serve checks its flags before it touches
// anything, exits 2 and names the flag.
func TestServeRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--partitions", "0"}, "--partitions"},
		{[]string{"--partitions", "4097"}, "--partitions"},
		{[]string{"--event-partitions", "-1"}, "--event-partitions"},
		{[]string{"--event-partitions", "10001"}, "--event-partitions"},
		{[]string{"--roles", "ingress,oracle"}, "--roles"},
		{[]string{"--kafka-linger", "-1ms"}, "--kafka-linger"},
		{[]string{"--max-inflight", "0"}, "--max-inflight"},
		{[]string{"--batch-items-max", "0"}, "--batch-items-max"},
		{[]string{"--batch-items-max", "1001", "--max-inflight", "1000"}, "--batch-items-max"},
		{[]string{"--max-batch-body-bytes", "0"}, "--max-batch-body-bytes"},
		{[]string{"--kafka-linger", "2s"}, "--kafka-linger"},
		{[]string{"--node-id", "a b"}, "--node-id"},
		{[]string{"--commands-retention", "-1s"}, "--commands-retention"},
		{[]string{"--broker-sync", "true"}, "--broker-sync"},
		{[]string{"--join", "127.0.0.1:7946"}, "--kafka-brokers"},
		{[]string{"--roles", "ingress"}, "--broker-sync=journal"},
		{[]string{"--roles", "engine", "--broker-sync", "group"}, "--broker-sync=group"},
		{[]string{"--events-retention", "-1s"}, "--events-retention"},
		{[]string{"--events-retention-bytes", "-1"}, "--events-retention-bytes"},
		{[]string{"--max-header-bytes", "100"}, "--max-header-bytes"},
		{[]string{"--http-header-timeout", "0s"}, "--http-header-timeout"},
		{[]string{"--http-body-timeout", "-1s"}, "--http-body-timeout"},
		{[]string{"--http-idle-timeout", "0s"}, "--http-idle-timeout"},
		{[]string{"--http-max-conns", "0"}, "--http-max-conns"},
		{[]string{"--http-max-conns-per-ip", "-1"}, "--http-max-conns-per-ip"},
		{[]string{"--tls-cert", "/nonexistent/cert.pem"}, "--tls-key"},
		{[]string{"--metrics-on", "both"}, "--metrics-on"},
		{[]string{"--auth", "maybe"}, "--auth"},
		{[]string{"--auth-refresh", "1ms"}, "--auth-refresh"},
		{[]string{"--gossip-key", "not base64!"}, "--gossip-key"},
		{[]string{"--gossip-key", "c2hvcnQ="}, "--gossip-key"}, // 5 bytes
		{[]string{"--gossip-key", "MDEyMzQ1Njc4OWFiY2RlZg==,c2hvcnQ="}, "key 2"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve", "--database-url", "postgres://127.0.0.1:1/none"}, tc.args...)
			if code := run(args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not name %s", stderr.String(), tc.want)
			}
		})
	}
}

// TestCommandsRefuseUnknownFormat: every command with --format refuses a
// value other than table or json before it does anything (exit 2), rather
// than quietly printing a table.
func TestCommandsRefuseUnknownFormat(t *testing.T) {
	db := []string{"--database-url", "postgres://127.0.0.1:1/none"}
	for _, args := range [][]string{
		append([]string{"audit", "--format", "yaml"}, db...),
		append([]string{"partitions", "ls", "--format", "yaml"}, db...),
		{"cluster", "status", "--addr", "127.0.0.1:1", "--format", "yaml"},
		append([]string{"bench", "baseline", "audit", "--format", "yaml"}, db...),
		{"bench", "--target", "http://127.0.0.1:1", "--format", "yaml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "--format") || stdout.Len() != 0 {
				t.Fatalf("stderr %q, stdout %q", stderr.String(), stdout.String())
			}
		})
	}
}
