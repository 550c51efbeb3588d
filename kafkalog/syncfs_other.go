//go:build !linux

package kafkalog

import (
	"errors"
	"os"
)

// syncFS needs syncfs(2); elsewhere the broker fsyncs every batch instead.
func syncFS(*os.File) error { return errors.ErrUnsupported }

const groupSyncSupported = false
