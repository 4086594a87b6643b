package nn

import (
	"bytes"
	"fmt"
	"math"
	"os"

	"github.com/hdge-torch/hdge-torch/torch"
)

// InceptionClasses is the width of the FID network's classifier: TensorFlow's 2015 Inception-v3
// has 1008 outputs, not torchvision's 1000.
const InceptionClasses = 1008

// InceptionFeatures is the size of the pool_3 features the FID is computed on.
const InceptionFeatures = 2048

// InceptionSize is the side the input is resized to.
const InceptionSize = 299

// InceptionWeightsFile is the file name pytorch-fid downloads its FID weights as.
const InceptionWeightsFile = "pt_inception-2015-12-05-6726825d.pth"

// basicConv is torchvision's BasicConv2d: conv without bias, batch norm (eps 0.001), ReLU.
type basicConv struct {
	w          *torch.Tensor
	bn         *BatchNorm2d
	stride     int
	padH, padW int
	name       string
}

func newBasicConv(in Init, name string, cin, cout, kh, kw, stride, padH, padW int) *basicConv {
	// He-uniform: the random network keeps its activations' scale through its 94 convolutions,
	// so that tests on random weights compare numbers of order one. Real use loads weights.
	bound := math.Sqrt(6 / float64(cin*kh*kw))
	c := &basicConv{name: name, stride: stride, padH: padH, padW: padW}
	c.w = in.uniform([]int64{int64(cout), int64(cin), int64(kh), int64(kw)}, bound)
	c.bn = NewBatchNorm2d(in, cout)
	c.bn.Eps = 0.001
	return c
}

func (c *basicConv) forward(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	h := s.Conv2dPadded(x, c.w, nil, c.stride, c.padH, c.padW)
	return s.ReLU(c.bn.Forward(s, h, false))
}

func (c *basicConv) params() []Param {
	return append([]Param{{Name: c.name + ".conv.weight", T: c.w}}, c.bn.params(c.name+".bn")...)
}

// inceptionBlock is one Mixed_* block: named convolutions and a forward over them.
type inceptionBlock struct {
	convs []*basicConv
	by    map[string]*basicConv
	fwd   func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor
}

func (b *inceptionBlock) add(in Init, prefix, name string, cin, cout, kh, kw, stride, padH, padW int) {
	c := newBasicConv(in, prefix+"."+name, cin, cout, kh, kw, stride, padH, padW)
	b.convs = append(b.convs, c)
	b.by[name] = c
}

func (b *inceptionBlock) c(s *torch.Scope, name string, x *torch.Tensor) *torch.Tensor {
	return b.by[name].forward(s, x)
}

// fidA is pytorch-fid's FIDInceptionA: InceptionA whose pool branch leaves the padding out of
// the average.
func fidA(in Init, p string, cin, pool int) *inceptionBlock {
	b := &inceptionBlock{by: map[string]*basicConv{}}
	b.add(in, p, "branch1x1", cin, 64, 1, 1, 1, 0, 0)
	b.add(in, p, "branch5x5_1", cin, 48, 1, 1, 1, 0, 0)
	b.add(in, p, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2)
	b.add(in, p, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
	b.add(in, p, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1)
	b.add(in, p, "branch_pool", cin, pool, 1, 1, 1, 0, 0)
	b.fwd = func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		b1 := b.c(s, "branch1x1", x)
		b5 := b.c(s, "branch5x5_2", b.c(s, "branch5x5_1", x))
		b3 := b.c(s, "branch3x3dbl_3", b.c(s, "branch3x3dbl_2", b.c(s, "branch3x3dbl_1", x)))
		bp := b.c(s, "branch_pool", s.AvgPool2dExcludePad(x, 3, 1, 1))
		return s.Cat([]*torch.Tensor{b1, b5, b3, bp}, 1)
	}
	return b
}

