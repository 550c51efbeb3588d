package kafkalog

import (
	"os"

	"golang.org/x/sys/unix"
)

// dataSync writes out f's data and the metadata needed to read it back
// (its size), but not, say, its modification time: fdatasync(2).
func dataSync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// syncFS writes out every dirty page and inode of the file system holding
// f (syncfs(2)): the whole log in one call, PostgreSQL's dirty pages on
// the same disk included.
func syncFS(f *os.File) error {
	for {
		err := unix.Syncfs(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
