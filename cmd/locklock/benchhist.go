package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets, like HdrHistogram:
// exact below 128 ns, then 128 buckets per power of two, so that a
// percentile is within 1% of the true value. It covers up to 2^40 ns (18
// minutes); min, max and the sum are exact.
type histogram struct {
	counts        []uint64 // allocated at the first record
	n             int64
	sum, min, max time.Duration
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

func histIndex(v uint64) int {
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	s := max(bits.Len64(v)-histSubBits-1, 0)
	return s*histSub + int(v>>s)
}

// histValue is the middle of bucket i.
func histValue(i int) time.Duration {
	s := max(i/histSub-1, 0)
	low := uint64(i-s*histSub) << s
	return time.Duration(low + (uint64(1)<<s-1)/2)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
		h.min = d
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
	h.sum += d
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 {
		h.counts = make([]uint64, histBuckets)
		h.min, h.max = o.min, o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// quantile is the latency below which a fraction q of the requests fell.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(histValue(i), h.min), h.max)
		}
	}
	return h.max
}
