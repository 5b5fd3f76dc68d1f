package badger

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// File modes. The data directory holds every lock's salted secret hash, so
// only the server's own user may read it, as with the keys file: the
// directory is 0700 and its files 0600.
//
// Badger has no option for modes. It creates its tables, WALs, value log,
// DISCARD and LOCK files with 0666 (0644 under the usual umask 022) and only
// MANIFEST and KEYREGISTRY with 0600; a directory it creates is 0700, one
// that exists keeps its mode. Changing the process umask would change it
// for everything else in the process, so the engine sets the modes itself:
//
//   - the directory is made 0700 at open (an existing one is tightened). That
//     alone keeps other users out of every file in it, whatever the file's
//     own mode, including files Badger creates later;
//   - every file in it is made 0600 at open and at close, and while the
//     engine runs at most every modeCheckEvery (on a write), so that copies
//     and backups of the directory (cp -p, tar, rsync -a) carry 0600 as well.
//
// Where a chmod is refused (a volume root owned by another user, say) the
// engine logs a warning and goes on: the data is as exposed as before, and
// refusing to start would take the service down for it.
const (
	dirMode        fs.FileMode = 0o700
	fileMode       fs.FileMode = 0o600
	modeCheckEvery             = 5 * time.Second
)

// modeKeeper tightens the directory's and its files' modes.
type modeKeeper struct {
	dir   string
	log   *slog.Logger
	chmod func(name string, mode fs.FileMode) error // os.Chmod; a seam for the refused case
	last  atomic.Int64                              // UnixNano of the last pass over the files
}

// prepareDir creates dir with mode 0700, or tightens an existing one.
func (m *modeKeeper) prepareDir() error {
	fi, err := os.Stat(m.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(m.dir, dirMode); err != nil {
			return err
		}
		fi, err = os.Stat(m.dir) // MkdirAll applies the umask
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "open", Path: m.dir, Err: errors.New("not a directory")}
	}
	// A directory this process cannot write in fails here, with the
	// operating system's error: Badger would fail too, but only after the
	// chmod below warned, and with the cause flattened into its own text.
	probe, err := os.CreateTemp(m.dir, ".locklock-write-check-*")
	if err != nil {
		return err
	}
	_ = probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return err
	}
	if fi.Mode().Perm() != dirMode {
		if err := m.chmod(m.dir, dirMode); err != nil {
			m.log.Warn("cannot restrict the data directory to its owner (mode 0700); other local users may read the salted secret hashes in it",
				"dir", m.dir, "mode", fi.Mode().Perm().String(), "err", err)
		}
	}
	return nil
}

// tightenFiles makes every regular file in the directory 0600.
func (m *modeKeeper) tightenFiles() {
	m.last.Store(time.Now().UnixNano())
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		m.log.Warn("cannot list the data directory to restrict its files' modes", "dir", m.dir, "err", err)
		return
	}
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		fi, err := ent.Info()
		if err != nil || fi.Mode().Perm() == fileMode {
			continue // a file Badger just removed, or one already right
		}
		name := filepath.Join(m.dir, ent.Name())
		if err := m.chmod(name, fileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("cannot restrict a data file to its owner (mode 0600)", "file", name, "err", err)
		}
	}
}

// tightenFilesIfDue runs tightenFiles if the last pass is older than
// modeCheckEvery. Concurrent callers race on the timestamp: at most one
// of them passes.
func (m *modeKeeper) tightenFilesIfDue() {
	last := m.last.Load()
	if time.Since(time.Unix(0, last)) < modeCheckEvery || !m.last.CompareAndSwap(last, time.Now().UnixNano()) {
		return
	}
	m.tightenFiles()
}
