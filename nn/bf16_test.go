package nn

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// bf16 keeps 8 significant bits, so each rounding is off by up to 2^-9 ≈ 2e-3 relative. A training
// step's loss sums many roundings that mostly cancel: it agrees with float32's to about 4e-4
// relative here (1e-3 allowed). Gradients at initialisation are small differences of large terms
// passed back through every layer and batch norm's division by batch statistics, so a whole tensor's
// relative L2 error ‖g_bf16 − g_fp32‖/‖g_fp32‖ is about 0.1: PyTorch's own torch.autocast bf16 gives
// a median of 0.09–0.13 over this model's tensors (Debian's python3-torch, same shapes). Allowed:
// 0.3 per tensor and 0.15 for all parameters' gradients together; a wrong cast, a stale cached
// weight or a gradient that misses a parameter gives order 1. Convolution biases are left out under
// batch norm: the normalisation cancels them, their exact gradient is zero and both computed ones
// are rounding noise.
const (
	bf16LossTol     = 1e-3
	bf16GradTol     = 0.3
	bf16AllGradsTol = 0.15
)

func smallBF16Config() WRNConfig {
	return WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 1, Norm: "batch", ChannelsLast: true}
}

// step runs forward, cross-entropy and backward in precision p and returns the loss, the logits'
// dtype and every parameter's gradient.
func bf16Step(t *testing.T, m *WideResNet, p torch.Precision, xs []float32, ys []int64, side int64) (float64, torch.DType, [][]float32) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	s.SetPrecision(p)
	x := s.FromFloat32(xs, int64(len(ys)), 1, side, side)
	y := s.FromInt64(ys, int64(len(ys)))
	logits := m.Forward(s, x, true)
	loss := s.CrossEntropy(logits, y, 0, torch.Mean)
	s.Backward(loss)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	lv, _ := loss.Item()
	var grads [][]float32
	for _, q := range m.Parameters() {
		g, err := s.Grad(q).Float32s()
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, g)
	}
	torch.ZeroGrad(m.Parameters())
	return lv, logits.DType(), grads
}

func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		d += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// TestBF16StepMatchesFP32: one training step's loss and parameter gradients under BF16 agree with
// float32's on the same weights and batch, and the logits come out float32.
func TestBF16StepMatchesFP32(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := newModel(t, store, smallBF16Config(), 5)
	const n, side = 8, 12
	g, _ := torch.NewGenerator(11, torch.CPU)
	defer g.Close()
	s := torch.NewScope()
	xs, _ := s.Randn(g, []int64{n * side * side}, torch.Float32, torch.CPU).Float32s()
	s.Close()
	ys := []int64{0, 1, 2, 3, 4, 5, 6, 7}

	l32, dt32, g32 := bf16Step(t, m, torch.FP32, xs, ys, side)
	l16, dt16, g16 := bf16Step(t, m, torch.BF16, xs, ys, side)
	if dt32 != torch.Float32 || dt16 != torch.Float32 {
		t.Errorf("logits dtype fp32 %v, bf16 %v: want float32 for both", dt32, dt16)
	}
	if r := math.Abs(l16-l32) / math.Abs(l32); r > bf16LossTol {
		t.Errorf("loss bf16 %g, fp32 %g: relative difference %.2g > %g", l16, l32, r, bf16LossTol)
	}
	names := m.StateDict()
	var pn []string
	for _, p := range names {
		if !p.Buffer {
			pn = append(pn, p.Name)
		}
	}
	worst := 0.0
	var all16, all32 []float32
	for i := range g32 {
		if strings.HasSuffix(pn[i], ".bias") && !strings.Contains(pn[i], "bn") && pn[i] != "linear.bias" {
			continue
		}
		all16, all32 = append(all16, g16[i]...), append(all32, g32[i]...)
		r := relL2(g16[i], g32[i])
		worst = max(worst, r)
		if r > bf16GradTol {
			t.Errorf("%s: gradient relative L2 error %.3g > %g", pn[i], r, bf16GradTol)
		}
	}
	if r := relL2(all16, all32); r > bf16AllGradsTol {
		t.Errorf("all gradients: relative L2 error %.3g > %g", r, bf16AllGradsTol)
	} else {
		t.Logf("all gradients: relative L2 error %.3g", r)
	}
	t.Logf("loss fp32 %.6f bf16 %.6f; worst gradient relative L2 error %.3g", l32, l16, worst)
}

// TestBF16TrainingKeepsFP32State: after Adam steps under BF16 the parameters, their gradients, the
// optimiser's moments and batch norm's running statistics are all float32, and a checkpoint of the
// model (float32 tensors) loads into a fresh one that gives the same bf16 logits.
func TestBF16TrainingKeepsFP32State(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := newModel(t, store, smallBF16Config(), 6)
	opt := torch.NewAdam(m.Parameters(), torch.DefaultAdamConfig(1e-3))
	defer opt.Close()
	const n, side = 4, 12
	x0 := torch.NewScope()
	defer x0.Close()
	x := x0.Randn(nil, []int64{n, 1, side, side}, torch.Float32, torch.CPU)
	y := x0.FromInt64([]int64{1, 2, 3, 4}, n)
	for i := 0; i < 2; i++ {
		s := torch.NewScope()
		s.SetPrecision(torch.BF16)
		s.Backward(s.CrossEntropy(m.Forward(s, x, true), y, 0, torch.Mean))
		if i == 1 {
			for _, p := range m.Parameters() {
				if g := s.Grad(p); g == nil || g.DType() != torch.Float32 {
					t.Fatalf("gradient %v, want float32", g)
				}
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		torch.ZeroGrad(m.Parameters())
		s.Close()
	}
	for _, p := range m.StateDict() {
		if !strings.HasSuffix(p.Name, "num_batches_tracked") && p.T.DType() != torch.Float32 {
			t.Errorf("%s is %v after bf16 steps, want float32", p.Name, p.T.DType())
		}
	}
	for k, v := range opt.State() {
		if v.DType() != torch.Float32 && v.DType() != torch.Int64 && v.DType() != torch.Float64 {
			t.Errorf("Adam state %s is %v", k, v.DType())
		}
		if v.Dim() > 0 && v.DType() != torch.Float32 {
			t.Errorf("Adam moment %s is %v, want float32", k, v.DType())
		}
	}

	path := filepath.Join(t.TempDir(), "model.pt")
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	if err := torch.Save(path, named); err != nil {
		t.Fatal(err)
	}
	ls := torch.NewScope()
	defer ls.Close()
	loaded, err := torch.Load(ls, path)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range loaded {
		if v.Dim() > 0 && v.DType() != torch.Float32 {
			t.Errorf("checkpoint tensor %s is %v, want float32", k, v.DType())
		}
	}
	store2 := torch.NewScope()
	defer store2.Close()
	m2 := newModel(t, store2, smallBF16Config(), 99)
	if err := m2.LoadStateDict(loaded); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	s.SetPrecision(torch.BF16)
	a, _ := m.Forward(s, x, false).Float32s()
	b, _ := m2.Forward(s, x, false).Float32s()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("reloaded model's bf16 logit %d is %v, the original's %v", i, b[i], a[i])
		}
	}
}
