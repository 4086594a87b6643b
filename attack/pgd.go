package attack

import (
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Model is a classifier over the model's input space, pixels scaled to [-1, 1] (x' = (x-0.5)/0.5),
// as the training pipeline feeds it. model.Model and every model.Net satisfy it. Callers pass
// train = false: batch norm and dropout are in eval mode while an attack runs.
type Model interface {
	Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor
}

// Norms are the threat models PGD supports.
var Norms = []string{"linf", "l2"}

// Config is one PGD setting. Budgets and step sizes are in pixel space [0, 1], so an L∞ ε of 8/255
// is eight grey levels whatever the model's own input scaling.
type Config struct {
	Norm     string  // "linf" or "l2"
	Eps      float64 // radius of the threat ball
	Steps    int     // gradient steps per restart; 0 evaluates the (random) start only
	StepSize float64 // α; 0 means 2.5·Eps/Steps, Madry et al.'s choice, which can cross the ball
	Restarts int     // random restarts; ≤ 0 means 1. A sample is robust only if it survives every one.
	// RandomStart begins each restart at a point drawn uniformly from the ball (clipped to
	// [0, 1]) instead of at the clean image.
	RandomStart bool
	Seed        uint64
	// Noise is the σ of Gaussian noise added in the model's [-1, 1] space at every forward pass,
	// like JEM's test-time noise. The default 0 attacks the deterministic model: the noise would
	// make the gradients stochastic and the robust accuracy partly a measure of the noise.
	Noise float64
}

// Alpha is the step size in use.
func (c Config) Alpha() float64 {
	if c.StepSize > 0 || c.Steps == 0 {
		return c.StepSize
	}
	return 2.5 * c.Eps / float64(c.Steps)
}

func (c Config) restarts() int { return max(1, c.Restarts) }

// Validate reports the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Norm != "linf" && c.Norm != "l2":
		return fmt.Errorf("PGD norm %q: want linf or l2", c.Norm)
	case !(c.Eps >= 0) || math.IsInf(c.Eps, 0):
		return fmt.Errorf("PGD %s: ε %v must be a finite number ≥ 0", c.Norm, c.Eps)
	case c.Norm == "linf" && c.Eps > 1:
		return fmt.Errorf("PGD linf: ε %v exceeds the pixel range [0, 1]", c.Eps)
	case c.Steps < 0:
		return fmt.Errorf("PGD %s: steps %d must be ≥ 0", c.Norm, c.Steps)
	case !(c.StepSize >= 0) || math.IsInf(c.StepSize, 0):
		return fmt.Errorf("PGD %s: step size %v must be a finite number ≥ 0", c.Norm, c.StepSize)
	case !(c.Noise >= 0) || math.IsInf(c.Noise, 0):
		return fmt.Errorf("PGD %s: noise σ %v must be a finite number ≥ 0", c.Norm, c.Noise)
	}
	return nil
}

// l2Tiny keeps per-sample L2 normalisation finite when a gradient or perturbation is exactly zero.
const l2Tiny = 1e-12

// modelInput maps pixels in [0, 1] to the model's input space (data.ToModel), plus the optional
// noise.
func modelInput(s *torch.Scope, x *torch.Tensor, noise float64, gen *torch.Generator) *torch.Tensor {
	in := s.DivScalar(s.SubScalar(x, data.PixelMean), data.PixelStd)
	if noise > 0 {
		in = s.Add(in, s.MulScalar(s.RandnLike(gen, in), noise))
	}
	return in
}

// perSampleNorm is the L2 norm of each sample, shaped B×1×1×1 for broadcasting.
func perSampleNorm(s *torch.Scope, t *torch.Tensor) *torch.Tensor {
	return s.Norm(t, 2, []int{1, 2, 3}, true)
}

