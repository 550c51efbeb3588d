//go:build unix

package kafkalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrDataDirInUse is StartBroker's error when another process holds the
// data directory.
var ErrDataDirInUse = errors.New("kafkalog: the data directory is in use by another process")

// lockDataDir takes an exclusive lock on dir/LOCK for as long as the
// returned file stays open (the kernel drops it when the process ends,
// however it ends). Two brokers on one log, or two journals writing one
// directory, would each overwrite the other's files.
func lockDataDir(dir string) (*os.File, error) {
	name := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kafkalog: lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s holds %s", ErrDataDirInUse, holder, name)
		}
		return nil, fmt.Errorf("kafkalog: lock file %s: %w", name, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
