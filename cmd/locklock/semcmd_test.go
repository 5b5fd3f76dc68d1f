package main

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// cliSlot is the slot object acquire, release, refresh and status print.
type cliSlot struct {
	Namespace string            `json:"namespace"`
	Kind      string            `json:"kind"`
	Name      string            `json:"name"`
	ID        string            `json:"slot"`
	Limit     int               `json:"limit"`
	Weight    int               `json:"weight"`
	ExpiresIn int64             `json:"expires_in"`
	Token     uint64            `json:"fencing_token"`
	Protected bool              `json:"protected"`
	Holder    string            `json:"holder"`
	Metadata  map[string]string `json:"metadata"`
}

// cliSemaphore is the semaphore status prints.
type cliSemaphore struct {
	Name  string    `json:"name"`
	Limit int       `json:"limit"`
	InUse int       `json:"in_use"`
	Slots []cliSlot `json:"slots"`
	Next  *string   `json:"next"`
}

func decodeLine[T any](t *testing.T, what, stdout string) T {
	t.Helper()
	var v T
	if strings.Count(stdout, "\n") != 1 {
		t.Fatalf("%s: stdout %q is not one line", what, stdout)
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("%s: stdout %q: %v", what, stdout, err)
	}
	return v
}

// TestSemaphoreCommands walks acquire, status, refresh and release of a
// semaphore's slots through a real handler, with the lock commands' exit
// codes: 3 full, 4 not found, 5 refused, 2 usage and limit mismatch.
func TestSemaphoreCommands(t *testing.T) {
	s := newLockServer(t)
	sem := "semaphore/uuid/" + testUUID
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	// A protected slot, with labels.
	code, stdout, stderr := s.cli(t, nil, "acquire", "semaphore/uuid/"+strings.ToUpper(testUUID), "--limit", "3", "--secret", "s1", "--ttl", "1m",
		"--holder", "auto", "--metadata", "role=render")
	if code != exitOK || stderr != "" {
		t.Fatalf("acquire: exit %d (%q)", code, stderr)
	}
	a := decodeLine[cliSlot](t, "acquire", stdout)
	if len(a.ID) != locklock.SlotIDLen || a.Name != testUUID || a.Kind != "uuid" || a.Namespace != "public" || a.Limit != 3 || a.Weight != 1 ||
		!a.Protected || a.Token == 0 || a.ExpiresIn < 59 || a.Holder != host+":"+strconv.Itoa(os.Getpid()) || !maps.Equal(a.Metadata, map[string]string{"role": "render"}) {
		t.Errorf("acquire printed %+v", a)
	}
	if strings.Contains(stdout, "s1") || strings.Contains(stdout, "secret") {
		t.Errorf("stdout %q shows the secret", stdout)
	}
	// An open slot of weight 2 fills the semaphore.
	code, stdout, stderr = s.cli(t, nil, "acquire", sem, "--limit", "3", "--weight", "2")
	if code != exitOK {
		t.Fatalf("acquire --weight 2: exit %d (%q)", code, stderr)
	}
	b := decodeLine[cliSlot](t, "acquire --weight 2", stdout)
	if b.Weight != 2 || b.Protected || b.ID == a.ID {
		t.Errorf("second slot %+v", b)
	}
	slotA, slotB := sem+"/"+a.ID, sem+"/"+b.ID

	steps := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string // a part of the one error line
	}{
		{"full", nil, []string{"acquire", sem, "--limit", "3"}, exitHeld, "is full: 3 of 3 in use"},
		{"another limit", nil, []string{"acquire", sem, "--limit", "4"}, exitUsage, "has limit 3"},
		{"the same secret: a retry", nil, []string{"acquire", sem, "--limit", "3", "--secret", "s1"}, exitOK, ""},
		{"the secret from the environment", map[string]string{"LOCKLOCK_SECRET": "s1"}, []string{"acquire", sem, "--limit", "3"}, exitOK, ""},
		{"no limit", nil, []string{"acquire", sem}, exitUsage, "--limit is required"},
		{"limit 0", nil, []string{"acquire", sem, "--limit", "0"}, exitUsage, "limit 0"},
		{"weight 0", nil, []string{"acquire", sem, "--limit", "3", "--weight", "0"}, exitUsage, "weight 0"},
		{"weight over the limit", nil, []string{"acquire", sem, "--limit", "3", "--weight", "4"}, exitUsage, "weight 4"},
		{"lock-delay", nil, []string{"acquire", sem, "--limit", "3", "--lock-delay", "1s"}, exitUsage, "--lock-delay is for locks"},
		{"acquire of a slot id", nil, []string{"acquire", slotA, "--limit", "3"}, exitUsage, "not one of its slots"},
		{"limit on a lock", nil, []string{"acquire", "uuid/" + testUUID, "--limit", "3"}, exitUsage, "for semaphores"},
		{"weight on a lock", nil, []string{"acquire", "uuid/" + testUUID, "--weight", "1"}, exitUsage, "for semaphores"},
		{"status of a slot", nil, []string{"status", slotA}, exitOK, ""},
		{"refresh without the secret", nil, []string{"refresh", slotA, "--ttl", "1h"}, exitRefused, "secret"},
		{"refresh", nil, []string{"refresh", slotA, "--ttl", "1h", "--secret", "s1"}, exitOK, ""},
		{"refresh of the semaphore", nil, []string{"refresh", sem, "--secret", "s1"}, exitUsage, "takes a slot"},
		{"release of the semaphore", nil, []string{"release", sem}, exitUsage, "takes a slot"},
		{"release without the secret", nil, []string{"release", slotA}, exitRefused, "secret"},
		{"release", nil, []string{"release", slotA, "--secret", "s1"}, exitOK, ""},
		{"release again", nil, []string{"release", slotA, "--secret", "s1"}, exitNotFound, "no slot"},
		{"status of a gone slot", nil, []string{"status", slotA}, exitNotFound, "no slot"},
		{"a malformed slot id", nil, []string{"status", sem + "/nope"}, exitNotFound, "not a slot id"},
		{"release of an open slot", nil, []string{"release", slotB}, exitOK, ""},
		{"status of an empty semaphore", nil, []string{"status", sem}, exitNotFound, "semaphore"},
		{"a key semaphore anonymously", nil, []string{"acquire", "semaphore/key/jobs", "--limit", "1"}, exitRefused, "API key"},
		{"a key semaphore with a pro key", map[string]string{"LOCKLOCK_API_KEY": proKey}, []string{"acquire", "semaphore/key/jobs", "--limit", "1"}, exitOK, ""},
		{"no kind", nil, []string{"status", "semaphore/jobs"}, exitUsage, "semaphore/key/<name>"},
		{"bad kind", nil, []string{"status", "semaphore/lock/jobs"}, exitUsage, "want uuid or key"},
		{"bad uuid", nil, []string{"status", "semaphore/uuid/nope"}, exitUsage, "not a UUID"},
		{"empty slot id", nil, []string{"status", sem + "/"}, exitUsage, "empty slot id"},
		{"status takes no limit", nil, []string{"status", sem, "--limit", "3"}, exitUsage, "not defined"},
	}
	for _, st := range steps {
		code, stdout, stderr := s.cli(t, st.env, st.args...)
		if code != st.code {
			t.Fatalf("%s: exit %d, want %d (stderr %q)", st.name, code, st.code, stderr)
		}
		if code == exitOK {
			if sl := decodeLine[cliSlot](t, st.name, stdout); sl.ID == "" || sl.Token == 0 {
				t.Errorf("%s: stdout %q is not a slot", st.name, stdout)
			}
			if stderr != "" {
				t.Errorf("%s: stderr %q on success", st.name, stderr)
			}
			continue
		}
		if stdout != "" {
			t.Errorf("%s: stdout %q on failure", st.name, stdout)
		}
		if !strings.Contains(stderr, st.stderr) {
			t.Errorf("%s: stderr %q, want it to mention %q", st.name, stderr, st.stderr)
		}
		if !strings.Contains(stderr, "Usage:") && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: stderr %q is more than one line", st.name, stderr)
		}
	}
}

