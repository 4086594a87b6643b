package nn

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/torch"
)

// ResNetConfig describes torchvision's ResNet-18 or ResNet-50 with the CIFAR stem that SupCon and
// SimCLR use on 32×32 images: conv1 is 3×3 with stride 1 and padding 1, and there is no max-pool.
type ResNetConfig struct {
	Depth      int // 18 (basic blocks 2-2-2-2) or 50 (bottlenecks 3-4-6-3)
	Classes    int
	InChannels int
	// ChannelsLast lays the convolution weights and the activations out NHWC in memory, as for
	// WRNConfig: the same values, shapes and state_dict.
	ChannelsLast bool
}

var resnetName = regexp.MustCompile(`^resnet-?(\d+)$`)

// ParseResNet reads a model name "resnet-18" or "resnet-50" (also "resnet18", any case) into its
// depth.
func ParseResNet(name string) (depth int, err error) {
	m := resnetName.FindStringSubmatch(strings.ToLower(name))
	if m == nil {
		return 0, fmt.Errorf("unknown model %q: want resnet-18 or resnet-50", name)
	}
	depth, _ = strconv.Atoi(m[1])
	if _, ok := resnetLayout[depth]; !ok {
		return 0, fmt.Errorf("model %q: ResNet depth must be 18 or 50, got %d", name, depth)
	}
	return depth, nil
}

// resnetLayout is the number of blocks per stage and whether they are bottlenecks.
var resnetLayout = map[int]struct {
	blocks     [4]int
	bottleneck bool
}{
	18: {[4]int{2, 2, 2, 2}, false},
	50: {[4]int{3, 4, 6, 3}, true},
}

func (c ResNetConfig) validate() error {
	if _, ok := resnetLayout[c.Depth]; !ok {
		return fmt.Errorf("ResNet depth must be 18 or 50, got %d", c.Depth)
	}
	if c.Classes < 2 {
		return fmt.Errorf("need at least 2 classes, got %d", c.Classes)
	}
	if c.InChannels != 1 && c.InChannels != 3 {
		return fmt.Errorf("input channels must be 1 or 3, got %d", c.InChannels)
	}
	return nil
}

// normal draws N(0, std²) from the Init's generator.
func (in Init) normal(shape []int64, std float64) *torch.Tensor {
	s := torch.NewScope()
	defer s.Close()
	t := s.MulScalar(s.Randn(in.Gen, shape, torch.Float32, in.Dev), std)
	if s.Err() != nil || t == nil {
		return nil // the model constructor reports the missing parameter
	}
	out := in.Store.Adopt(t)
	_ = out.SetRequiresGrad(true)
	return out
}

// newResNetConv is a bias-free conv with torchvision's ResNet init, kaiming_normal_(mode="fan_out",
// nonlinearity="relu"): N(0, 2/fan_out) with fan_out = cout·k·k.
func newResNetConv(in Init, cin, cout, k, stride, padding int) *Conv2d {
	c := &Conv2d{Stride: stride, Padding: padding}
	c.W = in.normal([]int64{int64(cout), int64(cin), int64(k), int64(k)}, math.Sqrt(2/float64(cout*k*k)))
	return c
}

// resBlock is torchvision's BasicBlock (conv3 nil) or Bottleneck (the v1.5 one: stride on the
// 3×3 conv). out = relu(bn_last(...) + downsample(x)).
type resBlock struct {
	conv1, conv2, conv3 *Conv2d
	bn1, bn2, bn3       *BatchNorm2d
	down                *Conv2d // downsample.0, with downBN as downsample.1
	downBN              *BatchNorm2d
}

func (b *resBlock) forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	h := s.ReLU(b.bn1.Forward(s, b.conv1.Forward(s, x), train))
	h = b.bn2.Forward(s, b.conv2.Forward(s, h), train)
	if b.conv3 != nil {
		h = b.bn3.Forward(s, b.conv3.Forward(s, s.ReLU(h)), train)
	}
	sc := x
	if b.down != nil {
		sc = b.downBN.Forward(s, b.down.Forward(s, x), train)
	}
	return s.ReLU(s.Add(h, sc))
}

func (b *resBlock) params(pre string) []Param {
	var ps []Param
	ps = append(ps, b.conv1.params(pre+".conv1")...)
	ps = append(ps, b.bn1.params(pre+".bn1")...)
	ps = append(ps, b.conv2.params(pre+".conv2")...)
	ps = append(ps, b.bn2.params(pre+".bn2")...)
	if b.conv3 != nil {
		ps = append(ps, b.conv3.params(pre+".conv3")...)
		ps = append(ps, b.bn3.params(pre+".bn3")...)
	}
	if b.down != nil {
		ps = append(ps, b.down.params(pre+".downsample.0")...)
		ps = append(ps, b.downBN.params(pre+".downsample.1")...)
	}
	return ps
}

// ResNet is torchvision's resnet18/resnet50 with the CIFAR stem (conv1 3×3 stride 1, no
// max-pool) and its fc head. Parameter names are torchvision's state_dict names, so
// model_state_dict loads into torchvision.models.resnet18(num_classes=C) with conv1 replaced by
// Conv2d(C_in, 64, 3, 1, 1, bias=False) and maxpool by Identity (nn/testdata/resnet_reference.py).
// It has the same methods as WideResNet.
type ResNet struct {
	Cfg    ResNetConfig
	conv1  *Conv2d
	bn1    *BatchNorm2d
	layers [4][]*resBlock
	fc     *Linear
}

