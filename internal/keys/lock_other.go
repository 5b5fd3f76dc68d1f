//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package keys

import "os"

// lockDir and syncDir do nothing here: concurrent AppendKey calls are not serialised.
func lockDir(*os.File) error { return nil }

func unlockDir(*os.File) {}

func syncDir(*os.File) error { return nil }
