package nn

import (
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Param is one named parameter or buffer, named as PyTorch's state_dict would name it.
type Param struct {
	Name string
	T    *torch.Tensor
	// Buffer is true for running statistics and counters: saved, loaded, never optimised.
	Buffer bool
}

// Init carries what parameter initialisation needs: the scope that owns the parameters (it
// lives as long as the model), the generator that draws them, and the device they live on.
type Init struct {
	Store *torch.Scope
	Gen   *torch.Generator
	Dev   torch.Device
}

// uniform draws U(-bound, bound), the distribution PyTorch's default conv/linear init reduces to.
func (in Init) uniform(shape []int64, bound float64) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()
	u := s.Rand(in.Gen, shape, torch.Float32, in.Dev)
	t := s.AddScalar(s.MulScalar(u, 2*bound), -bound)
	if s.Err() != nil || t == nil {
		return nil // the model constructor reports the missing parameter
	}
	out := in.Store.Adopt(t)
	_ = out.SetRequiresGrad(true)
	return out
}

func prefixed(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// Conv2d is nn.Conv2d with square kernels. PyTorch's default init is kaiming_uniform(a=√5),
// which is U(±1/√fan_in) for the weight, and the same bound for the bias.
type Conv2d struct {
	W, B            *torch.Tensor
	Stride, Padding int
}

func NewConv2d(in Init, cin, cout, k, stride, padding int, bias bool) *Conv2d {
	bound := 1 / math.Sqrt(float64(cin*k*k))
	c := &Conv2d{Stride: stride, Padding: padding}
	c.W = in.uniform([]int64{int64(cout), int64(cin), int64(k), int64(k)}, bound)
	if bias {
		c.B = in.uniform([]int64{int64(cout)}, bound)
	}
	return c
}

func (c *Conv2d) Forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	return s.Conv2d(x, c.W, c.B, c.Stride, c.Padding)
}

func (c *Conv2d) params(prefix string) []Param {
	ps := []Param{{Name: prefixed(prefix, "weight"), T: c.W}}
	if c.B != nil {
		ps = append(ps, Param{Name: prefixed(prefix, "bias"), T: c.B})
	}
	return ps
}

// Linear is nn.Linear with PyTorch's default init, U(±1/√in) for weight and bias.
type Linear struct {
	W, B *torch.Tensor
}

func NewLinear(in Init, nin, nout int, bias bool) *Linear {
	bound := 1 / math.Sqrt(float64(nin))
	l := &Linear{W: in.uniform([]int64{int64(nout), int64(nin)}, bound)}
	if bias {
		l.B = in.uniform([]int64{int64(nout)}, bound)
	}
	return l
}

func (l *Linear) Forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	return s.Linear(x, l.W, l.B)
}

func (l *Linear) params(prefix string) []Param {
	ps := []Param{{Name: prefixed(prefix, "weight"), T: l.W}}
	if l.B != nil {
		ps = append(ps, Param{Name: prefixed(prefix, "bias"), T: l.B})
	}
	return ps
}

// BatchNorm2d is nn.BatchNorm2d (affine, tracking running statistics).
type BatchNorm2d struct {
	Weight, Bias, RunningMean, RunningVar, NumBatchesTracked *torch.Tensor
	Momentum, Eps                                            float64
}

func NewBatchNorm2d(in Init, n int) *BatchNorm2d {
	shape := []int64{int64(n)}
	b := &BatchNorm2d{Momentum: 0.1, Eps: 1e-5}
	b.Weight = in.Store.Ones(shape, torch.Float32, in.Dev)
	b.Bias = in.Store.Zeros(shape, torch.Float32, in.Dev)
	_ = b.Weight.SetRequiresGrad(true)
	_ = b.Bias.SetRequiresGrad(true)
	b.RunningMean = in.Store.Zeros(shape, torch.Float32, in.Dev)
	b.RunningVar = in.Store.Ones(shape, torch.Float32, in.Dev)
	b.NumBatchesTracked = in.Store.Zeros([]int64{}, torch.Int64, in.Dev)
	return b
}

// Forward normalises x; in training mode it also updates the running statistics in place.
func (b *BatchNorm2d) Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	if train {
		s.CopyInto(b.NumBatchesTracked, s.AddScalar(b.NumBatchesTracked, 1))
	}
	return s.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, train, b.Momentum, b.Eps)
}

func (b *BatchNorm2d) params(prefix string) []Param {
	return []Param{
		{Name: prefixed(prefix, "weight"), T: b.Weight},
		{Name: prefixed(prefix, "bias"), T: b.Bias},
		{Name: prefixed(prefix, "running_mean"), T: b.RunningMean, Buffer: true},
		{Name: prefixed(prefix, "running_var"), T: b.RunningVar, Buffer: true},
		{Name: prefixed(prefix, "num_batches_tracked"), T: b.NumBatchesTracked, Buffer: true},
	}
}

// checkShape reports a parameter whose loaded shape differs from the model's.
func checkShape(name string, want, got []int64) error {
	if len(want) != len(got) {
		return fmt.Errorf("parameter %s: checkpoint has shape %v, model expects %v", name, got, want)
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Errorf("parameter %s: checkpoint has shape %v, model expects %v", name, got, want)
		}
	}
	return nil
}

// trainable lists a state dict's parameters in order, buffers left out.
func trainable(sd []Param) []*torch.Tensor {
	var ts []*torch.Tensor
	for _, p := range sd {
		if !p.Buffer {
			ts = append(ts, p.T)
		}
	}
	return ts
}

// countParams counts the scalars of tensors.
func countParams(ts []*torch.Tensor) int64 {
	var n int64
	for _, t := range ts {
		n += t.Numel()
	}
	return n
}

// loadStateDict copies named tensors into a model's state dict sd. Every entry must be present
// with the same shape; extra entries are an error too, since they mean another architecture.
// model describes the model for the errors.
func loadStateDict(sd []Param, named map[string]*torch.Tensor, model string) error {
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	have := make(map[string]bool, len(sd))
	for _, p := range sd {
		have[p.Name] = true
		src, ok := named[p.Name]
		if !ok {
			return fmt.Errorf("checkpoint lacks parameter %s (is it from another model? this one is %s)", p.Name, model)
		}
		if err := checkShape(p.Name, p.T.Shape(), src.Shape()); err != nil {
			return err
		}
		s.CopyInto(p.T, s.ToDType(src, p.T.DType()))
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("loading state dict: %w", err)
	}
	for name := range named {
		if !have[name] {
			return fmt.Errorf("checkpoint has parameter %s that model %s does not", name, model)
		}
	}
	return nil
}
