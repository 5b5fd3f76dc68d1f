package app

import (
	"github.com/locklock/locklock/engines/badger"
	"github.com/locklock/locklock/internal/metrics"
)

// storageSpace reports the free space of the engine's data directory; nil
// for engines without one (memory, etcd: etcd watches its own quota).
type storageSpace func() badger.Space

// metrics adapts the report for metrics.WatchStorage.
func (s storageSpace) metrics() (metrics.Storage, bool) {
	sp := s()
	return metrics.Storage{
		FreeBytes:           sp.Free,
		WriteReserveBytes:   sp.WriteReserve,
		ReleaseReserveBytes: sp.ReleaseReserve,
		WritesRefused:       sp.WritesRefused,
		ReleasesRefused:     sp.ReleasesRefused,
	}, sp.Known
}

// readyStorage is the "storage" member of /readyz's answer.
type readyStorage struct {
	FreeBytes           uint64 `json:"free_bytes"`
	WriteReserveBytes   uint64 `json:"write_reserve_bytes"`
	ReleaseReserveBytes uint64 `json:"release_reserve_bytes"`
	WritesRefused       bool   `json:"writes_refused"`
	ReleasesRefused     bool   `json:"releases_refused"`
}

// ready adapts the report for transport.WithReadyStorage; an unknown state
// (free space cannot be measured) leaves the member out.
func (s storageSpace) ready() any {
	m, ok := s.metrics()
	if !ok {
		return nil
	}
	return readyStorage(m)
}

// commitStats reports the engine's group commits (Badger); nil for engines
// without them.
type commitStats func() badger.CommitStats

// metrics adapts the report for metrics.WatchCommits.
func (c commitStats) metrics() metrics.Commits {
	st := c()
	return metrics.Commits{
		Batches:         st.Batches,
		Steps:           st.Steps,
		Reruns:          st.Reruns,
		BatchSteps:      st.BatchSizeBuckets(),
		CommitSeconds:   st.CommitTime.Seconds(),
		CommitDurations: st.CommitTimeBuckets(),
	}
}
