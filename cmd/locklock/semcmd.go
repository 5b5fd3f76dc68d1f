package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// cliTarget is a command's TARGET: a lock (uuid/<uuid>, key/<name>), a
// semaphore (semaphore/<kind>/<name>), or one of its slots
// (semaphore/<kind>/<name>/<slot>).
type cliTarget struct {
	client.Target
	semaphore bool
	slot      string // a slot's id; "" for the semaphore itself
}

// parseCLITarget reads a TARGET. Names hold no slash, so a third one in a
// semaphore's TARGET starts the slot id.
func parseCLITarget(s string) (cliTarget, error) {
	rest, ok := strings.CutPrefix(s, "semaphore/")
	if !ok {
		t, err := client.ParseTarget(s)
		return cliTarget{Target: t}, err
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok {
		return cliTarget{}, fmt.Errorf("%w: semaphore %q: want semaphore/uuid/<uuid> or semaphore/key/<name>, and /<slot> for a slot",
			locklock.ErrInvalidArgument, abbrev.String(s))
	}
	name, slot, hasSlot := strings.Cut(name, "/")
	if hasSlot && slot == "" {
		return cliTarget{}, fmt.Errorf("%w: semaphore %q: an empty slot id", locklock.ErrInvalidArgument, abbrev.String(s))
	}
	t, err := client.ParseTarget(kind + "/" + name)
	return cliTarget{Target: t, semaphore: true, slot: slot}, err
}

// String is the TARGET as the command line writes it.
func (t cliTarget) String() string {
	switch {
	case !t.semaphore:
		return t.Target.String()
	case t.slot != "":
		return "semaphore/" + t.Target.String() + "/" + t.slot
	}
	return "semaphore/" + t.Target.String()
}

// noun is what the command holds: a lock or a slot.
func (t cliTarget) noun() string {
	if t.semaphore {
		return "slot"
	}
	return "lock"
}

// checkTarget refuses flags that do not apply to what the TARGET names,
// and a TARGET that cmd cannot take: a slot for acquire, run and watch (a
// semaphore's), none for release and refresh. --limit is required where a
// slot is taken: a limit nobody chose would decide how many may hold.
func (f *lockFlags) checkTarget(cmd string, fs *flag.FlagSet, t cliTarget, stderr io.Writer) int {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	f.weightSet = set["weight"]
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "locklock %s: %s\n", cmd, fmt.Sprintf(format, args...))
		return exitUsage
	}
	if !t.semaphore {
		if set["limit"] || set["weight"] {
			return usage("--limit and --weight are for semaphores (semaphore/<kind>/<name>), not locks")
		}
		return exitOK
	}
	if set["lock-delay"] {
		return usage("--lock-delay is for locks: a semaphore's slots have none")
	}
	switch cmd {
	case "acquire", "run", "watch":
		if t.slot != "" {
			return usage("%s takes a semaphore, semaphore/<kind>/<name>, not one of its slots", cmd)
		}
		if cmd != "watch" && !set["limit"] {
			return usage("--limit is required for a semaphore: how many units may be held at once (1–%d)", locklock.MaxSemaphoreLimit)
		}
	case "release", "refresh":
		if t.slot == "" {
			return usage("%s takes a slot: semaphore/<kind>/<name>/<slot>, the slot id that acquire printed", cmd)
		}
	}
	return exitOK
}

// semaphoreCommand is acquire, release, refresh or status of a semaphore
// or a slot: what to print, or the error.
func semaphoreCommand(ctx context.Context, cmd string, t cliTarget, c *client.Client, f *lockFlags) (any, error) {
	sem := c.Semaphore(t.Target, f.limit)
	slot := client.Slot{ID: t.slot}
	switch cmd {
	case "acquire":
		opts := f.acquireOpts()
		if f.weightSet {
			opts = append(opts, client.WithWeight(f.weight))
		}
		return sem.Acquire(ctx, opts...)
	case "release":
		return sem.Release(ctx, slot, f.releaseOpts()...)
	case "refresh":
		return sem.Refresh(ctx, slot, client.WithSecret(f.secret), client.WithTTL(f.ttl))
	case "status":
		if t.slot != "" {
			return sem.Slot(ctx, t.slot)
		}
		return wholeSemaphore(ctx, sem)
	}
	return nil, fmt.Errorf("locklock %s: not a semaphore command", cmd)
}

// wholeSemaphore is the semaphore with all its slots: the pages of GET put
// together, so that status shows every slot of a large semaphore.
func wholeSemaphore(ctx context.Context, sem *client.Semaphore) (client.SemaphoreState, error) {
	st, err := sem.Get(ctx)
	for next := st.Next; err == nil && next != ""; {
		var page client.SemaphoreState
		if page, err = sem.Get(ctx, client.WithAfter(next)); err == nil {
			st.Slots, next = append(st.Slots, page.Slots...), page.Next
		}
	}
	st.Next = ""
	return st, err
}
