package nn

import (
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// classifier is the method set a model package relies on; both families must have it.
type classifier interface {
	Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor
	Features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor
	StateDict() []Param
	Parameters() []*torch.Tensor
	NumParams() int64
	LoadStateDict(named map[string]*torch.Tensor) error
	FLOPs(h, w int) float64
}

var (
	_ classifier = (*WideResNet)(nil)
	_ classifier = (*ResNet)(nil)
)

func newResNet(t *testing.T, store *torch.Scope, cfg ResNetConfig, seed uint64) *ResNet {
	t.Helper()
	gen, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	m, err := NewResNet(Init{Store: store, Gen: gen, Dev: torch.CPU}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestResNetMatchesTorchvision: the Go state dict loads strictly into torchvision's resnet18 /
// resnet50 with the CIFAR stem (testdata/resnet_reference.py), and both give the same logits in
// training mode (batch statistics), the same updated running statistics, and the same logits in
// evaluation mode, for row-major and channels-last models and 1-channel inputs. Tolerance 1e-4 of
// the largest value, checked by the script.
func TestResNetMatchesTorchvision(t *testing.T) {
	if err := exec.Command(refPython, "-c", "import torchvision").Run(); err != nil {
		t.Skip("Debian's python3-torchvision is not installed; `make deps` installs it")
	}
	dir := t.TempDir()
	args := []string{"testdata/resnet_reference.py", "CHECK"}
	for _, tc := range []struct {
		cfg  ResNetConfig
		side int64
	}{
		{ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 32},
		{ResNetConfig{Depth: 18, Classes: 10, InChannels: 3, ChannelsLast: true}, 32},
		{ResNetConfig{Depth: 18, Classes: 10, InChannels: 1}, 28},
		{ResNetConfig{Depth: 50, Classes: 100, InChannels: 3}, 32},
		{ResNetConfig{Depth: 50, Classes: 100, InChannels: 3, ChannelsLast: true}, 32},
	} {
		cfg := tc.cfg
		name := fmt.Sprintf("resnet-%d-%dch-cl%v", cfg.Depth, cfg.InChannels, cfg.ChannelsLast)
		func() {
			store := torch.NewScope()
			defer store.Close()
			m := newResNet(t, store, cfg, 3)
			s := torch.NewScope()
			defer s.Close()
			gen, err := torch.NewGenerator(9, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer gen.Close()
			x := s.Randn(gen, []int64{3, int64(cfg.InChannels), tc.side, tc.side}, torch.Float32, torch.CPU)
			// One training pass first gives the running statistics non-default values.
			m.Forward(s, s.MulScalar(x, 2), true)
			named := map[string]*torch.Tensor{"input": x}
			for _, p := range m.StateDict() {
				named["before."+p.Name] = s.Clone(s.Detach(p.T))
			}
			named["logits_train"] = s.Detach(m.Forward(s, x, true))
			for _, p := range m.StateDict() {
				named["after."+p.Name] = p.T
			}
			named["logits_eval"] = m.Forward(s, x, false)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, name+".pt")
			if err := torch.Save(path, named); err != nil {
				t.Fatal(err)
			}
			args = append(args, path, fmt.Sprint(cfg.Depth), fmt.Sprint(cfg.InChannels), fmt.Sprint(cfg.Classes))
		}()
	}
	// One interpreter for every case: importing torchvision costs seconds.
	out, err := exec.Command(refPython, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("torchvision disagrees: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestResNetShapesAndCounts: parameter counts are torchvision's for the CIFAR stem (11,173,962
// for ResNet-18 and 23,520,842 for ResNet-50 with 10 classes), features have 512 / 2048 columns,
// and names follow torchvision's scheme.
func TestResNetShapesAndCounts(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	for _, tc := range []struct {
		depth  int
		params int64
		feat   int64
		names  []string
	}{
		{18, 11_173_962, 512, []string{"conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.num_batches_tracked", "fc.bias"}},
		{50, 23_520_842, 2048, []string{"layer1.0.downsample.1.weight", "layer3.5.conv3.weight", "layer4.2.bn3.bias", "fc.weight"}},
	} {
		m := newResNet(t, store, ResNetConfig{Depth: tc.depth, Classes: 10, InChannels: 3}, 1)
		if n := m.NumParams(); n != tc.params {
			t.Errorf("resnet-%d: %d parameters, want %d", tc.depth, n, tc.params)
		}
		have := map[string]bool{}
		for _, p := range m.StateDict() {
			have[p.Name] = true
		}
		for _, n := range tc.names {
			if !have[n] {
				t.Errorf("resnet-%d lacks %s", tc.depth, n)
			}
		}
		s := torch.NewScope()
		f := m.Features(s, s.Zeros([]int64{2, 3, 32, 32}, torch.Float32, torch.CPU), false)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if sh := f.Shape(); len(sh) != 2 || sh[0] != 2 || sh[1] != tc.feat {
			t.Errorf("resnet-%d features %v, want [2 %d]", tc.depth, sh, tc.feat)
		}
		s.Close()
	}
}

// TestResNetInit: convolutions are N(0, 2/fan_out) (kaiming normal, fan_out, ReLU), batch norms
// start at weight 1 and bias 0, fc is U(±1/√512); the generator decides the draws.
func TestResNetInit(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	a := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 1)
	b := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 1)
	c := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 2)
	values := func(m *ResNet, name string) []float32 {
		for _, p := range m.StateDict() {
			if p.Name == name {
				v, err := p.T.Float32s()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no %s", name)
		return nil
	}
	std := func(v []float32) (mean, sd float64) {
		var s, s2 float64
		for _, x := range v {
			s += float64(x)
			s2 += float64(x) * float64(x)
		}
		n := float64(len(v))
		return s / n, math.Sqrt(s2/n - (s/n)*(s/n))
	}
	// layer3.0.conv2: 256×256×3×3, fan_out = 2304, std = sqrt(2/2304) = 0.02946.
	w := values(a, "layer3.0.conv2.weight")
	if m, sd := std(w); abs(m) > 1e-3 || abs(sd-0.02946) > 0.0005 {
		t.Errorf("layer3.0.conv2.weight mean %v std %v, want 0 and 0.02946", m, sd)
	}
	// layer4.0.downsample.0: 512×256×1×1, fan_out = 512, std = 0.0625.
	if m, sd := std(values(a, "layer4.0.downsample.0.weight")); abs(m) > 2e-3 || abs(sd-0.0625) > 0.001 {
		t.Errorf("downsample conv mean %v std %v, want 0 and 0.0625", m, sd)
	}
	for _, v := range values(a, "layer2.1.bn1.weight") {
		if v != 1 {
			t.Fatal("batch-norm weight is not 1")
		}
	}
	for _, v := range values(a, "layer2.1.bn1.bias") {
		if v != 0 {
			t.Fatal("batch-norm bias is not 0")
		}
	}
	for _, v := range values(a, "fc.weight") {
		if abs(float64(v)) > 1/math.Sqrt(512) {
			t.Fatalf("fc weight %v outside ±1/√512", v)
		}
	}
	wa, wb, wc := values(a, "conv1.weight"), values(b, "conv1.weight"), values(c, "conv1.weight")
	if fmt.Sprint(wa) != fmt.Sprint(wb) || fmt.Sprint(wa) == fmt.Sprint(wc) {
		t.Error("the generator's seed does not decide the weights")
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestResNetFLOPs: ResNet-18 on 32×32×3, counted by hand layer by layer (2 × multiply-adds).
func TestResNetFLOPs(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 1)
	conv := func(cin, cout, k, side int) float64 { return 2 * float64(cin*cout*k*k*side*side) }
	want := conv(3, 64, 3, 32) +
		4*conv(64, 64, 3, 32) + // layer1: two blocks of two 3×3 convs at 32×32
		conv(64, 128, 3, 16) + conv(128, 128, 3, 16) + conv(64, 128, 1, 16) + 2*conv(128, 128, 3, 16) +
		conv(128, 256, 3, 8) + conv(256, 256, 3, 8) + conv(128, 256, 1, 8) + 2*conv(256, 256, 3, 8) +
		conv(256, 512, 3, 4) + conv(512, 512, 3, 4) + conv(256, 512, 1, 4) + 2*conv(512, 512, 3, 4) +
		2*512*10
	if got := m.FLOPs(32, 32); got != want {
		t.Errorf("FLOPs %v, hand count %v", got, want)
	}
	// 0.56 G multiply-adds is the usual figure for the CIFAR ResNet-18.
	if macs := want / 2; macs < 0.55e9 || macs > 0.56e9 {
		t.Errorf("hand count %v multiply-adds", macs)
	}
	r50 := newResNet(t, store, ResNetConfig{Depth: 50, Classes: 10, InChannels: 3}, 1)
	if f := r50.FLOPs(32, 32) / 2; f < 1.29e9 || f > 1.32e9 {
		t.Errorf("resnet-50 %v multiply-adds, want about 1.30e9", f)
	}
}

func TestParseResNet(t *testing.T) {
	for _, tc := range []struct {
		in    string
		depth int
	}{{"resnet-18", 18}, {"ResNet-50", 50}, {"resnet18", 18}, {"resnet-34", 0}, {"wrn-28-10", 0}, {"resnet-", 0}} {
		d, err := ParseResNet(tc.in)
		if d != tc.depth || (err == nil) != (tc.depth != 0) {
			t.Errorf("ParseResNet(%q) = %d, %v", tc.in, d, err)
		}
	}
	if _, err := ParseResNet("resnet-34"); err == nil || !strings.Contains(err.Error(), "18 or 50") {
		t.Errorf("resnet-34: %v", err)
	}
}

func TestResNetBadConfigAndLoad(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	gen, _ := torch.NewGenerator(1, torch.CPU)
	defer gen.Close()
	for _, cfg := range []ResNetConfig{{Depth: 34, Classes: 10, InChannels: 3}, {Depth: 18, Classes: 1, InChannels: 3}, {Depth: 18, Classes: 10, InChannels: 2}} {
		if _, err := NewResNet(Init{Store: store, Gen: gen, Dev: torch.CPU}, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	a := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 10, InChannels: 3}, 1)
	b := newResNet(t, store, ResNetConfig{Depth: 18, Classes: 100, InChannels: 3}, 1)
	w := newModel(t, store, WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 3, Norm: "batch"}, 1)
	named := func(ps []Param) map[string]*torch.Tensor {
		out := map[string]*torch.Tensor{}
		for _, p := range ps {
			out[p.Name] = p.T
		}
		return out
	}
	if err := a.LoadStateDict(named(b.StateDict())); err == nil || !strings.Contains(err.Error(), "fc.weight") {
		t.Errorf("100-class weights into a 10-class model: %v", err)
	}
	if err := a.LoadStateDict(named(w.StateDict())); err == nil || !strings.Contains(err.Error(), "conv1.weight") {
		t.Errorf("WideResNet weights: %v", err)
	}
	extra := named(a.StateDict())
	extra["layer5.0.conv1.weight"] = a.StateDict()[0].T
	if err := a.LoadStateDict(extra); err == nil || !strings.Contains(err.Error(), "layer5.0.conv1.weight") {
		t.Errorf("extra entry: %v", err)
	}
	if err := a.LoadStateDict(named(a.StateDict())); err != nil {
		t.Errorf("its own weights: %v", err)
	}
}
