package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// watchLine is one event as `locklock watch` prints it: the server's event
// data plus the position, one JSON object per line (like `etcdctl watch -w
// json`), so that jq and scripts read it line by line.
type watchLine struct {
	Type         string                 `json:"type"`
	ID           string                 `json:"id,omitempty"`
	At           *time.Time             `json:"at,omitempty"`
	Lock         *client.Lock           `json:"lock,omitempty"`
	Slot         *client.Slot           `json:"slot,omitempty"`
	Semaphore    *client.SemaphoreState `json:"semaphore,omitempty"`
	DelayedUntil *time.Time             `json:"delayed_until,omitempty"`
}

const watchHelp = `
Prints one JSON line per event until interrupted (exit 0 on SIGINT or
SIGTERM): first "state" (one lock; "lock" absent when it is free) or
"ready" (a namespace), then acquired, refreshed, released, expired and
revoked events. A dropped connection is resumed where it left off; "reset"
says events were missed and a fresh state or ready follows.

With TARGET (uuid/<uuid> or key/<name>) it watches one lock; with
semaphore/<kind>/<name> one semaphore: its "state" carries "semaphore"
(absent when it has no slot) with its limit, the units in use and its
slots, and its events "slot" in place of "lock". Without TARGET, --kind
and --prefix select the locks and semaphores of the API key's namespace.
`

// watchCommand is `locklock watch`.
func watchCommand(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	const name = "locklock watch"
	fs, f := newLockFlagSet(name, stderr)
	kind := fs.String("kind", "", "namespace stream: only locks of this `kind` (uuid or key)")
	prefix := fs.String("prefix", "", "namespace stream: only names starting with this `prefix` (needs --kind)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [TARGET] [flags]\n%s\nFlags:\n", name, watchHelp)
		fs.PrintDefaults()
	}
	positional, err := parseLockArgs(fs, args, env)
	if err != nil {
		return parseFailure(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var stream *client.Stream
	switch {
	case len(positional) == 1:
		if *kind != "" || *prefix != "" {
			fmt.Fprintf(stderr, "%s: --kind and --prefix select a namespace stream; not with a TARGET\n", name)
			return exitUsage
		}
		target, c, code := lockTarget("watch", fs, positional, f, stderr)
		if c == nil {
			return code
		}
		if target.semaphore {
			stream = c.WatchSemaphore(ctx, target.Target)
		} else {
			stream = c.Watch(ctx, target.Target)
		}
	case len(positional) == 0:
		if *prefix != "" && *kind == "" {
			fmt.Fprintf(stderr, "%s: --prefix needs --kind\n", name)
			return exitUsage
		}
		c, err := client.New(f.server, client.WithAPIKey(f.apiKey), client.WithUserAgent("locklock-cli/"+versionString()))
		if err != nil {
			fmt.Fprintf(stderr, "%s: --server: %v\n", name, err)
			return exitUsage
		}
		stream = c.WatchNamespace(ctx, client.WatchOptions{Kind: locklock.Kind(*kind), Prefix: *prefix})
	default:
		fmt.Fprintf(stderr, "%s: want at most one TARGET, got %d arguments\n", name, len(positional))
		return exitUsage
	}
	defer stream.Close()
	enc := json.NewEncoder(stdout)
	for {
		ev, err := stream.Next()
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return exitOK // interrupted: the normal way to stop
			}
			fmt.Fprintln(stderr, name+":", oneLine(err))
			return exitCode(err)
		}
		line := watchLine{Type: ev.Type, ID: ev.ID, Lock: ev.Lock, Slot: ev.Slot, Semaphore: ev.Semaphore}
		if !ev.At.IsZero() {
			line.At = &ev.At
		}
		if !ev.DelayedUntil.IsZero() {
			line.DelayedUntil = &ev.DelayedUntil
		}
		if err := enc.Encode(line); err != nil {
			return exitOK // stdout closed (| head): nothing more to say
		}
	}
}
