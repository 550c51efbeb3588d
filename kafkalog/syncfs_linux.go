package kafkalog

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS writes out every dirty page and inode of the file system holding
// f (syncfs(2)): one call for all of the broker's segment and index files.
func syncFS(f *os.File) error {
	for {
		err := unix.Syncfs(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

const groupSyncSupported = true
