package locklock_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/locklock/locklock/locklock"
)

func TestNewID(t *testing.T) {
	cases := []struct {
		kind locklock.Kind
		name string
		want string // canonical name, or "" for an error
		err  error
	}{
		{locklock.KindUUID, "180da65c-cf80-4997-8574-0c0801817d6f", "180da65c-cf80-4997-8574-0c0801817d6f", nil},
		{locklock.KindUUID, "180DA65C-CF80-4997-8574-0C0801817D6F", "180da65c-cf80-4997-8574-0c0801817d6f", nil},
		{locklock.KindUUID, "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", nil},
		{locklock.KindUUID, "", "", locklock.ErrInvalidUUID},
		{locklock.KindUUID, "180da65ccf8049978574 0c0801817d6f", "", locklock.ErrInvalidUUID},
		{locklock.KindUUID, "180da65ccf8049978574c0c0801817d6f", "", locklock.ErrInvalidUUID},
		{locklock.KindUUID, "{180da65c-cf80-4997-8574-0c0801817d6f}", "", locklock.ErrInvalidUUID},
		{locklock.KindUUID, "180da65g-cf80-4997-8574-0c0801817d6f", "", locklock.ErrInvalidUUID},
		{locklock.KindUUID, "180da65c-cf80-4997-8574_0c0801817d6f", "", locklock.ErrInvalidUUID},
		{locklock.KindKey, "deploy:prod~v1.2_x-y", "deploy:prod~v1.2_x-y", nil},
		{locklock.KindKey, "CaseSensitive", "CaseSensitive", nil},
		{locklock.KindKey, strings.Repeat("a", 255), strings.Repeat("a", 255), nil},
		{locklock.KindKey, strings.Repeat("a", 256), "", locklock.ErrInvalidName},
		{locklock.KindKey, "", "", locklock.ErrInvalidName},
		{locklock.KindKey, "a/b", "", locklock.ErrInvalidName},
		{locklock.KindKey, "a b", "", locklock.ErrInvalidName},
		{locklock.KindKey, "é", "", locklock.ErrInvalidName},
		{locklock.KindKey, "a\x00b", "", locklock.ErrInvalidName},
		{"other", "x", "", locklock.ErrInvalidArgument},
	}
	for _, c := range cases {
		id, err := locklock.NewID(locklock.DefaultNamespace, c.kind, c.name)
		if !errors.Is(err, c.err) || (c.err == nil && id.Name != c.want) {
			t.Errorf("NewID(%s, %q) = %q, %v; want %q, %v", c.kind, c.name, id.Name, err, c.want, c.err)
		}
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ok := range []string{"public", "acme", "a", "team-1", strings.Repeat("a", 63)} {
		if err := locklock.ValidateNamespace(ok); err != nil {
			t.Errorf("ValidateNamespace(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "Acme", "a.b", "a_b", strings.Repeat("a", 64), "a\x00"} {
		if err := locklock.ValidateNamespace(bad); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("ValidateNamespace(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestGuard(t *testing.T) {
	g := locklock.NewGuard("hunter2")
	if !g.Protected() || !g.Admits("hunter2") {
		t.Fatal("a guard does not admit its own secret")
	}
	for _, wrong := range []string{"", "hunter", "hunter22", "Hunter2"} {
		if g.Admits(wrong) {
			t.Errorf("guard admits %q", wrong)
		}
	}
	if g2 := locklock.NewGuard("hunter2"); g2 == g {
		t.Error("two guards of one secret are equal: the salt is missing")
	}
	if strings.Contains(string(g), "hunter2") {
		t.Error("the guard holds the plain secret")
	}
	var unprotected locklock.Guard
	if unprotected.Protected() || !unprotected.Admits("") || !unprotected.Admits("anything") {
		t.Error("the zero guard must be unprotected and admit anyone")
	}
	// Printing or logging a guard never shows its bytes.
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("x", "guard", g)
	lock := locklock.Lock{Guard: g}
	slog.New(slog.NewJSONHandler(&js, nil)).Info("x", "lock", lock, "guard", g)
	marshalled, err := json.Marshal(lock)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(g), fmt.Sprintf("%v %s %#v %+v", g, g, g, lock), text.String(), js.String(), string(marshalled)} {
		if strings.Contains(s, string(g)) || !strings.Contains(s, "[protected]") {
			t.Errorf("guard printed as %q", s)
		}
	}
}

func TestManualClock(t *testing.T) {
	start := locklock.NewManualClock(epoch).Now()
	c := locklock.NewManualClock(start)
	due := c.At(start.Add(10))
	past := c.At(start.Add(-1))
	select {
	case <-past:
	default:
		t.Error("a timer for the past did not fire at once")
	}
	c.Advance(9)
	select {
	case <-due:
		t.Fatal("fired early")
	default:
	}
	c.Advance(1)
	select {
	case got := <-due:
		if !got.Equal(start.Add(10)) {
			t.Errorf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire when due")
	}
}
