package locklock_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// TestSecretRules: API.md §7's one rule for secrets, applied by the Service
// to every secret whatever carried it. Refused secrets change nothing.
func TestSecretRules(t *testing.T) {
	refused := map[string]string{
		"NUL":                 "a\x00b",
		"tab inside":          "a\tb",
		"newline":             "a\nb",
		"DEL":                 "a\x7fb",
		"C1 control U+0085":   "a\u0085b",
		"C1 control U+009F":   "\u009f",
		"invalid UTF-8":       "a\xffb",
		"lone surrogate byte": "\xed\xa0\x80",
		"257 bytes":           strings.Repeat("s", 257),
	}
	newOnly := map[string]string{
		"leading space":  " s",
		"trailing space": "s ",
		"leading tab":    "\ts", // a control character too
		"only a space":   " ",
	}
	accepted := []string{"s", "U+FFFD \ufffd", "ü✓😀", "inner space", "\u2028line sep", "\u00a0nbsp\u00a0", strings.Repeat("s", 256)}

	svc, _ := newService(t)
	id := uuidID(aUUID)
	for name, secret := range refused {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret}); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("acquire with %s: %v, want ErrInvalidArgument", name, err)
		}
		if _, err := svc.Release(t.Context(), id, secret); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("release with %s: %v, want ErrInvalidArgument", name, err)
		}
		if _, err := svc.Refresh(t.Context(), id, secret, 0); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("refresh with %s: %v, want ErrInvalidArgument", name, err)
		}
		if err := locklock.ValidateSecret(secret); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("ValidateSecret(%s): %v (the message must not quote the secret)", name, err)
		}
	}
	for name, secret := range newOnly {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret}); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("acquire with %s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := svc.Get(t.Context(), id); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatalf("a refused acquire left a lock: %v", err)
	}
	for _, secret := range accepted {
		if _, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret}); err != nil || !created {
			t.Errorf("acquire with %q: %v", secret, err)
			continue
		}
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret}); err != nil {
			t.Errorf("retried acquire with %q: %v", secret, err)
		}
		if _, err := svc.Refresh(t.Context(), id, secret, time.Minute); err != nil {
			t.Errorf("refresh with %q: %v", secret, err)
		}
		if _, err := svc.Release(t.Context(), id, secret); err != nil {
			t.Errorf("release with %q: %v", secret, err)
		}
	}
}

// TestOldSecretsComparedAsGiven: a lock that already has a secret with a
// space at one end (taken before the rule for new secrets, or through an
// engine directly) is released and refreshed with exactly that secret;
// the same secret without the space is simply wrong.
func TestOldSecretsComparedAsGiven(t *testing.T) {
	clock := locklock.NewManualClock(epoch)
	e := memory.New()
	t.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e, locklock.WithClock(clock))
	id := uuidID(aUUID)
	old := locklock.Lock{ID: id, AcquiredAt: epoch, ExpiresAt: epoch.Add(time.Hour), Guard: locklock.NewGuard(" old ")}
	if _, err := e.TryAcquire(t.Context(), old, epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Release(t.Context(), id, "old"); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Errorf("release with the trimmed secret: %v, want ErrSecretMismatch", err)
	}
	if _, err := svc.Refresh(t.Context(), id, " old ", time.Minute); err != nil {
		t.Errorf("refresh with the secret as given: %v", err)
	}
	if _, err := svc.Release(t.Context(), id, " old "); err != nil {
		t.Errorf("release with the secret as given: %v", err)
	}
}