// TestSemaphoreStatus: status prints the semaphore with its limit, the
// units in use and every slot — all pages of a large one — by token.
func TestSemaphoreStatus(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	c, err := client.New(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	const n = locklock.MaxSlotsPage + 5
	sem := c.Semaphore(client.UUID(testUUID), n+1)
	slots := make([]client.Slot, n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				var err error
				if slots[i], err = sem.Acquire(t.Context(), client.Unprotected()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(slots, func(a, b client.Slot) int { return cmp.Compare(a.FencingToken, b.FencingToken) })
	var ids []string
	for _, sl := range slots {
		ids = append(ids, sl.ID)
	}
	code, stdout, stderr := s.cli(t, nil, "status", "semaphore/uuid/"+testUUID)
	if code != exitOK {
		t.Fatalf("status: exit %d (%q)", code, stderr)
	}
	st := decodeLine[cliSemaphore](t, "status", stdout)
	if st.Name != testUUID || st.Limit != n+1 || st.InUse != n || len(st.Slots) != n || st.Next != nil {
		t.Fatalf("status: %s %d/%d, %d slots, next %v; want all %d slots", st.Name, st.InUse, st.Limit, len(st.Slots), st.Next, n)
	}
	for i, sl := range st.Slots {
		if sl.ID != ids[i] {
			t.Fatalf("slot %d is %s, want %s (by token)", i, sl.ID, ids[i])
		}
	}
}

// semaphoreState is the semaphore as the server has it, or an error.
func semaphoreState(t *testing.T, s *lockServer, id string) (client.SemaphoreState, error) {
	t.Helper()
	c, err := client.New(s.URL, client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return c.Semaphore(client.UUID(id), 0).Get(ctx)
}

// TestWatchSemaphoreCommand: a semaphore's watch prints its state (no
// "semaphore" while it has no slot), then one line per slot event with
// "slot" in place of "lock"; a fresh watch's state lists the slots.
func TestWatchSemaphoreCommand(t *testing.T) {
	s := newLockServer(t)
	sem := "semaphore/uuid/" + testUUID
	w := startWatch(t, s, nil, sem)
	if got := w.lines(t, 1); got[0].Type != "state" || got[0].Semaphore != nil || got[0].Lock != nil || got[0].ID == "" {
		t.Fatalf("first line %+v, want the state of a semaphore without slots", got[0])
	}
	code, stdout, stderr := s.cli(t, nil, "acquire", sem, "--limit", "2", "--weight", "2", "--holder", "h1")
	if code != exitOK {
		t.Fatalf("acquire: %d %s", code, stderr)
	}
	sl := decodeLine[cliSlot](t, "acquire", stdout)
	// A lock of the same name is not the semaphore's.
	if code, _, stderr := s.cli(t, nil, "acquire", "uuid/"+testUUID); code != exitOK {
		t.Fatalf("acquire the lock: %d %s", code, stderr)
	}
	if code, _, stderr := s.cli(t, nil, "release", sem+"/"+sl.ID); code != exitOK {
		t.Fatalf("release: %d %s", code, stderr)
	}
	got := w.lines(t, 3)
	if got[1].Type != "acquired" || got[1].Slot == nil || got[1].Lock != nil || got[1].Slot.ID != sl.ID || got[1].Slot.Weight != 2 ||
		got[1].Slot.Holder != "h1" || got[1].At == nil {
		t.Errorf("second line %+v, want the slot's acquisition", got[1])
	}
	if got[2].Type != "released" || got[2].Slot == nil || got[2].Slot.ID != sl.ID {
		t.Errorf("third line %+v, want the slot's release", got[2])
	}
	raw, err := os.ReadFile(w.out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(raw)), "\n"); len(lines) != 3 || !strings.Contains(lines[1], `"slot":{`) || strings.Contains(lines[1], `"lock"`) {
		t.Errorf("printed %q", lines)
	}
	if code := w.interrupt(t); code != exitOK {
		t.Errorf("exit code on SIGINT %d, want 0", code)
	}

	code, stdout, _ = s.cli(t, nil, "acquire", sem, "--limit", "2")
	if code != exitOK {
		t.Fatalf("acquire: %d", code)
	}
	sl = decodeLine[cliSlot](t, "acquire", stdout)
	w = startWatch(t, s, nil, sem)
	state := w.lines(t, 1)[0]
	if state.Type != "state" || state.Semaphore == nil || state.Semaphore.Limit != 2 || state.Semaphore.InUse != 1 ||
		len(state.Semaphore.Slots) != 1 || state.Semaphore.Slots[0].ID != sl.ID {
		t.Errorf("state %+v, want the semaphore with slot %s", state, sl.ID)
	}
	w.interrupt(t)

	if code, _, stderr := s.cli(t, nil, "watch", sem+"/"+sl.ID); code != exitUsage || !strings.Contains(stderr, "not one of its slots") {
		t.Errorf("watch of a slot: exit %d (%q), want %d", code, stderr, exitUsage)
	}
}
