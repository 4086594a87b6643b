package trainer

import (
	"math"

	"github.com/hdge-torch/hdge-torch/torch"
)

func init() {
	RegisterObjective(ObjectiveInfo{
		Name:  "hdge-inbatch",
		Usage: "HDGE with the other images of the batch as negatives (no queue; formerly hdge-simclr)",
		New: func(env Env) (Objective, error) {
			return &inBatchObjective{cfg: hdgeConfigOf(env.Config, env.Classes)}, nil
		},
	})
}

// inBatchObjective is the in-batch variant of the paper's Appendix C: no queue; for sample b the
// other samples j of the batch are the negatives, scored at b's label, and they carry gradient.
// With G[b,j] = p_j[y_b] the B×B contrast matrix is built without a B×B×C tensor:
// official: L[b,j] = log(exp(on·G[b,j]) + Σ_{c≠y_b} exp(off·p_j[c]));  eq13: L[b,j] = Σ_c dist_b[c]·p_j[c].
// The diagonal is l_pos, so the loss is CE(L/τ, target = b).
type inBatchObjective struct {
	stateless
	cfg hdgeConfig
}

func (o *inBatchObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	return hybrid(st, o.cfg.hybrid(), "gen", func() *torch.Tensor { return o.genLoss(st.S, st.Logits(), st.Y) })
}

func (o *inBatchObjective) genLoss(s *torch.Scope, logits, y *torch.Tensor) *torch.Tensor {
	c := o.cfg
	on, off := smoothWeights(c.LabelSmoothing, c.Classes)
	p := logits
	if c.NormLogits {
		p = s.Normalize(logits, 2, 1, 1e-12)
	}
	g := s.IndexSelect(s.Transpose(p, 0, 1), 0, y) // [b,j] = p[j, y_b]
	var l *torch.Tensor
	if c.Contrast == "eq13" {
		l = s.MulScalar(g, on)
		if off != 0 {
			rowSum := s.Reshape(s.Sum(p, []int{1}, false), 1, -1) // Σ_c p_j[c], broadcast over b
			l = s.Add(s.MulScalar(g, on-off), s.MulScalar(rowSum, off))
		}
	} else {
		// S_j = Σ_c exp(off·p_j[c]) = exp(mj)·Ŝ_j, shifted by M = max(on·G, mj) for stability.
		a := s.MulScalar(g, on)
		e := s.MulScalar(g, off)
		pe := s.MulScalar(p, off) // B×C
		mj, _ := s.Max(pe, 1, true)
		sHat := s.Sum(s.Exp(s.Sub(pe, mj)), []int{1}, false) // B (over j)
		mjRow := s.Reshape(mj, 1, -1)
		m := s.Maximum(a, mjRow) // B×B
		rest := s.Sub(s.Mul(s.Exp(s.Sub(mjRow, m)), s.Reshape(sHat, 1, -1)), s.Exp(s.Sub(e, m)))
		l = s.Add(m, s.Log(s.Clamp(s.Add(s.Exp(s.Sub(a, m)), rest), 1e-30, math.Inf(1))))
	}
	n := y.Size(0)
	target := s.Arange(n, torch.Int64, logits.Device())
	return s.CrossEntropy(s.DivScalar(l, c.Temperature), target, 0, torch.Mean)
}
