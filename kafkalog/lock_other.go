//go:build !unix

package kafkalog

import (
	"errors"
	"os"
)

// ErrDataDirInUse is StartBroker's error when another process holds the
// data directory.
var ErrDataDirInUse = errors.New("kafkalog: the data directory is in use by another process")

// lockDataDir is a no-op where flock(2) is not available.
func lockDataDir(string) (*os.File, error) { return nil, nil }
