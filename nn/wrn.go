package nn

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/torch"
)

// WRNConfig describes a WideResNet-depth-width as JEM and HDGE use it.
type WRNConfig struct {
	Depth, Width int
	Classes      int
	InChannels   int
	// Norm is "none" (JEM/HDGE's default: no normalisation) or "batch".
	Norm    string
	Dropout float64
	// Slope is the LeakyReLU negative slope (0.2 in JEM).
	Slope float64
	// ChannelsLast lays the convolution weights and the activations out NHWC in memory: the same
	// values, shapes and state_dict, but oneDNN's convolutions skip their layout reorders (README, "How it
	// is built", has the speed-up). Inputs may come in either layout.
	ChannelsLast bool
	// BNMomentum is the batch norms' momentum (PyTorch's convention); 0 means PyTorch's 0.1.
	BNMomentum float64
}

var wrnName = regexp.MustCompile(`^wrn-(\d+)-(\d+)$`)

// ParseModel reads a model name such as "wrn-28-10" into depth and width.
func ParseModel(name string) (depth, width int, err error) {
	m := wrnName.FindStringSubmatch(strings.ToLower(name))
	if m == nil {
		return 0, 0, fmt.Errorf("unknown model %q: want wrn-DEPTH-WIDTH, e.g. wrn-28-10 or wrn-10-2", name)
	}
	depth, _ = strconv.Atoi(m[1])
	width, _ = strconv.Atoi(m[2])
	if depth < 10 || (depth-4)%6 != 0 {
		return 0, 0, fmt.Errorf("model %q: WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got %d", name, depth)
	}
	if width < 1 {
		return 0, 0, fmt.Errorf("model %q: width must be at least 1", name)
	}
	return depth, width, nil
}

func (c WRNConfig) validate() error {
	if c.Depth < 10 || (c.Depth-4)%6 != 0 {
		return fmt.Errorf("WideResNet depth must be 6n+4 with n >= 1, got %d", c.Depth)
	}
	if c.Width < 1 {
		return fmt.Errorf("WideResNet width must be >= 1, got %d", c.Width)
	}
	if c.Classes < 2 {
		return fmt.Errorf("need at least 2 classes, got %d", c.Classes)
	}
	if c.InChannels != 1 && c.InChannels != 3 {
		return fmt.Errorf("input channels must be 1 or 3, got %d", c.InChannels)
	}
	if c.Norm != "none" && c.Norm != "batch" {
		return fmt.Errorf("unknown norm %q: want none or batch", c.Norm)
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return fmt.Errorf("dropout must be in [0, 1), got %g", c.Dropout)
	}
	return nil
}

// block is JEM's wide_basic: pre-activation, out = conv2(lrelu(bn2(drop(conv1(lrelu(bn1(x))))))) + shortcut(x),
// with the stride on the second conv.
type block struct {
	bn1, bn2     *BatchNorm2d
	conv1, conv2 *Conv2d
	shortcut     *Conv2d
}

// WideResNet is JEM's Wide_ResNet with its linear head applied: conv1, three stages of blocks,
// a final norm + LeakyReLU, global average pooling, then linear. Parameter names match the
// PyTorch module in nn/testdata/wrn_reference.py.
type WideResNet struct {
	Cfg WRNConfig
	// DropoutGen draws the dropout masks in training mode (required when Cfg.Dropout > 0): the
	// run's own generator, never libtorch's global one.
	DropoutGen *torch.Generator
	conv1      *Conv2d
	layers     [3][]*block
	bn1        *BatchNorm2d
	linear     *Linear
}

