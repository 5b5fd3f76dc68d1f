package memory_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine { return memory.New() },
	})
}

// TestTokensFitInADouble: tokens stay exact for clients that read JSON
// numbers as float64, and a later engine (a restart) starts above.
func TestTokensFitInADouble(t *testing.T) {
	first := memory.New()
	defer first.Close()
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "t"}
	now := time.Now()
	l, err := first.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Minute)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if l.Token >= 1<<53 || uint64(float64(l.Token+1)) != l.Token+1 {
		t.Errorf("token %d does not survive a round trip through float64", l.Token)
	}
	time.Sleep(2 * time.Millisecond)
	second := memory.New()
	defer second.Close()
	l2, err := second.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Minute)}, now)
	if err != nil || l2.Token <= l.Token {
		t.Errorf("token after restart %d (%v), want > %d", l2.Token, err, l.Token)
	}
}