// project maps x back into the threat ball around x0 and into [0, 1]. Clipping to [0, 1] after
// the ball projection keeps x in the ball, since clipping only moves coordinates towards x0.
func project(s *torch.Scope, x, x0 *torch.Tensor, c Config) *torch.Tensor {
	delta := s.Sub(x, x0)
	switch c.Norm {
	case "linf":
		delta = s.Clamp(delta, -c.Eps, c.Eps)
	case "l2":
		n := perSampleNorm(s, delta)
		factor := s.Clamp(s.Div(s.Full([]int64{1}, c.Eps, torch.Float32, x.Device()), s.AddScalar(n, l2Tiny)), math.Inf(-1), 1)
		delta = s.Mul(delta, factor)
	}
	return s.Clamp(s.Add(x0, delta), 0, 1)
}

// randomStart draws a point uniformly from the ball around x0 (then clipped to [0, 1]).
func randomStart(s *torch.Scope, x0 *torch.Tensor, c Config, gen *torch.Generator) *torch.Tensor {
	var delta *torch.Tensor
	switch c.Norm {
	case "linf":
		delta = s.MulScalar(s.SubScalar(s.RandLike(gen, x0), 0.5), 2*c.Eps)
	case "l2":
		// A uniform direction (normalised Gaussian) and a radius ε·u^(1/d) give a uniform point in
		// the d-dimensional ball.
		dir := s.RandnLike(gen, x0)
		dir = s.Div(dir, s.AddScalar(perSampleNorm(s, dir), l2Tiny))
		d := float64(x0.Numel() / max(1, x0.Size(0)))
		u := s.Rand(gen, []int64{x0.Size(0), 1, 1, 1}, torch.Float32, x0.Device())
		delta = s.Mul(dir, s.MulScalar(s.Pow(u, 1/d), c.Eps))
	}
	return project(s, s.Add(x0, delta), x0, c)
}

// PGD runs one restart of projected gradient descent on a batch: x0 holds B×C×H×W pixels in
// [0, 1], y the int64 labels. It returns the adversarial batch, a tensor of s. Each step runs in
// its own scope, so the memory held stays that of one forward and backward pass and nothing but
// the result is left in s. gen draws the random start (and the noise, if any); nil means
// libtorch's default generator.
func PGD(s *torch.Scope, m Model, x0, y *torch.Tensor, c Config, gen *torch.Generator) (*torch.Tensor, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	var x *torch.Tensor
	if c.RandomStart && c.Eps > 0 {
		start := torch.NewScope()
		x = s.Adopt(randomStart(start, x0, c, gen))
		err := start.Err()
		start.Close()
		if err != nil {
			return nil, fmt.Errorf("PGD %s ε=%g random start: %w", c.Norm, c.Eps, err)
		}
	} else {
		x = s.Clone(x0)
	}
	alpha := c.Alpha()
	for i := range c.Steps {
		next, err := pgdStep(s, m, x, x0, y, c, alpha, gen)
		if err != nil {
			return nil, fmt.Errorf("PGD %s ε=%g step %d: %w", c.Norm, c.Eps, i+1, err)
		}
		x.Free()
		x = next
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return x, nil
}

// pgdStep takes one ascent step on the summed cross-entropy from x and projects; the new point is
// moved into out, everything else is freed.
func pgdStep(out *torch.Scope, m Model, x, x0, y *torch.Tensor, c Config, alpha float64, gen *torch.Generator) (*torch.Tensor, error) {
	s := torch.NewScope()
	defer s.Close()
	xa := s.Detach(x)
	if err := s.Err(); err != nil {
		return nil, err
	}
	if err := xa.SetRequiresGrad(true); err != nil {
		return nil, err
	}
	loss := s.CrossEntropy(m.Forward(s, modelInput(s, xa, c.Noise, gen), false), y, 0, torch.Sum)
	g := s.Gradients([]*torch.Tensor{loss}, []*torch.Tensor{xa}, false)
	if err := s.Err(); err != nil {
		return nil, err
	}
	s.SetGradEnabled(false)
	var step *torch.Tensor
	switch c.Norm {
	case "linf":
		step = s.Sign(g[0])
	case "l2":
		step = s.Div(g[0], s.AddScalar(perSampleNorm(s, g[0]), l2Tiny))
	}
	next := project(s, s.Add(x, s.MulScalar(step, alpha)), x0, c)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return out.Adopt(next), nil
}
