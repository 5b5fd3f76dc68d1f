//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package keys

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on the open directory d, waiting
// for it.
func lockDir(d *os.File) error {
	for {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

func unlockDir(d *os.File) {
	_ = syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
}

// syncDir makes a rename in d durable.
func syncDir(d *os.File) error { return d.Sync() }
