package eval

import (
	"fmt"
	"math"
)

// NamedScores is one set of per-sample scores, e.g. "CIFAR-10 (in)" or "SVHN".
type NamedScores struct {
	Name   string
	Scores []float64
}

// Histograms counts several score sets over shared bin edges, so their densities can be overlaid.
// Bins are [Edges[i], Edges[i+1]) except the last, which also holds the maximum (as numpy.histogram).
type Histograms struct {
	Edges []float64    `json:"edges"`
	Sets  []HistCounts `json:"sets"`
}

// HistCounts holds one set's bin counts.
type HistCounts struct {
	Name   string `json:"name"`
	Counts []int  `json:"counts"`
	Total  int    `json:"total"`
}

// NewHistograms bins every set over numBins equal-width bins spanning the range of all scores.
func NewHistograms(numBins int, sets ...NamedScores) (*Histograms, error) {
	if numBins <= 0 {
		return nil, fmt.Errorf("histogram: number of bins must be positive, got %d", numBins)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("histogram: no score sets")
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range sets {
		if len(s.Scores) == 0 {
			return nil, fmt.Errorf("histogram: score set %q is empty", s.Name)
		}
		for i, v := range s.Scores {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("histogram: score %d of set %q is %v", i, s.Name, v)
			}
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if lo == hi {
		// numpy's convention for a degenerate range: a unit-wide window around the value.
		lo, hi = lo-0.5, hi+0.5
	}
	return NewHistogramsRange(numBins, lo, hi, sets...)
}

// NewHistogramsRange bins over [lo, hi]; scores outside are clamped into the end bins, so a few
// extreme outliers need not squash the picture.
func NewHistogramsRange(numBins int, lo, hi float64, sets ...NamedScores) (*Histograms, error) {
	if numBins <= 0 {
		return nil, fmt.Errorf("histogram: number of bins must be positive, got %d", numBins)
	}
	if !(lo < hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return nil, fmt.Errorf("histogram: range [%v, %v] is empty or not finite", lo, hi)
	}
	h := &Histograms{Edges: make([]float64, numBins+1)}
	for i := range h.Edges {
		h.Edges[i] = lo + (hi-lo)*float64(i)/float64(numBins)
	}
	h.Edges[numBins] = hi
	for _, s := range sets {
		hc := HistCounts{Name: s.Name, Counts: make([]int, numBins), Total: len(s.Scores)}
		for i, v := range s.Scores {
			if math.IsNaN(v) {
				return nil, fmt.Errorf("histogram: score %d of set %q is NaN", i, s.Name)
			}
			b := int(math.Floor((v - lo) / (hi - lo) * float64(numBins)))
			b = max(0, min(b, numBins-1))
			// Rounding in the division can misplace values sitting on an edge.
			for b > 0 && v < h.Edges[b] {
				b--
			}
			for b < numBins-1 && v >= h.Edges[b+1] {
				b++
			}
			hc.Counts[b]++
		}
		h.Sets = append(h.Sets, hc)
	}
	return h, nil
}

// Density returns set i's counts normalised so the histogram integrates to 1.
func (h *Histograms) Density(i int) []float64 {
	hc := h.Sets[i]
	d := make([]float64, len(hc.Counts))
	if hc.Total == 0 {
		return d
	}
	for b, c := range hc.Counts {
		d[b] = float64(c) / float64(hc.Total) / (h.Edges[b+1] - h.Edges[b])
	}
	return d
}
