package sampler

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Energy returns the per-sample unnormalised log-density of a batch x ([N, ...]) as a tensor [N]:
// higher means more probable, and SGLD climbs its gradient. y is nil for an unconditional energy
// (JEM's log q(x) = logsumexp_y f(x)[y]) and int64 labels [N] for a conditional one (log q(x, y) =
// f(x)[y]). It must be differentiable with respect to x and should run the model in eval mode, as
// JEM switches the model to eval while sampling.
type Energy func(s *torch.Scope, x, y *torch.Tensor) *torch.Tensor

// Logits is a classifier's forward pass (nn.WideResNet.Forward has this signature).
type Logits func(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor

// JEMEnergy is JEM's energy over a classifier's logits f, run in eval mode: logsumexp_y f(x)[y]
// when y is nil, f(x)[y] otherwise.
func JEMEnergy(f Logits) Energy {
	return func(s *torch.Scope, x, y *torch.Tensor) *torch.Tensor {
		logits := f(s, x, false)
		if y == nil {
			return s.LogSumExp(logits, []int{1}, false)
		}
		return s.Squeeze(s.Gather(logits, 1, s.Unsqueeze(y, 1)), 1)
	}
}

// Config is one SGLD chain's schedule: x ← x + LR·∇ₓE(x) + Std·N(0, I), Steps times, no clamping.
// The step and the noise are set apart as in JEM (not the textbook LR/2 and √LR).
type Config struct {
	Steps int     // --sgld-steps
	LR    float64 // --sgld-lr: step size on the energy gradient
	Std   float64 // --sgld-std: standard deviation of the added noise; 0 is gradient ascent
}

// DefaultConfig is JEM's: 20 steps, step size 1, noise 0.01.
func DefaultConfig() Config { return Config{Steps: 20, LR: 1, Std: 0.01} }

// ShortRunSteps is the chain length JEM's evaluation uses when sampling from noise.
const ShortRunSteps = 100

// Validate names the flag of the first bad value.
func (c Config) Validate() error {
	if c.Steps <= 0 {
		return fmt.Errorf("--sgld-steps must be positive, got %d", c.Steps)
	}
	if !(c.LR > 0) {
		return fmt.Errorf("--sgld-lr must be positive, got %g", c.LR)
	}
	if !(c.Std >= 0) {
		return fmt.Errorf("--sgld-std must be zero or positive, got %g", c.Std)
	}
	return nil
}

// SGLD runs cfg.Steps Langevin steps on e from x0 (left unchanged) with labels y (nil when
// unconditional) and returns the final samples, detached and owned by s. Each step's gradient is
// that of the batch's summed energy, so every sample moves by its own gradient whatever the batch
// size (a batch-mean loss would divide it by N). The step's graph lives in a child scope freed
// before the next step, so memory stays that of one forward and backward pass. Noise comes from g
// only (nil would mean libtorch's global generator, which a run must not use).
func SGLD(s *torch.Scope, g *torch.Generator, e Energy, x0, y *torch.Tensor, cfg Config) (*torch.Tensor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if g == nil {
		return nil, fmt.Errorf("sampler: SGLD needs the run's generator, got nil")
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if x0 == nil {
		return nil, fmt.Errorf("sampler: SGLD from a nil batch")
	}
	x := x0
	for k := 0; k < cfg.Steps; k++ {
		c := s.Child()
		c.SetGradEnabled(true)
		xk := c.Detach(x)
		if xk != nil {
			if err := xk.SetRequiresGrad(true); err != nil {
				s.Merge(c)
				return nil, fmt.Errorf("SGLD step %d: %w", k, err)
			}
		}
		en := e(c, xk, y)
		if en == nil && c.Err() == nil {
			s.Merge(c)
			return nil, fmt.Errorf("SGLD: the energy returned no tensor")
		}
		if en != nil && (en.Dim() != 1 || en.Size(0) != x.Size(0)) {
			shape := en.Shape()
			s.Merge(c)
			return nil, fmt.Errorf("SGLD: the energy must give one value per sample (%d), got shape %v", x.Size(0), shape)
		}
		gs := c.Gradients([]*torch.Tensor{en}, []*torch.Tensor{xk}, false)
		c.SetGradEnabled(false)
		var grad *torch.Tensor
		if len(gs) == 1 {
			grad = gs[0]
		}
		next := c.Add(c.Detach(x), c.MulScalar(grad, cfg.LR))
		if cfg.Std > 0 {
			next = c.Add(next, c.MulScalar(c.RandnLike(g, next), cfg.Std))
		}
		s.Merge(c, next)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("SGLD step %d: %w", k, err)
		}
		if x != x0 {
			x.Free()
		}
		x = next
	}
	return x, nil
}

// ShortRun samples n images of the per-sample shape from U(-1, 1) noise by cfg's SGLD, with
// labels y (nil when unconditional). The result is owned by s.
func ShortRun(s *torch.Scope, g *torch.Generator, e Energy, n int, shape []int64, y *torch.Tensor, dev torch.Device, cfg Config) (*torch.Tensor, error) {
	if n <= 0 {
		return nil, fmt.Errorf("sampler: number of samples must be positive, got %d", n)
	}
	if g == nil {
		return nil, fmt.Errorf("sampler: ShortRun needs the run's generator, got nil")
	}
	c := s.Child()
	c.SetGradEnabled(false)
	x0 := uniformNoise(c, g, append([]int64{int64(n)}, shape...), dev)
	s.Merge(c, x0)
	if err := s.Err(); err != nil {
		return nil, err
	}
	x, err := SGLD(s, g, e, x0, y, cfg)
	x0.Free()
	return x, err
}

// uniformNoise is U(-1, 1), JEM's init_random.
func uniformNoise(s *torch.Scope, g *torch.Generator, shape []int64, dev torch.Device) *torch.Tensor {
	return s.AddScalar(s.MulScalar(s.Rand(g, shape, torch.Float32, dev), 2), -1)
}

// Settings are the sampling flags of JEM's train_wrn_ebm.py, with its names and defaults.
type Settings struct {
	SGLD       Config
	BufferSize int     // --buffer-size
	ReinitFreq float64 // --reinit-freq
	Cond       bool    // --sgld-cond: class-conditional chains in per-class buffer blocks
}

// DefaultSettings are JEM's: 20 steps of size 1 with noise 0.01, 10000 chains, 5 % restarted.
func DefaultSettings() Settings {
	return Settings{SGLD: DefaultConfig(), BufferSize: 10000, ReinitFreq: 0.05}
}

// Validate names the flag of the first bad value; classes is the dataset's class count.
func (st Settings) Validate(classes int) error {
	if err := st.SGLD.Validate(); err != nil {
		return err
	}
	if st.BufferSize <= 0 {
		return fmt.Errorf("--buffer-size must be positive, got %d", st.BufferSize)
	}
	if !(st.ReinitFreq >= 0 && st.ReinitFreq <= 1) {
		return fmt.Errorf("--reinit-freq must be in [0, 1], got %g", st.ReinitFreq)
	}
	if st.Cond && classes < 2 {
		return fmt.Errorf("--sgld-cond needs a labelled dataset of at least 2 classes, got %d", classes)
	}
	if st.Cond && st.BufferSize%classes != 0 {
		return fmt.Errorf("--buffer-size %d must be a multiple of the %d classes with --sgld-cond", st.BufferSize, classes)
	}
	return nil
}

// NewBuffer makes the replay buffer these settings describe for images of the per-sample shape.
func (st Settings) NewBuffer(store *torch.Scope, g *torch.Generator, shape []int64, classes int, dev torch.Device) (*ReplayBuffer, error) {
	if err := st.Validate(classes); err != nil {
		return nil, err
	}
	c := 0
	if st.Cond {
		c = classes
	}
	return NewReplayBuffer(store, g, st.BufferSize, shape, c, dev)
}
