//go:build linux || darwin

package badger

import "syscall"

// freeBytes is the space that may still be allocated on dir's filesystem by
// a process without root's privilege (f_bavail): root may use the blocks
// ext4 reserves for it, but the engine keeps its reserve without counting on
// them.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
