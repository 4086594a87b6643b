package eval

import (
	"fmt"
	"math"
)

// DefaultCalibrationBins is the M = 20 of the paper's Figure 2.
const DefaultCalibrationBins = 20

// CalibrationBin is one confidence bin (Lo, Hi] of a reliability diagram. Accuracy and Confidence
// are means over the bin's samples, zero when the bin is empty.
type CalibrationBin struct {
	Lo         float64 `json:"lo"`
	Hi         float64 `json:"hi"`
	Count      int     `json:"count"`
	Accuracy   float64 `json:"accuracy"`
	Confidence float64 `json:"confidence"`
}

// Calibration summarises how well max-softmax confidence matches accuracy.
type Calibration struct {
	ECE      float64          `json:"ece"`   // Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|
	MCE      float64          `json:"mce"`   // max over non-empty bins of |acc − conf|
	Brier    float64          `json:"brier"` // mean over samples of Σ_c (p_c − 1[y=c])²
	NLL      float64          `json:"nll"`
	Accuracy float64          `json:"accuracy"`
	N        int              `json:"n"`
	Bins     []CalibrationBin `json:"bins"`
}

// binIndex places confidence c in bin (m/M, (m+1)/M]. A confidence of exactly 0 has no such bin and
// goes into the first one, as it does with the usual torch/numpy implementations that would
// otherwise drop it. Edges are compared as the float64 values m/M so that a confidence equal to an
// edge lands in the lower bin regardless of rounding in c·M.
func binIndex(c float64, m int) int {
	i := int(math.Ceil(c*float64(m))) - 1
	i = max(0, min(i, m-1))
	for i > 0 && c <= float64(i)/float64(m) {
		i--
	}
	for i < m-1 && c > float64(i+1)/float64(m) {
		i++
	}
	return i
}

// ECE bins samples by confidence and returns the expected and maximum calibration errors with the
// per-bin table. Confidences must lie in [0, 1].
func ECE(confidence []float64, correct []bool, numBins int) (ece, mce float64, bins []CalibrationBin, err error) {
	if numBins <= 0 {
		return 0, 0, nil, fmt.Errorf("calibration: number of bins must be positive, got %d", numBins)
	}
	if len(confidence) != len(correct) {
		return 0, 0, nil, fmt.Errorf("calibration: %d confidences but %d correctness flags", len(confidence), len(correct))
	}
	if len(confidence) == 0 {
		return 0, 0, nil, fmt.Errorf("calibration: no samples")
	}
	bins = make([]CalibrationBin, numBins)
	for i := range bins {
		bins[i].Lo, bins[i].Hi = float64(i)/float64(numBins), float64(i+1)/float64(numBins)
	}
	for i, c := range confidence {
		if !(c >= 0 && c <= 1) {
			return 0, 0, nil, fmt.Errorf("calibration: confidence %v of sample %d is not in [0, 1]", c, i)
		}
		b := &bins[binIndex(c, numBins)]
		b.Count++
		b.Confidence += c
		if correct[i] {
			b.Accuracy++
		}
	}
	n := float64(len(confidence))
	for i := range bins {
		b := &bins[i]
		if b.Count == 0 {
			continue
		}
		b.Accuracy /= float64(b.Count)
		b.Confidence /= float64(b.Count)
		gap := math.Abs(b.Accuracy - b.Confidence)
		ece += float64(b.Count) / n * gap
		mce = max(mce, gap)
	}
	return ece, mce, bins, nil
}

// Calibrate computes ECE, MCE, the per-bin table, Brier score, NLL and accuracy from logits.
func Calibrate(l Logits, labels []int64, numBins int) (Calibration, error) {
	if err := l.checkLabels(labels); err != nil {
		return Calibration{}, err
	}
	conf := make([]float64, l.N)
	correct := make([]bool, l.N)
	var brier, nll float64
	nCorrect := 0
	for i := range l.N {
		row := l.Row(i)
		a, m, lse := rowStats(row)
		y := int(labels[i])
		conf[i] = math.Exp(m - lse)
		correct[i] = a == y
		if correct[i] {
			nCorrect++
		}
		nll += lse - float64(row[y])
		for c, v := range row {
			p := math.Exp(float64(v) - lse)
			if c == y {
				p--
			}
			brier += p * p
		}
	}
	ece, mce, bins, err := ECE(conf, correct, numBins)
	if err != nil {
		return Calibration{}, fmt.Errorf("%s: %w", l.name(), err)
	}
	n := float64(l.N)
	return Calibration{ECE: ece, MCE: mce, Brier: brier / n, NLL: nll / n,
		Accuracy: float64(nCorrect) / n, N: l.N, Bins: bins}, nil
}

// PoolCalibration merges the reliability tables of several evaluations (seeds of one model) into
// the table of all their samples together: bin counts add, per-bin accuracy and confidence are
// count-weighted means, and ECE, MCE and accuracy are recomputed from the merged bins. Brier and
// NLL, which bins do not carry, are sample-weighted means. The bins must have the same edges.
func PoolCalibration(cs ...Calibration) (Calibration, error) {
	if len(cs) == 0 {
		return Calibration{}, fmt.Errorf("pooling calibration: no tables")
	}
	out := Calibration{Bins: make([]CalibrationBin, len(cs[0].Bins))}
	for i, b := range cs[0].Bins {
		out.Bins[i].Lo, out.Bins[i].Hi = b.Lo, b.Hi
	}
	for k, c := range cs {
		if len(c.Bins) != len(out.Bins) {
			return Calibration{}, fmt.Errorf("pooling calibration: table %d has %d bins, table 0 has %d", k, len(c.Bins), len(out.Bins))
		}
		var n int
		for i, b := range c.Bins {
			o := &out.Bins[i]
			if math.Abs(b.Lo-o.Lo) > 1e-12 || math.Abs(b.Hi-o.Hi) > 1e-12 {
				return Calibration{}, fmt.Errorf("pooling calibration: bin %d of table %d is (%v, %v], of table 0 (%v, %v]", i, k, b.Lo, b.Hi, o.Lo, o.Hi)
			}
			o.Count += b.Count
			o.Accuracy += float64(b.Count) * b.Accuracy
			o.Confidence += float64(b.Count) * b.Confidence
			n += b.Count
		}
		if c.N != 0 && n != c.N {
			return Calibration{}, fmt.Errorf("pooling calibration: the bins of table %d hold %d samples, its n is %d", k, n, c.N)
		}
		out.N += n
		out.Brier += float64(n) * c.Brier
		out.NLL += float64(n) * c.NLL
	}
	if out.N == 0 {
		return Calibration{}, fmt.Errorf("pooling calibration: no samples in the bins")
	}
	n := float64(out.N)
	for i := range out.Bins {
		b := &out.Bins[i]
		if b.Count == 0 {
			continue
		}
		out.Accuracy += b.Accuracy / n
		b.Accuracy /= float64(b.Count)
		b.Confidence /= float64(b.Count)
		gap := math.Abs(b.Accuracy - b.Confidence)
		out.ECE += float64(b.Count) / n * gap
		out.MCE = max(out.MCE, gap)
	}
	out.Brier /= n
	out.NLL /= n
	return out, nil
}
