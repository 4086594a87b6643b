package attack

import (
	"context"
	"fmt"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
)

// ScoreGradNorm is the name GradNormScores' score is reported under.
const ScoreGradNorm = "gradnorm"

// GradNormScores computes JEM's "norm of the score function" OOD score for every image of d:
// s(x) = −‖∇ₓ log q(x)‖₂ with log q(x) = logsumexp_y f(x)[y], the gradient taken in the model's
// [-1, 1] input space. In-distribution inputs sit near modes of q, where the gradient is small, so
// the sign is flipped to keep eval's convention that a higher score means more in-distribution.
// The inputs are those model.Model.Logits feeds with the same noise σ and seed, so the scores line up
// with the exported logits sample for sample.
func GradNormScores(ctx context.Context, m Model, d *data.Dataset, noise float64, seed uint64, o Options) ([]float64, error) {
	if err := checkDataset(d); err != nil {
		return nil, err
	}
	loader := data.NewLoader(d, data.LoaderConfig{BatchSize: o.batch(), Workers: 1, Prefetch: 2, Epochs: 1,
		Seed: seed, Augment: data.Augment{Noise: noise}})
	if err := loader.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]float64, 0, d.N)
	for b := range loader.Start(ctx, data.Position{}) {
		v, err := gradNormBatch(m, b, d, o.device())
		loader.Recycle(b)
		if err != nil {
			return nil, fmt.Errorf("gradient-norm score of %s, batch %d: %w", d.Name, b.Index, err)
		}
		out = append(out, v...)
		if o.Progress != nil {
			o.Progress(len(v))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(out) != d.N {
		return nil, fmt.Errorf("gradient-norm score of %s: %d scores for %d images", d.Name, len(out), d.N)
	}
	return out, nil
}

func gradNormBatch(m Model, b data.Batch, d *data.Dataset, dev torch.Device) ([]float64, error) {
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(b.X, int64(len(b.Y)), int64(d.C), int64(d.H), int64(d.W))
	if dev != torch.CPU {
		x = s.To(x, dev)
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if err := x.SetRequiresGrad(true); err != nil {
		return nil, err
	}
	lse := s.Sum(s.LogSumExp(m.Forward(s, x, false), []int{1}, false), nil, false)
	g := s.Gradients([]*torch.Tensor{lse}, []*torch.Tensor{x}, false)
	if err := s.Err(); err != nil {
		return nil, err
	}
	s.SetGradEnabled(false)
	n := s.Neg(s.Norm(g[0], 2, []int{1, 2, 3}, false))
	if err := s.Err(); err != nil {
		return nil, err
	}
	return n.Float64s()
}