// NewWideResNet builds the model, its parameters owned by init.Store.
func NewWideResNet(init Init, cfg WRNConfig) (*WideResNet, error) {
	if cfg.Slope == 0 {
		cfg.Slope = 0.2
	}
	if cfg.Norm == "" {
		cfg.Norm = "none"
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := (cfg.Depth - 4) / 6
	k := cfg.Width
	stages := []int{16, 16 * k, 32 * k, 64 * k}
	m := &WideResNet{Cfg: cfg}
	m.conv1 = NewConv2d(init, cfg.InChannels, stages[0], 3, 1, 1, true)
	inPlanes := stages[0]
	for li := 0; li < 3; li++ {
		planes := stages[li+1]
		for bi := 0; bi < n; bi++ {
			stride := 1
			if bi == 0 && li > 0 {
				stride = 2
			}
			b := &block{}
			if cfg.Norm == "batch" {
				b.bn1 = cfg.batchNorm(init, inPlanes)
				b.bn2 = cfg.batchNorm(init, planes)
			}
			b.conv1 = NewConv2d(init, inPlanes, planes, 3, 1, 1, true)
			b.conv2 = NewConv2d(init, planes, planes, 3, stride, 1, true)
			if stride != 1 || inPlanes != planes {
				b.shortcut = NewConv2d(init, inPlanes, planes, 1, stride, 0, true)
			}
			m.layers[li] = append(m.layers[li], b)
			inPlanes = planes
		}
	}
	if cfg.Norm == "batch" {
		m.bn1 = cfg.batchNorm(init, stages[3])
	}
	m.linear = NewLinear(init, stages[3], cfg.Classes, true)
	if err := init.Store.Err(); err != nil {
		return nil, fmt.Errorf("building wrn-%d-%d: %w", cfg.Depth, cfg.Width, err)
	}
	for _, p := range m.StateDict() {
		if p.T == nil {
			return nil, fmt.Errorf("building wrn-%d-%d: could not initialise %s", cfg.Depth, cfg.Width, p.Name)
		}
		if cfg.ChannelsLast && p.T.Dim() == 4 {
			if err := p.T.MakeChannelsLast(); err != nil {
				return nil, fmt.Errorf("building wrn-%d-%d: %s: %w", cfg.Depth, cfg.Width, p.Name, err)
			}
		}
	}
	return m, nil
}

func (b *block) forward(s *torch.Scope, x *torch.Tensor, cfg WRNConfig, gen *torch.Generator, train bool) *torch.Tensor {
	h := x
	if b.bn1 != nil {
		h = b.bn1.Forward(s, h, train)
	}
	h = b.conv1.Forward(s, s.LeakyReLU(h, cfg.Slope))
	if cfg.Dropout > 0 {
		h = s.Dropout(h, cfg.Dropout, train, gen)
	}
	if b.bn2 != nil {
		h = b.bn2.Forward(s, h, train)
	}
	h = b.conv2.Forward(s, s.LeakyReLU(h, cfg.Slope))
	sc := x
	if b.shortcut != nil {
		sc = b.shortcut.Forward(s, x)
	}
	return s.Add(h, sc)
}

// Features returns the pooled penultimate features (B × 64·width).
// Only the result stays in s; the activations are left to autograd (see torch.Scope.Merge).
func (m *WideResNet) Features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	c := s.Child()
	f := float32Out(c, m.features(c, x, train))
	s.Merge(c, f)
	return f
}

// float32Out converts a reduced-precision result to float32 (differentiably), so that whatever
// follows the model (losses, the HDGE queue, exported logits) sees float32 whatever the scope's
// precision. Under FP32 it is t itself.
func float32Out(s *torch.Scope, t *torch.Tensor) *torch.Tensor {
	if s.Precision() == torch.FP32 {
		return t
	}
	return s.ToDType(t, torch.Float32)
}

func (m *WideResNet) features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	if m.Cfg.ChannelsLast {
		x = s.ChannelsLast(x)
	}
	h := m.conv1.Forward(s, x)
	for li := range m.layers {
		for _, b := range m.layers[li] {
			h = b.forward(s, h, m.Cfg, m.DropoutGen, train)
		}
	}
	if m.bn1 != nil {
		h = m.bn1.Forward(s, h, train)
	}
	h = s.LeakyReLU(h, m.Cfg.Slope)
	// Global average pooling: equals JEM's avg_pool2d(out, 8) on 32×32 inputs and also serves
	// 28×28 inputs, whose last stage is 7×7.
	h = s.AdaptiveAvgPool2d(h, 1, 1)
	return s.Flatten(h, 1, -1)
}

// Forward returns the logits f(x) (B × classes), float32 in every precision. train selects dropout
// and batch-norm behaviour. Only the logits stay in s; the activations are left to autograd (see
// torch.Scope.Merge).
//
// Under a BF16 scope (torch.Scope.SetPrecision) the convolutions and the linear head compute in
// bfloat16 from cached bfloat16 copies of the float32 weights, the activations between them are
// bfloat16 (half the memory), batch norm normalises bfloat16 activations with float32 statistics,
// affine parameters and running averages (libtorch's CPU and cuDNN kernels accumulate in float32),
// and the logits are converted back to float32. Gradients reach the float32 parameters through the
// conversions.
func (m *WideResNet) Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	c := s.Child()
	logits := float32Out(c, m.linear.Forward(c, m.features(c, x, train)))
	s.Merge(c, logits)
	return logits
}

