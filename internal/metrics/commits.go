package metrics

import "github.com/prometheus/client_golang/prometheus"

// Commits is what an engine's group commit has done since it started (the
// Badger engine's CommitStats): every writing step is committed in a batch
// with the others queued at the time, one write and one fsync per batch.
type Commits struct {
	Batches uint64 // transactions committed (or failed)
	Steps   uint64 // the steps they carried
	Reruns  uint64 // attempts discarded and run again
	// BatchSteps maps an upper bound to the batches of at most that many
	// steps (cumulative, as Prometheus buckets).
	BatchSteps map[float64]uint64
	// CommitSeconds is the total time spent committing; CommitDurations
	// maps an upper bound in seconds to the commits that took less
	// (cumulative).
	CommitSeconds   float64
	CommitDurations map[float64]uint64
}

// WatchCommits reports the group commit's batch sizes and commit durations,
// asking report at each scrape.
func (m *Metrics) WatchCommits(report func() Commits) {
	m.reg.MustRegister(&commitCollector{
		report: report,
		steps: prometheus.NewDesc("locklock_storage_commit_batch_steps",
			"Writing steps (acquires, releases, refreshes, removals of expired locks, sweep rounds) per storage commit: each commit is one write and one fsync.", nil, nil),
		duration: prometheus.NewDesc("locklock_storage_commit_duration_seconds",
			"Time to commit one batch of steps: the write and the fsync.", nil, nil),
		reruns: prometheus.NewDesc("locklock_storage_commit_reruns_total",
			"Batches run again before committing: a step failed after writing and was taken out, the batch was too big, or the commit conflicted.", nil, nil),
	})
}

type commitCollector struct {
	report                  func() Commits
	steps, duration, reruns *prometheus.Desc
}

func (c *commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.steps
	ch <- c.duration
	ch <- c.reruns
}

func (c *commitCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.report()
	ch <- prometheus.MustNewConstHistogram(c.steps, s.Batches, float64(s.Steps), s.BatchSteps)
	ch <- prometheus.MustNewConstHistogram(c.duration, s.Batches, s.CommitSeconds, s.CommitDurations)
	ch <- prometheus.MustNewConstMetric(c.reruns, prometheus.CounterValue, float64(s.Reruns))
}
