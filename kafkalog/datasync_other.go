//go:build !linux

package kafkalog

import (
	"errors"
	"os"
)

// dataSync is fsync where fdatasync(2) is not offered.
func dataSync(f *os.File) error { return f.Sync() }

// syncFS needs syncfs(2); elsewhere every round syncs file by file.
func syncFS(*os.File) error { return errors.ErrUnsupported }