// inceptionB is torchvision's InceptionB (Mixed_6a), unchanged in pytorch-fid.
func inceptionB(in Init, p string, cin int) *inceptionBlock {
	b := &inceptionBlock{by: map[string]*basicConv{}}
	b.add(in, p, "branch3x3", cin, 384, 3, 3, 2, 0, 0)
	b.add(in, p, "branch3x3dbl_1", cin, 64, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)
	b.add(in, p, "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0)
	b.fwd = func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		b3 := b.c(s, "branch3x3", x)
		bd := b.c(s, "branch3x3dbl_3", b.c(s, "branch3x3dbl_2", b.c(s, "branch3x3dbl_1", x)))
		return s.Cat([]*torch.Tensor{b3, bd, s.MaxPool2d(x, 3, 2, 0)}, 1)
	}
	return b
}

// fidC is pytorch-fid's FIDInceptionC (padding left out of the pool branch's average).
func fidC(in Init, p string, cin, c7 int) *inceptionBlock {
	b := &inceptionBlock{by: map[string]*basicConv{}}
	b.add(in, p, "branch1x1", cin, 192, 1, 1, 1, 0, 0)
	b.add(in, p, "branch7x7_1", cin, c7, 1, 1, 1, 0, 0)
	b.add(in, p, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3)
	b.add(in, p, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0)
	b.add(in, p, "branch7x7dbl_1", cin, c7, 1, 1, 1, 0, 0)
	b.add(in, p, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0)
	b.add(in, p, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3)
	b.add(in, p, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0)
	b.add(in, p, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)
	b.add(in, p, "branch_pool", cin, 192, 1, 1, 1, 0, 0)
	b.fwd = func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		b1 := b.c(s, "branch1x1", x)
		b7 := b.c(s, "branch7x7_3", b.c(s, "branch7x7_2", b.c(s, "branch7x7_1", x)))
		bd := x
		for _, n := range []string{"branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"} {
			bd = b.c(s, n, bd)
		}
		bp := b.c(s, "branch_pool", s.AvgPool2dExcludePad(x, 3, 1, 1))
		return s.Cat([]*torch.Tensor{b1, b7, bd, bp}, 1)
	}
	return b
}

