package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AppendKey adds k to the keys file at path, creating the file with
// [Default] plus k when it does not exist. The result must validate (a
// duplicate id or hash, an unknown plan, a bad namespace... are refused, and
// then the file is not touched).
//
// The file is replaced atomically: the new content goes to a temporary file
// in the same directory (mode 0600, or the existing file's mode), which is
// fsynced and renamed over the target, and then the directory is fsynced. A
// reader — a server reloading on SIGHUP — sees the old file or the new one,
// never a mix. A symbolic link at path is followed, so the link stays.
// Concurrent AppendKey calls on the same directory are serialised with an
// advisory lock on the directory (on Unix systems), so none is lost.
func AppendKey(path string, k Key) error {
	target, err := resolve(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := lockDir(d); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer unlockDir(d)

	f := Default()
	mode := fs.FileMode(0o600)
	data, err := os.ReadFile(target)
	switch {
	case err == nil:
		if f, err = Parse(data); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if st, err := os.Stat(target); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, fs.ErrNotExist):
		// Start from the defaults.
	default:
		return err
	}
	f.Keys = append(f.Keys, k)
	if err := f.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out, err := Marshal(f)
	if err != nil {
		return err
	}
	if err := writeAtomic(target, out, mode); err != nil {
		return err
	}
	if err := syncDir(d); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// resolve follows a symbolic link at path, if any, so that the rename
// replaces the file it points to rather than the link.
func resolve(path string) (string, error) {
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&fs.ModeSymlink == 0 {
		return path, nil // a missing file is created; other errors show on read
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	return target, nil
}

// writeAtomic writes data to a temporary file next to path, with mode,
// fsyncs it and renames it over path. The caller fsyncs the directory.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
