package eval

import (
	"fmt"
	"math"
)

// ScorePXSim names HDGE's contrastive OOD score (see ContrastiveScores).
const ScorePXSim Score = "pxsim"

// ContrastConfig holds the training settings the contrastive score must repeat: the temperature
// τ, whether logits and queue columns are L2-normalised, the contrast form ("official" or
// "eq13") and the label smoothing of the label distribution.
type ContrastConfig struct {
	Tau            float64
	NormLogits     bool
	Form           string
	LabelSmoothing float64
}

// Validate reports settings the score cannot use, naming the flag that sets each.
func (c ContrastConfig) Validate() error {
	switch {
	case !(c.Tau > 0) || math.IsInf(c.Tau, 0):
		return fmt.Errorf("pxsim: --tau must be positive, got %g", c.Tau)
	case c.Form != "official" && c.Form != "eq13":
		return fmt.Errorf("pxsim: --contrast must be official or eq13, got %q", c.Form)
	case c.LabelSmoothing < 0 || c.LabelSmoothing >= 1:
		return fmt.Errorf("pxsim: --label-smoothing must be in [0, 1), got %g", c.LabelSmoothing)
	}
	return nil
}

// ContrastiveScores is HDGE's released evaluation score pxsim: for each sample, the log-softmax
// of its positive l_pos against the K queue entries l_neg, plus log K, with the label taken as
// the predicted class ŷ = argmax f(x) (an OOD set's labels mean nothing to the model):
//
//	d      = one-hot(ŷ), smoothed by LabelSmoothing: on = 1−ε+ε/C, off = ε/C
//	p      = f(x) / ‖f(x)‖,  q_k = queue[:, k] / ‖queue[:, k]‖   (when NormLogits)
//	l_pos  = logsumexp_c d_c·p_c          (official)   or  Σ_c d_c·p_c    (eq13)
//	l_neg,k = logsumexp_c d_c·q_k,c       (official)   or  Σ_c d_c·q_k,c  (eq13)
//	score  = l_pos/τ − logsumexp(l_pos/τ, l_neg,1/τ, …, l_neg,K/τ) + log K
//
// queue is C×K, row-major, the raw logits the training queue holds. l_neg depends on the sample
// only through ŷ, so logsumexp_k l_neg,k/τ is computed once per predicted class: C·K work for
// the whole set instead of the released B×C×K einsum.
func ContrastiveScores(l Logits, queue []float32, k int, cfg ContrastConfig) ([]float64, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := l.C
	if k <= 0 || len(queue) != c*k {
		return nil, fmt.Errorf("pxsim: queue of %d values is not %d classes × K=%d", len(queue), c, k)
	}
	eps := cfg.LabelSmoothing
	off := eps / float64(c)
	on := 1 - eps + off
	// Normalised queue columns, float64.
	q := make([]float64, c*k)
	for j := range k {
		var n float64
		for i := range c {
			v := float64(queue[i*k+j])
			q[i*k+j] = v
			n += v * v
		}
		if cfg.NormLogits {
			n = max(math.Sqrt(n), 1e-12)
			for i := range c {
				q[i*k+j] /= n
			}
		}
	}
	// Per column: the sum (eq13), and the shifted Σ_c exp(off·q_c) with its shift (official), so
	// that l_neg for any label costs O(1) per column.
	colSum, colMax, colExp := make([]float64, k), make([]float64, k), make([]float64, k)
	for j := range k {
		m := math.Inf(-1)
		for i := range c {
			colSum[j] += q[i*k+j]
			m = max(m, off*q[i*k+j])
		}
		for i := range c {
			colExp[j] += math.Exp(off*q[i*k+j] - m)
		}
		colMax[j] = m
	}
	negLSE := make([]float64, c) // logsumexp_k l_neg,k/τ for label c; NaN until needed
	for i := range negLSE {
		negLSE[i] = math.NaN()
	}
	vals := make([]float64, k)
	neg := func(y int) float64 {
		if !math.IsNaN(negLSE[y]) {
			return negLSE[y]
		}
		for j := range k {
			qy := q[y*k+j]
			var t float64
			if cfg.Form == "eq13" {
				t = on*qy + off*(colSum[j]-qy)
			} else {
				// log(exp(on·q_y) + Σ_{c≠y} exp(off·q_c)), shifted by m for stability.
				m := max(on*qy, colMax[j])
				rest := max(colExp[j]-math.Exp(off*qy-colMax[j]), 0) * math.Exp(colMax[j]-m)
				t = m + math.Log(math.Exp(on*qy-m)+rest)
			}
			vals[j] = t / cfg.Tau
		}
		negLSE[y] = logSumExp(vals)
		return negLSE[y]
	}
	out := make([]float64, l.N)
	logK := math.Log(float64(k))
	p := make([]float64, c)
	for b := range l.N {
		row := l.Row(b)
		y, _, _ := rowStats(row)
		var n float64
		for i, v := range row {
			p[i] = float64(v)
			n += p[i] * p[i]
		}
		if cfg.NormLogits {
			n = max(math.Sqrt(n), 1e-12)
			for i := range p {
				p[i] /= n
			}
		}
		pos := contrastTerm(cfg.Form, on, off, y, c, func(i int) float64 { return p[i] }) / cfg.Tau
		hi, lo := max(pos, neg(y)), min(pos, neg(y))
		out[b] = pos - (hi + math.Log1p(math.Exp(lo-hi))) + logK
	}
	return out, nil
}

// contrastTerm is logsumexp_c d_c·v_c (official) or Σ_c d_c·v_c (eq13) for the label
// distribution with on at y and off elsewhere.
func contrastTerm(form string, on, off float64, y, c int, v func(int) float64) float64 {
	if form == "eq13" {
		var s float64
		for i := range c {
			w := off
			if i == y {
				w = on
			}
			s += w * v(i)
		}
		return s
	}
	vals := make([]float64, c)
	for i := range c {
		w := off
		if i == y {
			w = on
		}
		vals[i] = w * v(i)
	}
	return logSumExp(vals)
}

func logSumExp(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	if math.IsInf(m, 0) {
		return m
	}
	var s float64
	for _, x := range v {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}
