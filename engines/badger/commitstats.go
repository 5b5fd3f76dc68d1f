package badger

import (
	"math/bits"
	"time"
)

// Statistics of the group commit (commit.go).

func (c *committer) note(f func(*CommitStats)) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	f(&c.stats)
}

func (c *committer) snapshot() CommitStats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

// CommitStats describes the engine's group commits since Open.
type CommitStats struct {
	// Batches is the transactions committed (or whose commit failed): one
	// write and, with SyncWrites, one fsync each. A batch whose steps
	// wrote nothing (every lock was held, say) commits without either.
	Batches uint64
	// Steps is the steps those batches carried: acquires, releases,
	// refreshes, removals of an expired lock, rounds of Sweep.
	Steps uint64
	// Failed is the batches whose commit failed.
	Failed uint64
	// Reruns is the attempts discarded and run again: a step failed after
	// writing, the batch was too big, or the commit conflicted.
	Reruns uint64
	// StepTime is the total time spent running steps (every attempt's),
	// CommitTime the total time spent in Commit (the write and the sync).
	// The committer is idle the rest of the time.
	StepTime, CommitTime time.Duration
	// BatchSizes counts batches by size: BatchSizes[i] those of 2^i to
	// 2^(i+1)-1 steps (the last, maxBatch).
	BatchSizes [9]uint64
	// CommitTimes counts commits by duration: CommitTimes[0] those under
	// 1 µs, CommitTimes[i] those from 2^(i-1) to 2^i µs, the last one
	// everything from about 0.5 s on.
	CommitTimes [21]uint64
}

func (st *CommitStats) add(steps int, took time.Duration, failed bool) {
	st.Batches++
	st.Steps += uint64(steps)
	if failed {
		st.Failed++
	}
	st.CommitTime += took
	st.BatchSizes[min(bits.Len(uint(steps))-1, len(st.BatchSizes)-1)]++
	st.CommitTimes[min(bits.Len64(uint64(took/time.Microsecond)), len(st.CommitTimes)-1)]++
}

// StepsPerBatch is the mean batch size, or 0 before the first batch.
func (st CommitStats) StepsPerBatch() float64 {
	if st.Batches == 0 {
		return 0
	}
	return float64(st.Steps) / float64(st.Batches)
}

// Sub is the stats accumulated since an earlier snapshot.
func (st CommitStats) Sub(earlier CommitStats) CommitStats {
	d := CommitStats{
		Batches:    st.Batches - earlier.Batches,
		Steps:      st.Steps - earlier.Steps,
		Failed:     st.Failed - earlier.Failed,
		Reruns:     st.Reruns - earlier.Reruns,
		StepTime:   st.StepTime - earlier.StepTime,
		CommitTime: st.CommitTime - earlier.CommitTime,
	}
	for i := range d.BatchSizes {
		d.BatchSizes[i] = st.BatchSizes[i] - earlier.BatchSizes[i]
	}
	for i := range d.CommitTimes {
		d.CommitTimes[i] = st.CommitTimes[i] - earlier.CommitTimes[i]
	}
	return d
}

// CommitStats returns the group-commit statistics since Open (after Close,
// the final ones).
func (e *Engine) CommitStats() CommitStats { return e.commit.snapshot() }

// BatchSizeBuckets is the batch-size histogram as Prometheus takes it: for
// each upper bound, the batches of at most that many steps.
func (st CommitStats) BatchSizeBuckets() map[float64]uint64 {
	out := make(map[float64]uint64, len(st.BatchSizes))
	var n uint64
	for i, c := range st.BatchSizes {
		n += c
		out[float64(uint64(2)<<i-1)] = n
	}
	return out
}

// CommitTimeBuckets is the commit-duration histogram as Prometheus takes
// it: for each upper bound in seconds, the commits that took less. The last
// bucket, open-ended, is left to the total count.
func (st CommitStats) CommitTimeBuckets() map[float64]uint64 {
	out := make(map[float64]uint64, len(st.CommitTimes)-1)
	var n uint64
	for i, c := range st.CommitTimes[:len(st.CommitTimes)-1] {
		n += c
		out[(time.Microsecond << i).Seconds()] = n
	}
	return out
}