// Head applies the classifier (the linear layer) to features from Features.
func (m *WideResNet) Head(s *torch.Scope, features *torch.Tensor) *torch.Tensor {
	return m.linear.Forward(s, features)
}

// HeadParameters are the classifier's trainable tensors (what a linear probe trains).
func (m *WideResNet) HeadParameters() []*torch.Tensor { return []*torch.Tensor{m.linear.W, m.linear.B} }

// Classes is the number of logits.
func (m *WideResNet) Classes() int { return m.Cfg.Classes }

// InChannels is the number of input channels.
func (m *WideResNet) InChannels() int { return m.Cfg.InChannels }

// FeatureDim is the width of Features' output.
func (m *WideResNet) FeatureDim() int { return 64 * m.Cfg.Width }

// SetDropoutGenerator sets the generator dropout draws from.
func (m *WideResNet) SetDropoutGenerator(g *torch.Generator) { m.DropoutGen = g }

// Describe names the architecture in error messages.
func (m *WideResNet) Describe() string {
	return fmt.Sprintf("wrn-%d-%d, norm %s, %d classes, %d input channels", m.Cfg.Depth, m.Cfg.Width, m.Cfg.Norm, m.Cfg.Classes, m.Cfg.InChannels)
}

// StateDict lists parameters and buffers in PyTorch's state_dict order and naming.
func (m *WideResNet) StateDict() []Param {
	var ps []Param
	ps = append(ps, m.conv1.params("conv1")...)
	for li := range m.layers {
		for bi, b := range m.layers[li] {
			pre := fmt.Sprintf("layer%d.%d", li+1, bi)
			if b.bn1 != nil {
				ps = append(ps, b.bn1.params(pre+".bn1")...)
			}
			ps = append(ps, b.conv1.params(pre+".conv1")...)
			if b.bn2 != nil {
				ps = append(ps, b.bn2.params(pre+".bn2")...)
			}
			ps = append(ps, b.conv2.params(pre+".conv2")...)
			if b.shortcut != nil {
				ps = append(ps, b.shortcut.params(pre+".shortcut.0")...)
			}
		}
	}
	if m.bn1 != nil {
		ps = append(ps, m.bn1.params("bn1")...)
	}
	ps = append(ps, m.linear.params("linear")...)
	return ps
}

// FLOPs estimates multiply-adds ×2 of one forward pass for a c×h×w input (convs and linear).
func (m *WideResNet) FLOPs(h, w int) float64 {
	var total float64
	conv := func(c *Conv2d, h, w int) (int, int) {
		sh := c.W.Shape()
		oh := (h+2*c.Padding-int(sh[2]))/c.Stride + 1
		ow := (w+2*c.Padding-int(sh[3]))/c.Stride + 1
		total += 2 * float64(sh[0]*sh[1]*sh[2]*sh[3]) * float64(oh*ow)
		return oh, ow
	}
	h, w = conv(m.conv1, h, w)
	for li := range m.layers {
		for _, b := range m.layers[li] {
			conv(b.conv1, h, w)
			if b.shortcut != nil {
				conv(b.shortcut, h, w)
			}
			h, w = conv(b.conv2, h, w)
		}
	}
	sh := m.linear.W.Shape()
	total += 2 * float64(sh[0]*sh[1])
	return total
}

// Parameters returns the trainable tensors, in state_dict order.
func (m *WideResNet) Parameters() []*torch.Tensor { return trainable(m.StateDict()) }

// NumParams counts trainable scalars.
func (m *WideResNet) NumParams() int64 { return countParams(m.Parameters()) }

// LoadStateDict copies named tensors into the model; every entry must be present with the same
// shape, and extra entries are an error.
func (m *WideResNet) LoadStateDict(named map[string]*torch.Tensor) error {
	return loadStateDict(m.StateDict(), named, m.Describe())
}

func (c WRNConfig) batchNorm(init Init, n int) *BatchNorm2d {
	b := NewBatchNorm2d(init, n)
	if c.BNMomentum > 0 {
		b.Momentum = c.BNMomentum
	}
	return b
}
