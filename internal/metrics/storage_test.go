package metrics_test

import (
	"testing"

	"github.com/locklock/locklock/internal/metrics"
)

// TestStorage: the free-space state is reported at each scrape, and left
// out while it is unknown (rather than reported as zero bytes free).
func TestStorage(t *testing.T) {
	m := metrics.New()
	state, known := metrics.Storage{FreeBytes: 5 << 20, WriteReserveBytes: 64 << 20, ReleaseReserveBytes: 32 << 20, WritesRefused: true, ReleasesRefused: true}, true
	m.WatchStorage(func() (metrics.Storage, bool) { return state, known })
	for name, want := range map[string]float64{
		"locklock_storage_free_bytes":       5 << 20,
		"locklock_storage_writes_refused":   1,
		"locklock_storage_releases_refused": 1,
	} {
		if got := value(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for ops, want := range map[string]float64{"writes": 64 << 20, "releases": 32 << 20} {
		if got := value(t, m, "locklock_storage_reserve_bytes", map[string]string{"ops": ops}); got != want {
			t.Errorf("reserve for %s = %v, want %v", ops, got, want)
		}
	}
	state.WritesRefused, state.ReleasesRefused = false, false
	if got := value(t, m, "locklock_storage_writes_refused", nil); got != 0 {
		t.Errorf("writes_refused after recovery = %v, want 0", got)
	}
	known = false
	if _, ok := gather(t, m)["locklock_storage_free_bytes"]; ok {
		t.Error("free bytes reported while unknown")
	}
}