// inceptionD is torchvision's InceptionD (Mixed_7a), unchanged in pytorch-fid.
func inceptionD(in Init, p string, cin int) *inceptionBlock {
	b := &inceptionBlock{by: map[string]*basicConv{}}
	b.add(in, p, "branch3x3_1", cin, 192, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3_2", 192, 320, 3, 3, 2, 0, 0)
	b.add(in, p, "branch7x7x3_1", cin, 192, 1, 1, 1, 0, 0)
	b.add(in, p, "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3)
	b.add(in, p, "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0)
	b.add(in, p, "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0)
	b.fwd = func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		b3 := b.c(s, "branch3x3_2", b.c(s, "branch3x3_1", x))
		b7 := x
		for _, n := range []string{"branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"} {
			b7 = b.c(s, n, b7)
		}
		return s.Cat([]*torch.Tensor{b3, b7, s.MaxPool2d(x, 3, 2, 0)}, 1)
	}
	return b
}

// fidE is pytorch-fid's FIDInceptionE_1 (maxPool false: average without the padding) or
// FIDInceptionE_2 (maxPool true: the last block's pool branch takes a 3×3 maximum, a quirk of the
// TensorFlow graph the FID weights come from).
func fidE(in Init, p string, cin int, maxPool bool) *inceptionBlock {
	b := &inceptionBlock{by: map[string]*basicConv{}}
	b.add(in, p, "branch1x1", cin, 320, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3_1", cin, 384, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1)
	b.add(in, p, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)
	b.add(in, p, "branch3x3dbl_1", cin, 448, 1, 1, 1, 0, 0)
	b.add(in, p, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1)
	b.add(in, p, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1)
	b.add(in, p, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)
	b.add(in, p, "branch_pool", cin, 192, 1, 1, 1, 0, 0)
	b.fwd = func(b *inceptionBlock, s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		b1 := b.c(s, "branch1x1", x)
		b3 := b.c(s, "branch3x3_1", x)
		b3 = s.Cat([]*torch.Tensor{b.c(s, "branch3x3_2a", b3), b.c(s, "branch3x3_2b", b3)}, 1)
		bd := b.c(s, "branch3x3dbl_2", b.c(s, "branch3x3dbl_1", x))
		bd = s.Cat([]*torch.Tensor{b.c(s, "branch3x3dbl_3a", bd), b.c(s, "branch3x3dbl_3b", bd)}, 1)
		var pooled *torch.Tensor
		if maxPool {
			pooled = s.MaxPool2d(x, 3, 1, 1)
		} else {
			pooled = s.AvgPool2dExcludePad(x, 3, 1, 1)
		}
		return s.Cat([]*torch.Tensor{b1, b3, bd, b.c(s, "branch_pool", pooled)}, 1)
	}
	return b
}

// InceptionV3 is pytorch-fid's FID Inception-v3 (fid_inception_v3): torchvision's inception_v3
// with 1008 classes, no auxiliary head, and the FID blocks in place of Mixed_5b-5d, 6b-6e, 7b and
// 7c. It only runs in eval mode. Parameter names are torchvision's, so pytorch-fid's weights file
// loads by name.
type InceptionV3 struct {
	stem   []*basicConv // Conv2d_1a_3x3 .. Conv2d_4a_3x3
	blocks []*inceptionBlock
	names  []string
	fc     *Linear
}

// NewInceptionV3 builds the network with random weights owned by init.Store (load real ones with
// LoadInceptionV3 or LoadStateDict).
func NewInceptionV3(init Init) (*InceptionV3, error) {
	m := &InceptionV3{}
	m.stem = []*basicConv{
		newBasicConv(init, "Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0),
		newBasicConv(init, "Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0),
		newBasicConv(init, "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1),
		newBasicConv(init, "Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0),
		newBasicConv(init, "Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0),
	}
	add := func(name string, b *inceptionBlock) {
		m.names = append(m.names, name)
		m.blocks = append(m.blocks, b)
	}
	add("Mixed_5b", fidA(init, "Mixed_5b", 192, 32))
	add("Mixed_5c", fidA(init, "Mixed_5c", 256, 64))
	add("Mixed_5d", fidA(init, "Mixed_5d", 288, 64))
	add("Mixed_6a", inceptionB(init, "Mixed_6a", 288))
	add("Mixed_6b", fidC(init, "Mixed_6b", 768, 128))
	add("Mixed_6c", fidC(init, "Mixed_6c", 768, 160))
	add("Mixed_6d", fidC(init, "Mixed_6d", 768, 160))
	add("Mixed_6e", fidC(init, "Mixed_6e", 768, 192))
	add("Mixed_7a", inceptionD(init, "Mixed_7a", 768))
	add("Mixed_7b", fidE(init, "Mixed_7b", 1280, false))
	add("Mixed_7c", fidE(init, "Mixed_7c", 2048, true))
	m.fc = NewLinear(init, InceptionFeatures, InceptionClasses, true)
	if err := init.Store.Err(); err != nil {
		return nil, fmt.Errorf("building the FID Inception-v3: %w", err)
	}
	for _, p := range m.StateDict() {
		if p.T == nil {
			return nil, fmt.Errorf("building the FID Inception-v3: could not initialise %s", p.Name)
		}
	}
	return m, nil
}

// Forward maps images x [N, 1 or 3, H, W] with values in [0, 1] to the pool_3 features
// [N, 2048] and the 1008 logits [N, 1008], as pytorch-fid's InceptionV3(resize_input=True,
// normalize_input=True): bilinear resize to 299×299 (align_corners false), then 2x − 1.
// One-channel images are repeated to three. Samples in [-1, 1] need (x+1)/2 first. Only the two
// results stay in s; no autograd graph is kept.
func (m *InceptionV3) Forward(s *torch.Scope, x *torch.Tensor) (pool, logits *torch.Tensor) {
	c := s.Child()
	c.SetGradEnabled(false)
	if x != nil && x.Dim() == 4 && x.Size(1) == 1 {
		x = c.Cat([]*torch.Tensor{x, x, x}, 1)
	}
	h := c.InterpolateBilinear(c.ToDType(x, torch.Float32), InceptionSize, InceptionSize, false)
	h = c.SubScalar(c.MulScalar(h, 2), 1)
	for i, conv := range m.stem {
		h = conv.forward(c, h)
		if i == 2 || i == 4 {
			h = c.MaxPool2d(h, 3, 2, 0)
		}
	}
	for _, b := range m.blocks {
		h = b.fwd(b, c, h)
	}
	pool = c.Flatten(c.AdaptiveAvgPool2d(h, 1, 1), 1, -1)
	logits = m.fc.Forward(c, pool)
	s.Merge(c, pool, logits)
	return pool, logits
}

// StateDict lists parameters and buffers with torchvision's names, in its state_dict order.
func (m *InceptionV3) StateDict() []Param {
	var ps []Param
	for _, c := range m.stem {
		ps = append(ps, c.params()...)
	}
	for _, b := range m.blocks {
		for _, c := range b.convs {
			ps = append(ps, c.params()...)
		}
	}
	return append(ps, m.fc.params("fc")...)
}

// LoadStateDict copies named tensors into the network. Every parameter and running statistic must
// be there with its shape (num_batches_tracked may be absent: old files lack it, and eval mode
// never reads it); an extra name means another network. file names the source in errors.
func (m *InceptionV3) LoadStateDict(named map[string]*torch.Tensor, file string) error {
	notFID := func(format string, a ...any) error {
		return fmt.Errorf("%s is not pytorch-fid's Inception-v3 (%s): %s", file, InceptionWeightsFile, fmt.Sprintf(format, a...))
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	known := map[string]bool{}
	for _, p := range m.StateDict() {
		known[p.Name] = true
		src, ok := named[p.Name]
		if !ok {
			if p.Buffer && p.T.Dim() == 0 {
				continue
			}
			return notFID("it has no tensor %s", p.Name)
		}
		if want, got := p.T.Shape(), src.Shape(); fmt.Sprint(want) != fmt.Sprint(got) {
			return notFID("tensor %s has shape %v, the network's is %v", p.Name, got, want)
		}
		s.CopyInto(p.T, s.ToDType(src, p.T.DType()))
	}
	for name := range named {
		if !known[name] {
			return notFID("it has a tensor %s that the network does not", name)
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("loading %s: %w", file, err)
	}
	return nil
}

// LoadInceptionV3 builds the network and loads path, a torch.save file of its state dict such as
// pytorch-fid's pt_inception-2015-12-05-6726825d.pth (--fid-weights). Files in PyTorch's legacy
// (pre-1.6) format are refused with the one-line conversion to run.
func LoadInceptionV3(init Init, path string) (*InceptionV3, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--fid-weights: %w", err)
	}
	head := make([]byte, 4)
	_, rerr := f.Read(head)
	f.Close()
	if rerr != nil || !bytes.Equal(head, []byte("PK\x03\x04")) {
		return nil, fmt.Errorf("--fid-weights %s is not a torch.save zip file; if it is a legacy PyTorch file, convert it once with "+
			"/usr/bin/python3 -c 'import sys, torch; torch.save(torch.load(sys.argv[1]), sys.argv[2])' %s OUT.pth", path, path)
	}
	m, err := NewInceptionV3(init)
	if err != nil {
		return nil, err
	}
	ls := torch.NewScope()
	defer ls.Close()
	named, err := torch.Load(ls, path)
	if err != nil {
		return nil, fmt.Errorf("--fid-weights %s: %w", path, err)
	}
	if err := m.LoadStateDict(named, path); err != nil {
		return nil, fmt.Errorf("--fid-weights: %w", err)
	}
	return m, nil
}
