package main

import (
	"math/bits"
	"strconv"
)

// hist is a log-linear histogram of durations in microseconds: exact below
// 64 µs, then 64 buckets per power of two (under 1.6% relative error) up to
// about 2^33 µs (2.4 hours). It is cheap to record into and to merge, which
// is what the workers and the coordinator need.
type hist struct {
	Counts [histBuckets]uint64
	N      uint64
	Sum    uint64 // µs
	Max    uint64 // µs, exact
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = histSub * 28
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	i := histSub*(e+1) + int(v>>uint(e)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histValue returns a representative value (the middle) of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i%histSub + histSub)
	lo := m << uint(e)
	return lo + (uint64(1)<<uint(e))/2
}

// record adds one duration in microseconds.
func (h *hist) record(us uint64) {
	h.Counts[histIndex(us)]++
	h.N++
	h.Sum += us
	if us > h.Max {
		h.Max = us
	}
}

// merge adds o's observations to h.
func (h *hist) merge(o *hist) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	if o.Max > h.Max {
		h.Max = o.Max
	}
}

// quantile returns the q-quantile (0 < q <= 1) in microseconds, or 0 when h
// is empty.
func (h *hist) quantile(q float64) uint64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.N {
		rank = h.N
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return min(histValue(i), h.Max)
		}
	}
	return h.Max
}

// mean returns the average in microseconds.
func (h *hist) mean() float64 {
	if h.N == 0 {
		return 0
	}
	return float64(h.Sum) / float64(h.N)
}

// sparseHist is hist's compact wire form between worker and coordinator.
type sparseHist struct {
	B   map[string]uint64 `json:"b,omitempty"` // bucket index -> count
	N   uint64            `json:"n"`
	Sum uint64            `json:"sum"`
	Max uint64            `json:"max"`
}

func (h *hist) sparse() sparseHist {
	s := sparseHist{N: h.N, Sum: h.Sum, Max: h.Max, B: map[string]uint64{}}
	for i, c := range h.Counts {
		if c != 0 {
			s.B[strconv.Itoa(i)] = c
		}
	}
	return s
}

func (s sparseHist) hist() *hist {
	h := &hist{N: s.N, Sum: s.Sum, Max: s.Max}
	for k, c := range s.B {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < histBuckets {
			h.Counts[i] += c
		}
	}
	return h
}
