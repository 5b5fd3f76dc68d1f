// Command locklock runs the Locklock lock service.
//
//	locklock serve [flags]   serve the HTTP API (see locklock serve -h)
//	locklock keys new|list   make an API key, or list a keys file
//	locklock acquire|release|status|refresh TARGET [flags]
//	                         one lock (or semaphore) operation against a server
//	locklock run TARGET [flags] -- CMD ARGS...
//	                         run CMD while holding the lock (or a slot)
//	locklock watch [TARGET]  print a lock's, a semaphore's or a namespace's events
//	locklock version         print the version
//
// TARGET is a lock, uuid/<uuid> or key/<name>, or a semaphore,
// semaphore/uuid/<uuid> or semaphore/key/<name> (with --limit N), or one of
// its slots, semaphore/<kind>/<name>/<slot>.
//
// Every flag of serve can also be set by an environment variable named
// LOCKLOCK_ and the flag's name in upper case with '-' as '_'
// (--data-dir → LOCKLOCK_DATA_DIR). Flags win over the environment.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// run is main without the process: testable, and the only place that knows
// the subcommands.
func run(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr, env)
	case "keys":
		return keysCommand(args[1:], stdout, stderr, env)
	case "acquire", "release", "status", "refresh":
		return lockCommand(args[0], args[1:], stdout, stderr, env)
	case "run":
		return runCommand(args[1:], stderr, env)
	case "watch":
		return watchCommand(args[1:], stdout, stderr, env)
	case "bench":
		return benchCommand(args[1:], stdout, stderr, env)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "locklock", versionString())
		return exitOK
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "locklock: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: locklock <command> [flags]

Commands:
  serve     serve the lock API over HTTP (default: Badger in ./locklock-data on 127.0.0.1:8080)
  keys      make an API key (keys new) or list a keys file (keys list)
  acquire   acquire a lock:  locklock acquire uuid/<uuid> [--ttl 30s] [--wait 10s] [--secret S]
                             [--holder auto] [--metadata NAME=VALUE]... [--lock-delay 10s]
  release   release a lock:  locklock release uuid/<uuid> [--secret S]
  status    show a lock:     locklock status key/<name>
  refresh   extend a lock:   locklock refresh key/<name> --ttl 30s [--secret S]
  run       run a command under a lock:  locklock run key/<name> [--ttl 30s] -- CMD ARGS...
  watch     print a lock's events, a JSON line each:  locklock watch uuid/<uuid>
            (or a namespace's: locklock watch --kind key --prefix jobs.)
  bench     load-test a server:  locklock bench [--mode cycle] [--concurrency 64] [--duration 10s]
  version   print the version
  help      show this help

Semaphores (at most N units held at once, in slots of a weight each) with the
same commands:
  acquire   take a slot:     locklock acquire semaphore/key/<name> --limit N [--weight W] [--secret S]
  release   free a slot:     locklock release semaphore/key/<name>/<slot> [--secret S]
  refresh   extend a slot:   locklock refresh semaphore/key/<name>/<slot> --ttl 30s [--secret S]
  status    show a semaphore and its slots:  locklock status semaphore/key/<name>
            (or one slot: locklock status semaphore/key/<name>/<slot>)
  run       run a command holding a slot:  locklock run semaphore/key/<name> --limit N [--weight W] -- CMD ARGS...
  watch     print a semaphore's events:  locklock watch semaphore/key/<name>

Run 'locklock <command> -h' for a command's flags. The lock commands talk to
--server (LOCKLOCK_SERVER, default http://127.0.0.1:8080) with --api-key
(LOCKLOCK_API_KEY). Exit codes: 0 done, 1 other error, 2 usage (or a --limit
other than the semaphore's), 3 lock held (or in its lock-delay) or semaphore
full, 4 lock, semaphore or slot not found, 5 refused (secret mismatch,
unauthorized, forbidden).
`)
}
