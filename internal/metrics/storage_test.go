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

// TestCommits: the group commit's batch sizes and durations are histograms
// read at each scrape.
func TestCommits(t *testing.T) {
	m := metrics.New()
	c := metrics.Commits{
		Batches: 3, Steps: 70, Reruns: 2,
		BatchSteps:    map[float64]uint64{1: 1, 3: 1, 63: 2, 127: 3},
		CommitSeconds: 0.0015, CommitDurations: map[float64]uint64{0.0005: 2, 0.001: 3},
	}
	m.WatchCommits(func() metrics.Commits { return c })
	fams := gather(t, m)
	steps := fams["locklock_storage_commit_batch_steps"].GetMetric()[0].GetHistogram()
	if steps.GetSampleCount() != 3 || steps.GetSampleSum() != 70 || len(steps.GetBucket()) != 4 {
		t.Errorf("batch steps histogram: %v", steps)
	}
	dur := fams["locklock_storage_commit_duration_seconds"].GetMetric()[0].GetHistogram()
	if dur.GetSampleCount() != 3 || dur.GetSampleSum() != 0.0015 {
		t.Errorf("commit duration histogram: %v", dur)
	}
	if got := value(t, m, "locklock_storage_commit_reruns_total", nil); got != 2 {
		t.Errorf("reruns = %v, want 2", got)
	}
	c.Batches, c.Reruns = 4, 5
	if got := value(t, m, "locklock_storage_commit_batch_steps", nil); got != 4 {
		t.Errorf("batches after more commits = %v, want 4 (read at each scrape)", got)
	}
}