// NewResNet builds the model, its parameters owned by init.Store and drawn from init.Gen:
// convolutions kaiming-normal (fan_out, ReLU gain), batch norms weight 1 and bias 0, fc with
// PyTorch's default Linear init, as torchvision initialises them.
func NewResNet(init Init, cfg ResNetConfig) (*ResNet, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lay := resnetLayout[cfg.Depth]
	expansion := 1
	if lay.bottleneck {
		expansion = 4
	}
	m := &ResNet{Cfg: cfg}
	m.conv1 = newResNetConv(init, cfg.InChannels, 64, 3, 1, 1)
	m.bn1 = NewBatchNorm2d(init, 64)
	inPlanes := 64
	for li, planes := range []int{64, 128, 256, 512} {
		for bi := range lay.blocks[li] {
			stride := 1
			if bi == 0 && li > 0 {
				stride = 2
			}
			b := &resBlock{}
			out := planes * expansion
			if lay.bottleneck {
				b.conv1 = newResNetConv(init, inPlanes, planes, 1, 1, 0)
				b.bn1 = NewBatchNorm2d(init, planes)
				b.conv2 = newResNetConv(init, planes, planes, 3, stride, 1)
				b.bn2 = NewBatchNorm2d(init, planes)
				b.conv3 = newResNetConv(init, planes, out, 1, 1, 0)
				b.bn3 = NewBatchNorm2d(init, out)
			} else {
				b.conv1 = newResNetConv(init, inPlanes, planes, 3, stride, 1)
				b.bn1 = NewBatchNorm2d(init, planes)
				b.conv2 = newResNetConv(init, planes, planes, 3, 1, 1)
				b.bn2 = NewBatchNorm2d(init, planes)
			}
			if stride != 1 || inPlanes != out {
				b.down = newResNetConv(init, inPlanes, out, 1, stride, 0)
				b.downBN = NewBatchNorm2d(init, out)
			}
			m.layers[li] = append(m.layers[li], b)
			inPlanes = out
		}
	}
	m.fc = NewLinear(init, inPlanes, cfg.Classes, true)
	if err := init.Store.Err(); err != nil {
		return nil, fmt.Errorf("building %s: %w", m.name(), err)
	}
	for _, p := range m.StateDict() {
		if p.T == nil {
			return nil, fmt.Errorf("building %s: could not initialise %s", m.name(), p.Name)
		}
		if cfg.ChannelsLast && p.T.Dim() == 4 {
			if err := p.T.MakeChannelsLast(); err != nil {
				return nil, fmt.Errorf("building %s: %s: %w", m.name(), p.Name, err)
			}
		}
	}
	return m, nil
}

func (m *ResNet) name() string { return fmt.Sprintf("resnet-%d", m.Cfg.Depth) }

// Features returns the pooled penultimate features (B × 512 for ResNet-18, B × 2048 for
// ResNet-50). Only the result stays in s; the activations are left to autograd.
func (m *ResNet) Features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	c := s.Child()
	f := m.features(c, x, train)
	s.Merge(c, f)
	return f
}

func (m *ResNet) features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	if m.Cfg.ChannelsLast {
		x = s.ChannelsLast(x)
	}
	h := s.ReLU(m.bn1.Forward(s, m.conv1.Forward(s, x), train))
	for li := range m.layers {
		for _, b := range m.layers[li] {
			h = b.forward(s, h, train)
		}
	}
	h = s.AdaptiveAvgPool2d(h, 1, 1)
	return s.Flatten(h, 1, -1)
}

// Forward returns the logits (B × classes); train selects batch-norm behaviour (batch statistics,
// running averages updated). Only the logits stay in s.
func (m *ResNet) Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	c := s.Child()
	logits := m.fc.Forward(c, m.features(c, x, train))
	s.Merge(c, logits)
	return logits
}

// StateDict lists parameters and buffers in torchvision's state_dict order and naming.
func (m *ResNet) StateDict() []Param {
	var ps []Param
	ps = append(ps, m.conv1.params("conv1")...)
	ps = append(ps, m.bn1.params("bn1")...)
	for li := range m.layers {
		for bi, b := range m.layers[li] {
			ps = append(ps, b.params(fmt.Sprintf("layer%d.%d", li+1, bi))...)
		}
	}
	return append(ps, m.fc.params("fc")...)
}

// FLOPs estimates multiply-adds ×2 of one forward pass for an h×w input (convs and fc).
func (m *ResNet) FLOPs(h, w int) float64 {
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
			if b.down != nil {
				conv(b.down, h, w)
			}
			oh, ow := conv(b.conv1, h, w)
			oh, ow = conv(b.conv2, oh, ow)
			if b.conv3 != nil {
				oh, ow = conv(b.conv3, oh, ow)
			}
			h, w = oh, ow
		}
	}
	sh := m.fc.W.Shape()
	return total + 2*float64(sh[0]*sh[1])
}

// Parameters returns the trainable tensors, in state_dict order.
func (m *ResNet) Parameters() []*torch.Tensor { return trainable(m.StateDict()) }

// NumParams counts trainable scalars.
func (m *ResNet) NumParams() int64 { return countParams(m.Parameters()) }

// LoadStateDict copies named tensors into the model; every entry must be present with the same
// shape, and extra entries are an error.
func (m *ResNet) LoadStateDict(named map[string]*torch.Tensor) error {
	return loadStateDict(m.StateDict(), named, fmt.Sprintf("%s, %d classes, %d input channels", m.name(), m.Cfg.Classes, m.Cfg.InChannels))
}
