//go:build unix

package main

import "syscall"

// job is CMD and everything it started: its process group and, where run
// can adopt orphans (Linux), descendants that left the group (a daemon's
// double fork and setsid) but are still run's children.
type job struct{ group int }

// signal sends sig to every process of the job.
func (j job) signal(sig syscall.Signal) {
	_ = syscall.Kill(-j.group, sig)
	for _, pid := range strays() {
		_ = syscall.Kill(pid, sig)
	}
}

// alive reports whether any process of the job is left, first reaping those
// that have exited (a zombie still counts as a group member). Call it only
// after CMD itself was waited for: reaping takes any child.
func (j job) alive() bool {
	reapChildren()
	return syscall.Kill(-j.group, 0) == nil || len(strays()) > 0
}

// reapChildren collects the exit status of every child that has exited.
func reapChildren() {
	var ws syscall.WaitStatus
	for {
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
