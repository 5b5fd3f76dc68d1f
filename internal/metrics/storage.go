package metrics

import "github.com/prometheus/client_golang/prometheus"

// Storage is the free-space state of an engine's data directory, as the
// Badger engine reports it (engines/badger.Space).
type Storage struct {
	FreeBytes           uint64 // free on the data directory's filesystem
	WriteReserveBytes   uint64 // below it, acquires and refreshes are refused
	ReleaseReserveBytes uint64 // below it, releases too
	WritesRefused       bool
	ReleasesRefused     bool
}

// WatchStorage reports the data directory's free space and what is refused
// for lack of it, asking report at each scrape. When report says the state
// is unknown (ok false: free space cannot be measured), the scrape leaves
// these metrics out rather than report zeros.
func (m *Metrics) WatchStorage(report func() (s Storage, ok bool)) {
	m.reg.MustRegister(&storageCollector{
		report: report,
		free: prometheus.NewDesc("locklock_storage_free_bytes",
			"Bytes free on the data directory's filesystem.", nil, nil),
		reserve: prometheus.NewDesc("locklock_storage_reserve_bytes",
			"Free space kept in reserve for Badger's own writes: below ops=\"writes\" acquires and refreshes are refused, below ops=\"releases\" releases too.",
			[]string{"ops"}, nil),
		writesRefused: prometheus.NewDesc("locklock_storage_writes_refused",
			"1 while acquires and refreshes are refused (503) because free space is below its reserve, else 0.", nil, nil),
		releasesRefused: prometheus.NewDesc("locklock_storage_releases_refused",
			"1 while releases are refused too (503), free space being below the releases' reserve, else 0.", nil, nil),
	})
}

type storageCollector struct {
	report                                        func() (Storage, bool)
	free, reserve, writesRefused, releasesRefused *prometheus.Desc
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.free
	ch <- c.reserve
	ch <- c.writesRefused
	ch <- c.releasesRefused
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.report()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(s.FreeBytes))
	ch <- prometheus.MustNewConstMetric(c.reserve, prometheus.GaugeValue, float64(s.WriteReserveBytes), "writes")
	ch <- prometheus.MustNewConstMetric(c.reserve, prometheus.GaugeValue, float64(s.ReleaseReserveBytes), "releases")
	ch <- prometheus.MustNewConstMetric(c.writesRefused, prometheus.GaugeValue, boolValue(s.WritesRefused))
	ch <- prometheus.MustNewConstMetric(c.releasesRefused, prometheus.GaugeValue, boolValue(s.ReleasesRefused))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
