package locklock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

var epoch = time.Date(2026, 11, 26, 15, 4, 5, 123456789, time.UTC)

func newService(t *testing.T, opts ...locklock.Option) (*locklock.Service, *locklock.ManualClock) {
	clock := locklock.NewManualClock(epoch)
	e := memory.New()
	t.Cleanup(func() { _ = e.Close() })
	return locklock.NewService(e, append([]locklock.Option{locklock.WithClock(clock)}, opts...)...), clock
}

func uuidID(name string) locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: name}
}

const aUUID = "180da65c-cf80-4997-8574-0c0801817d6f"

// TestAcquireValidation: bad requests are refused before anything changes.
func TestAcquireValidation(t *testing.T) {
	svc, _ := newService(t, locklock.WithMaxTTL(time.Hour), locklock.WithMaxWait(10*time.Second))
	cases := []struct {
		name string
		req  locklock.AcquireRequest
		want error
	}{
		{"upper-case uuid in ID", locklock.AcquireRequest{ID: uuidID(strings.ToUpper(aUUID))}, locklock.ErrInvalidUUID},
		{"bad uuid", locklock.AcquireRequest{ID: uuidID("nope")}, locklock.ErrInvalidUUID},
		{"bad key", locklock.AcquireRequest{ID: locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "a b"}}, locklock.ErrInvalidName},
		{"bad namespace", locklock.AcquireRequest{ID: locklock.ID{Namespace: "Public", Kind: locklock.KindUUID, Name: aUUID}}, locklock.ErrInvalidArgument},
		{"ttl under a second", locklock.AcquireRequest{ID: uuidID(aUUID), TTL: 999 * time.Millisecond}, locklock.ErrInvalidArgument},
		{"negative ttl", locklock.AcquireRequest{ID: uuidID(aUUID), TTL: -time.Second}, locklock.ErrInvalidArgument},
		{"ttl over the max", locklock.AcquireRequest{ID: uuidID(aUUID), TTL: time.Hour + time.Second}, locklock.ErrInvalidArgument},
		{"negative wait", locklock.AcquireRequest{ID: uuidID(aUUID), Wait: -time.Second}, locklock.ErrInvalidArgument},
		{"wait over the max", locklock.AcquireRequest{ID: uuidID(aUUID), Wait: 11 * time.Second}, locklock.ErrInvalidArgument},
		{"secret too long", locklock.AcquireRequest{ID: uuidID(aUUID), Secret: strings.Repeat("s", 257)}, locklock.ErrInvalidArgument},
	}
	for _, c := range cases {
		if _, _, err := svc.Acquire(t.Context(), c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := svc.Get(t.Context(), uuidID(aUUID)); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("a refused acquire left a lock: %v", err)
	}
	// The limits themselves are allowed.
	if _, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: uuidID(aUUID), TTL: time.Hour, Secret: strings.Repeat("s", 256)}); err != nil || !created {
		t.Errorf("acquire at the limits: %v", err)
	}
}

// TestTimesHaveMillisecondPrecision: what the API shows is what is stored.
func TestTimesHaveMillisecondPrecision(t *testing.T) {
	svc, _ := newService(t)
	l, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: uuidID(aUUID), TTL: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.AcquiredAt != epoch.Truncate(time.Millisecond) || l.AcquiredAt.Location() != time.UTC {
		t.Errorf("acquired_at %v, want %v in UTC", l.AcquiredAt, epoch.Truncate(time.Millisecond))
	}
	if l.Remaining() != 90*time.Second {
		t.Errorf("remaining %v, want 90s", l.Remaining())
	}
}

func TestRefreshAndReleaseValidation(t *testing.T) {
	svc, _ := newService(t, locklock.WithMaxTTL(time.Hour))
	id := uuidID(aUUID)
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(t.Context(), id, "s", 2*time.Hour); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("refresh over max ttl: %v", err)
	}
	if _, err := svc.Release(t.Context(), id, strings.Repeat("s", 300)); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("release with an oversized secret: %v", err)
	}
	l, err := svc.Get(t.Context(), id)
	if err != nil || l.Remaining() != time.Minute {
		t.Errorf("refused requests changed the lock: %+v %v", l, err)
	}
}

func TestListValidation(t *testing.T) {
	svc, _ := newService(t)
	bad := []locklock.ListRequest{
		{Namespace: "", Kind: locklock.KindUUID},
		{Namespace: "public", Kind: "both"},
		{Namespace: "public", Kind: locklock.KindKey, Limit: -1},
		{Namespace: "public", Kind: locklock.KindKey, Limit: locklock.MaxListLimit + 1},
		{Namespace: "public", Kind: locklock.KindKey, Prefix: strings.Repeat("a", 256)},
	}
	for _, req := range bad {
		if _, err := svc.List(t.Context(), req); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("List(%+v) = %v, want ErrInvalidArgument", req, err)
		}
	}
}

// sweepRecorder is a real memory engine that reports what each Sweep
// removed. It hides the engine's events (only Engine's methods are
// promoted), so the sweeper keeps the interval it is given.
type sweepRecorder struct {
	locklock.Engine
	swept chan int
}

func (r sweepRecorder) Sweep(ctx context.Context, now time.Time) (int, error) {
	n, err := r.Engine.Sweep(ctx, now)
	r.swept <- n
	return n, err
}

// TestSweeperRuns: the sweeper loop sweeps once per interval of the
// service's clock, removes expired locks, and stops with its context.
func TestSweeperRuns(t *testing.T) {
	clock := locklock.NewManualClock(epoch)
	engine := sweepRecorder{Engine: memory.New(), swept: make(chan int, 10)}
	svc := locklock.NewService(engine, locklock.WithClock(clock))
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: uuidID(aUUID), TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { svc.RunSweeper(ctx, time.Minute); close(done) }()

	// Once the sweeper has set its timer, move time past expiry but not
	// to the interval: no sweep yet.
	for clock.PendingTimers() == 0 {
		time.Sleep(time.Millisecond)
	}
	clock.Advance(30 * time.Second)
	select {
	case n := <-engine.swept:
		t.Fatalf("swept (%d) before the interval", n)
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(30 * time.Second)
	select {
	case n := <-engine.swept:
		if n != 1 {
			t.Errorf("the sweep removed %d locks, want the 1 expired", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper did not sweep when the interval passed")
	}
	cancel()
	<-done
}
