package kafkalog

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func TestBrokerLogNamesAFullDisk(t *testing.T) {
	full := &fs.PathError{Op: "write", Path: "/data/kafka/partitions/bursar.events-0/0.dat", Err: syscall.ENOSPC}
	quota := &fs.PathError{Op: "write", Path: "/data/kafka/groups.log", Err: syscall.EDQUOT}
	for _, tc := range []struct {
		name    string
		level   kfake.LogLevel
		format  string
		args    []any
		line    string // in the log; "" logs nothing
		noSpace bool
	}{
		{"segment write out of space", kfake.LogLevelWarn, "persist batch %s-%d: %v", []any{"bursar.events", 0, full}, "no space left on device", true},
		{"out of quota", kfake.LogLevelWarn, "persist group entry open: %v", []any{quota}, "no space left on device", true},
		{"another warning", kfake.LogLevelWarn, "persist batch open %s-%d: %v", []any{"t", 1, errors.New("permission denied")}, "embedded broker warning", false},
		{"an error", kfake.LogLevelError, "unable to %s", []any{"x"}, "embedded broker error", false},
		{"info is dropped", kfake.LogLevelInfo, "consumerJoin: group=%s", []any{"g"}, "", false},
		{"debug is dropped", kfake.LogLevelDebug, "RECONCILE SEND: member=%s", []any{"m"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			var told []error
			l := &brokerLog{log: slog.New(slog.NewTextHandler(&buf, nil)), onNoSpace: func(err error) { told = append(told, err) }}
			l.Logf(tc.level, tc.format, tc.args...)
			if tc.line == "" {
				if buf.Len() != 0 {
					t.Fatalf("logged %q", buf.String())
				}
			} else if !strings.Contains(buf.String(), tc.line) {
				t.Fatalf("log %q does not contain %q", buf.String(), tc.line)
			}
			if (len(told) == 1) != tc.noSpace {
				t.Fatalf("OnNoSpace told %v, want told: %v", told, tc.noSpace)
			}
		})
	}
}

// TestBrokerLogHoldsBackRepeats: a full disk fails every batch; the log
// gets one line per format per second, with the count it stood for,
// while OnNoSpace hears of every failure.
func TestBrokerLogHoldsBackRepeats(t *testing.T) {
	var buf bytes.Buffer
	told := 0
	l := &brokerLog{log: slog.New(slog.NewTextHandler(&buf, nil)), onNoSpace: func(error) { told++ }}
	full := &fs.PathError{Op: "write", Path: "seg", Err: syscall.ENOSPC}
	for range 500 {
		l.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", "t", 0, full)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || told != 500 {
		t.Fatalf("%d lines for 500 failures (told %d):\n%s", n, told, buf.String())
	}
	// A second later the next one is logged with the count held back.
	l.last["persist batch %s-%d: %v\x00nospace"].at = time.Now().Add(-2 * brokerLogEvery)
	l.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", "t", 0, full)
	if !strings.Contains(buf.String(), "similar_lines_suppressed=499") {
		t.Fatalf("no count of the held-back lines:\n%s", buf.String())
	}
	// The formats it tracks are bounded.
	for i := range 3 * brokerLogFormatsMax {
		l.Logf(kfake.LogLevelWarn, "format "+strings.Repeat("x", i)+" %d", i)
	}
	if len(l.last) > brokerLogFormatsMax {
		t.Fatalf("%d formats tracked, bound %d", len(l.last), brokerLogFormatsMax)
	}
}
