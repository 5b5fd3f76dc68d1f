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

func TestSemaphoreConformance(t *testing.T) {
	conformance.RunSemaphores(t, conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine { return memory.New() },
	})
}

func TestSemaphoreEventsConformance(t *testing.T) {
	conformance.RunSemaphoreEvents(t, conformance.Harness{
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

// TestEventGate: while the gate says nobody can ask for events, the engine
// counts its events instead of building them; once it says otherwise, they
// reach the sink.
func TestEventGate(t *testing.T) {
	e := memory.New()
	defer e.Close()
	var published, skipped int
	quiet := true
	e.SetEventSink(func(evs ...*locklock.Event) { published += len(evs) })
	e.SetEventGate(func() bool { return quiet }, func(n int) { skipped += n })
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "gated"}
	now := time.Now()
	l, err := e.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if published != 0 || skipped != 1 {
		t.Fatalf("quiet: published %d, skipped %d; want 0 and 1", published, skipped)
	}
	quiet = false
	if _, err := e.Release(t.Context(), l.ID, now, func(locklock.Lock) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if published != 1 || skipped != 1 {
		t.Fatalf("listened to: published %d, skipped %d; want 1 and 1", published, skipped)
	}
}
