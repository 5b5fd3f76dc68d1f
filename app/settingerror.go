package app

import (
	"errors"
	"io/fs"
	"syscall"
)

// SettingError is a start-up failure caused by one setting: the flag that
// set it, its value and what went wrong. The command line prints it as one
// line ("--data-dir /data: permission denied"), so that a user knows which
// setting to fix without reading fx's dependency chain. It reaches the
// caller through fx's and dig's wrapping: use errors.As.
type SettingError struct {
	Flag  string // e.g. "--data-dir"
	Value string // the setting's value, e.g. "/data"
	Err   error  // the cause
}

func (e *SettingError) Error() string {
	if e.Value == "" {
		return e.Flag + ": " + e.Err.Error()
	}
	return e.Flag + " " + e.Value + ": " + e.Err.Error()
}

func (e *SettingError) Unwrap() error { return e.Err }

// settingError is a SettingError whose cause is cut down to what the user
// can act on: an operating system error ("permission denied", "address
// already in use", "no such file or directory") stands for itself, since
// the flag and value already say where; anything else (a malformed PEM or
// keys file) is kept whole.
func settingError(flag, value string, err error) *SettingError {
	var errno syscall.Errno
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &errno):
		err = errno
	case errors.As(err, &pathErr) && pathErr.Path == value:
		err = pathErr.Err // "not a directory": the path is the value
	}
	return &SettingError{Flag: flag, Value: value, Err: err}
}
