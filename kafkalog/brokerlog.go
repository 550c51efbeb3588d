package kafkalog

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// brokerLog takes the embedded broker's warnings and errors into the
// node's log. kfake reports a failed write of its own files (a segment, an
// index, the groups log) only there, and answers the producer with
// UNKNOWN_SERVER_ERROR, which names no cause: a full disk must be found
// here, by the error's errno, and named. Each message format is logged at
// most once per brokerLogEvery, with the count of the lines it stood for,
// so a full disk does not flood the log with one line per batch.
type brokerLog struct {
	log       *slog.Logger
	onNoSpace func(error)

	mu   sync.Mutex
	last map[string]*brokerLogLine // by format; bounded by brokerLogFormatsMax
}

type brokerLogLine struct {
	at         time.Time
	suppressed int
}

const (
	brokerLogEvery      = time.Second
	brokerLogFormatsMax = 256 // kfake's formats are constants; a bound all the same
)

// NoSpace reports whether err is a file system out of space or out of
// quota (ENOSPC, EDQUOT).
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func (l *brokerLog) Logf(level kfake.LogLevel, format string, args ...any) {
	if level > kfake.LogLevelWarn || level == kfake.LogLevelNone {
		return
	}
	var noSpace error
	for _, a := range args {
		if err, ok := a.(error); ok && NoSpace(err) {
			noSpace = err
			break
		}
	}
	if noSpace != nil && l.onNoSpace != nil {
		l.onNoSpace(noSpace)
	}
	key := format
	if noSpace != nil {
		key += "\x00nospace" // not held back behind another error of the same format
	}
	suppressed, ok := l.admit(key, time.Now())
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	attrs := []any{"component", "broker", "detail", msg}
	if suppressed > 0 {
		attrs = append(attrs, "similar_lines_suppressed", suppressed)
	}
	switch {
	case noSpace != nil:
		l.log.Error("embedded broker: no space left on device (or out of quota) writing its log; writes are refused until space returns", append(attrs, "err", noSpace)...)
	case level == kfake.LogLevelError:
		l.log.Error("embedded broker error", attrs...)
	default:
		l.log.Warn("embedded broker warning", attrs...)
	}
}

// admit reports whether a line of format may be logged at now, and how many
// lines of it were held back since the last one.
func (l *brokerLog) admit(format string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]*brokerLogLine)
	}
	line := l.last[format]
	if line == nil {
		if len(l.last) >= brokerLogFormatsMax {
			clear(l.last)
		}
		l.last[format] = &brokerLogLine{at: now}
		return 0, true
	}
	if now.Sub(line.at) < brokerLogEvery {
		line.suppressed++
		return 0, false
	}
	n := line.suppressed
	line.at, line.suppressed = now, 0
	return n, true
}
