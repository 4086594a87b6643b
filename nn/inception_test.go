package nn

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// randomInception builds the network on random weights, with random batch-norm parameters and
// running statistics too, so that a swapped name would change the numbers.
func randomInception(t *testing.T, store *torch.Scope, seed uint64) *InceptionV3 {
	t.Helper()
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m, err := NewInceptionV3(Init{Store: store, Gen: g, Dev: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	for _, p := range m.StateDict() {
		var lo, hi float64
		switch {
		case strings.HasSuffix(p.Name, "bn.weight"), strings.HasSuffix(p.Name, "running_var"):
			lo, hi = 0.5, 1.5
		case strings.HasSuffix(p.Name, "bn.bias"), strings.HasSuffix(p.Name, "running_mean"):
			lo, hi = -0.1, 0.1
		default:
			continue
		}
		u := s.Rand(g, p.T.Shape(), torch.Float32, torch.CPU)
		s.CopyInto(p.T, s.AddScalar(s.MulScalar(u, hi-lo), lo))
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func stateMap(m *InceptionV3) map[string]*torch.Tensor {
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	return named
}

func maxDiff(t *testing.T, what string, got *torch.Tensor, want *torch.Tensor, atol, rtol float64) {
	t.Helper()
	if g, w := got.Shape(), want.Shape(); len(g) != len(w) || g[0] != w[0] || g[len(g)-1] != w[len(w)-1] {
		t.Fatalf("%s: shape %v, want %v", what, g, w)
	}
	a, err := got.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	b, err := want.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	worst, scale := 0.0, 0.0
	for i := range a {
		worst = math.Max(worst, math.Abs(a[i]-b[i]))
		scale = math.Max(scale, math.Abs(b[i]))
		if math.Abs(a[i]-b[i]) > atol+rtol*math.Abs(b[i]) {
			t.Fatalf("%s: element %d is %v, reference %v", what, i, a[i], b[i])
		}
	}
	t.Logf("%s: max |diff| %.2g over values up to %.3g", what, worst, scale)
}

// TestInceptionMatchesPatchedTorchvision: pool_3 features and logits of the Go network equal those
// of torchvision's inception_v3 patched into pytorch-fid's FID network (testdata/
// inception_reference.py) on the same random weights, for a batch of two 32×32 images.
func TestInceptionMatchesPatchedTorchvision(t *testing.T) {
	if err := exec.Command(refPython, "-c", "import torch, torchvision").Run(); err != nil {
		t.Skip("Debian's python3-torch and python3-torchvision are not installed; `make deps` installs them")
	}
	store := torch.NewScope()
	defer store.Close()
	m := randomInception(t, store, 12)
	s := torch.NewScope()
	defer s.Close()
	g, err := torch.NewGenerator(5, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	x := s.Rand(g, []int64{2, 3, 32, 32}, torch.Float32, torch.CPU)
	pool, logits := m.Forward(s, x)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if got := pool.Shape(); got[0] != 2 || got[1] != InceptionFeatures {
		t.Fatalf("pool shape %v", got)
	}
	if got := logits.Shape(); got[0] != 2 || got[1] != InceptionClasses {
		t.Fatalf("logits shape %v", got)
	}

	dir := t.TempDir()
	weights, input, out := filepath.Join(dir, "w.pt"), filepath.Join(dir, "x.pt"), filepath.Join(dir, "out.pt")
	if err := torch.Save(weights, stateMap(m)); err != nil {
		t.Fatal(err)
	}
	if err := torch.Save(input, map[string]*torch.Tensor{"x": x}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(refPython, filepath.Join("testdata", "inception_reference.py"), weights, input, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference: %v\n%s", err, b)
	}
	ref, err := torch.Load(s, out)
	if err != nil {
		t.Fatal(err)
	}
	// float32 through 94 convolutions whose algorithms may differ in summation order.
	maxDiff(t, "pool_3", pool, ref["pool"], 1e-4, 1e-4)
	maxDiff(t, "logits", logits, ref["logits"], 1e-4, 1e-4)

	// The same weights through the file loader give the same features.
	lstore := torch.NewScope()
	defer lstore.Close()
	lg, _ := torch.NewGenerator(99, torch.CPU)
	defer lg.Close()
	loaded, err := LoadInceptionV3(Init{Store: lstore, Gen: lg, Dev: torch.CPU}, weights)
	if err != nil {
		t.Fatal(err)
	}
	pool2, _ := loaded.Forward(s, x)
	maxDiff(t, "pool_3 after LoadInceptionV3", pool2, pool, 0, 0)
}

func TestInceptionGreyIsRepeatedToRGB(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := randomInception(t, store, 3)
	s := torch.NewScope()
	defer s.Close()
	g, _ := torch.NewGenerator(1, torch.CPU)
	defer g.Close()
	grey := s.Rand(g, []int64{1, 1, 20, 20}, torch.Float32, torch.CPU)
	p1, l1 := m.Forward(s, grey)
	p3, l3 := m.Forward(s, s.Cat([]*torch.Tensor{grey, grey, grey}, 1))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	maxDiff(t, "grey pool", p1, p3, 0, 0)
	maxDiff(t, "grey logits", l1, l3, 0, 0)
}

func TestInceptionWeightsErrors(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := randomInception(t, store, 4)
	dir := t.TempDir()
	s := torch.NewScope()
	defer s.Close()

	named := stateMap(m)
	bad := map[string]*torch.Tensor{}
	for k, v := range named {
		bad[k] = v
	}
	bad["Mixed_6c.branch7x7_2.conv.weight"] = s.Zeros([]int64{160, 160, 7, 1}, torch.Float32, torch.CPU)
	if err := m.LoadStateDict(bad, "w.pt"); err == nil || !strings.Contains(err.Error(), "w.pt") ||
		!strings.Contains(err.Error(), "Mixed_6c.branch7x7_2.conv.weight") {
		t.Errorf("wrong shape: %v", err)
	}
	delete(bad, "Mixed_6c.branch7x7_2.conv.weight")
	if err := m.LoadStateDict(bad, "w.pt"); err == nil || !strings.Contains(err.Error(), "has no tensor Mixed_6c.branch7x7_2.conv.weight") {
		t.Errorf("missing tensor: %v", err)
	}
	bad["Mixed_6c.branch7x7_2.conv.weight"] = named["Mixed_6c.branch7x7_2.conv.weight"]
	bad["AuxLogits.fc.weight"] = s.Zeros([]int64{1008, 768}, torch.Float32, torch.CPU)
	if err := m.LoadStateDict(bad, "w.pt"); err == nil || !strings.Contains(err.Error(), "AuxLogits.fc.weight") {
		t.Errorf("extra tensor: %v", err)
	}
	delete(bad, "AuxLogits.fc.weight")
	for k := range bad {
		if strings.HasSuffix(k, "num_batches_tracked") {
			delete(bad, k)
		}
	}
	if err := m.LoadStateDict(bad, "w.pt"); err != nil {
		t.Errorf("a file without num_batches_tracked was refused: %v", err)
	}

	// Another network's weights: named by file and first missing tensor.
	wstore := torch.NewScope()
	defer wstore.Close()
	wrn := newModel(t, wstore, WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 3, Norm: "none"}, 1)
	wrnPath := filepath.Join(dir, "wrn.pt")
	wnamed := map[string]*torch.Tensor{}
	for _, p := range wrn.StateDict() {
		wnamed[p.Name] = p.T
	}
	if err := torch.Save(wrnPath, wnamed); err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(1, torch.CPU)
	defer g.Close()
	in := Init{Store: torch.NewScope(), Gen: g, Dev: torch.CPU}
	defer in.Store.Close()
	if _, err := LoadInceptionV3(in, wrnPath); err == nil || !strings.Contains(err.Error(), wrnPath) ||
		!strings.Contains(err.Error(), "Conv2d_1a_3x3.conv.weight") || !strings.Contains(err.Error(), "--fid-weights") {
		t.Errorf("WideResNet weights: %v", err)
	}
	junk := filepath.Join(dir, "junk.pth")
	if err := os.WriteFile(junk, []byte("\x80\x02not a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadInceptionV3(in, junk); err == nil || !strings.Contains(err.Error(), "legacy") {
		t.Errorf("legacy file: %v", err)
	}
	if _, err := LoadInceptionV3(in, filepath.Join(dir, "absent.pth")); err == nil || !strings.Contains(err.Error(), "--fid-weights") {
		t.Errorf("absent file: %v", err)
	}
}

// BenchmarkInceptionForward times the FID network's features for batches of 8 CIFAR-sized images
// (each resized to 299×299).
func BenchmarkInceptionForward(b *testing.B) {
	store := torch.NewScope()
	defer store.Close()
	g, _ := torch.NewGenerator(1, torch.CPU)
	defer g.Close()
	m, err := NewInceptionV3(Init{Store: store, Gen: g, Dev: torch.CPU})
	if err != nil {
		b.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.Rand(g, []int64{8, 3, 32, 32}, torch.Float32, torch.CPU)
	for b.Loop() {
		c := torch.NewScope()
		m.Forward(c, x)
		if err := c.Err(); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(8*b.N)/b.Elapsed().Seconds(), "img/s")
}
