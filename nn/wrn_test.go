package nn

import (
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

const refPython = "/usr/bin/python3"

func newModel(t *testing.T, store *torch.Scope, cfg WRNConfig, seed uint64) *WideResNet {
	t.Helper()
	gen, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	m, err := NewWideResNet(Init{Store: store, Gen: gen, Dev: torch.CPU}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Dropout in training mode draws from the model's own generator.
	dg, err := torch.NewGenerator(seed+1, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dg.Close)
	m.SetDropoutGenerator(dg)
	return m
}

// TestCheckpointLoadsInPyTorch: the state dict of a Go WideResNet loads strictly into the PyTorch
// module of testdata/wrn_reference.py and gives the same logits.
func TestCheckpointLoadsInPyTorch(t *testing.T) {
	if err := exec.Command(refPython, "-c", "import torch").Run(); err != nil {
		t.Skip("Debian's python3-torch is not installed; `make deps` installs it")
	}
	for _, cfg := range []WRNConfig{
		{Depth: 10, Width: 2, Classes: 10, InChannels: 1, Norm: "none"},
		{Depth: 16, Width: 1, Classes: 100, InChannels: 3, Norm: "batch", Dropout: 0.3, ChannelsLast: true},
	} {
		name := fmt.Sprintf("wrn-%d-%d-%s-%dch", cfg.Depth, cfg.Width, cfg.Norm, cfg.InChannels)
		t.Run(name, func(t *testing.T) {
			store := torch.NewScope()
			defer store.Close()
			m := newModel(t, store, cfg, 3)
			s := torch.NewScope()
			defer s.Close()
			side := int64(28)
			if cfg.InChannels == 3 {
				side = 32
			}
			x := s.Randn(nil, []int64{4, int64(cfg.InChannels), side, side}, torch.Float32, torch.CPU)
			if cfg.Norm == "batch" {
				// A few training-mode passes give the running statistics non-default values.
				for i := 0; i < 3; i++ {
					m.Forward(s, s.AddScalar(x, float64(i)), true)
				}
			}
			logits := m.Forward(s, x, false)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			named := map[string]*torch.Tensor{"input": x, "logits": logits}
			for _, p := range m.StateDict() {
				named["state_dict."+p.Name] = p.T
			}
			path := filepath.Join(t.TempDir(), "wrn.pt")
			if err := torch.Save(path, named); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(refPython, "testdata/wrn_reference.py", "CHECK", path, fmt.Sprint(cfg.Depth),
				fmt.Sprint(cfg.Width), cfg.Norm, fmt.Sprint(cfg.InChannels), fmt.Sprint(cfg.Classes)).CombinedOutput()
			if err != nil {
				t.Fatalf("PyTorch disagrees: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// TestLoadStateDictRejectsOtherShapes: loading weights of another architecture names the
// offending parameter instead of failing inside libtorch.
func TestLoadStateDictRejectsOtherShapes(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	a := newModel(t, store, WRNConfig{Depth: 10, Width: 2, Classes: 10, InChannels: 1, Norm: "none"}, 1)
	b := newModel(t, store, WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 1, Norm: "none"}, 1)
	c := newModel(t, store, WRNConfig{Depth: 10, Width: 2, Classes: 10, InChannels: 1, Norm: "batch"}, 1)
	named := func(m *WideResNet) map[string]*torch.Tensor {
		out := map[string]*torch.Tensor{}
		for _, p := range m.StateDict() {
			out[p.Name] = p.T
		}
		return out
	}
	if err := a.LoadStateDict(named(b)); err == nil {
		t.Error("loading wrn-10-1 weights into wrn-10-2 succeeded")
	} else {
		t.Log(err)
	}
	if err := a.LoadStateDict(named(c)); err == nil {
		t.Error("loading batch-norm weights into a model without batch norm succeeded")
	} else {
		t.Log(err)
	}
	if err := c.LoadStateDict(named(a)); err == nil {
		t.Error("loading weights without batch norm into a batch-norm model succeeded")
	}
	if err := a.LoadStateDict(named(a)); err != nil {
		t.Errorf("loading its own weights: %v", err)
	}
}

func TestParseModel(t *testing.T) {
	for _, tc := range []struct {
		in    string
		d, w  int
		valid bool
	}{{"wrn-28-10", 28, 10, true}, {"WRN-10-2", 10, 2, true}, {"wrn-16-4", 16, 4, true},
		{"wrn-12-2", 0, 0, false}, {"resnet-18", 0, 0, false}, {"wrn-28-0", 0, 0, false}, {"wrn-4-1", 0, 0, false}} {
		d, w, err := ParseModel(tc.in)
		if (err == nil) != tc.valid || d != tc.d || w != tc.w {
			t.Errorf("ParseModel(%q) = %d, %d, %v", tc.in, d, w, err)
		}
	}
}

// TestWRN28x10Builds: the paper's model builds with the expected parameter count (36.5M for
// JEM's variant without batch norm, with conv biases).
func TestWRN28x10Builds(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	m := newModel(t, store, WRNConfig{Depth: 28, Width: 10, Classes: 10, InChannels: 3, Norm: "none"}, 1)
	n := m.NumParams()
	if n < 36_400_000 || n > 36_600_000 {
		t.Errorf("wrn-28-10 has %d parameters", n)
	}
}

// TestChannelsLastMatchesContiguous: the NHWC layout is a speed choice only. A channels-last model
// and a row-major one from the same seed give the same logits and parameter gradients, and the
// channels-last one really holds its conv weights and activations NHWC.
func TestChannelsLastMatchesContiguous(t *testing.T) {
	cfg := WRNConfig{Depth: 10, Width: 2, Classes: 10, InChannels: 3, Norm: "batch"}
	store := torch.NewScope()
	defer store.Close()
	row := newModel(t, store, cfg, 5)
	cfg.ChannelsLast = true
	nhwc := newModel(t, store, cfg, 5)
	for _, p := range nhwc.StateDict() {
		if p.T.Dim() == 4 && p.T.Size(2)*p.T.Size(3) > 1 && !p.T.IsChannelsLast() { // 1×1 kernels are both layouts
			t.Fatalf("%s is not channels-last", p.Name)
		}
	}
	if row.StateDict()[0].T.IsChannelsLast() {
		t.Fatal("the row-major model's conv1.weight reports channels-last")
	}
	s := torch.NewScope()
	defer s.Close()
	gen, err := torch.NewGenerator(7, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	x := s.Randn(gen, []int64{6, 3, 32, 32}, torch.Float32, torch.CPU)
	grads := func(m *WideResNet) ([]float32, [][]float32) {
		logits := m.Forward(s, x, true)
		var params []*torch.Tensor
		for _, p := range m.Parameters() {
			params = append(params, p)
		}
		g := s.Gradients([]*torch.Tensor{s.Sum(s.Square(logits), nil, false)}, params, false)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		l, _ := logits.Float32s()
		var gs [][]float32
		for _, gi := range g {
			v, _ := gi.Float32s()
			gs = append(gs, v)
		}
		return l, gs
	}
	if h := s.ChannelsLast(x); !h.IsChannelsLast() || s.Err() != nil {
		t.Fatalf("ChannelsLast did not give an NHWC tensor (%v)", s.Err())
	}
	l1, g1 := grads(row)
	l2, g2 := grads(nhwc)
	close := func(what string, a, b []float32) {
		t.Helper()
		var scale, worst float64
		for i := range a {
			scale = max(scale, math.Abs(float64(a[i])))
			worst = max(worst, math.Abs(float64(a[i]-b[i])))
		}
		// Float32 sums in another order, through batch norm's backward (which subtracts means),
		// differ by up to about 1e-3 of the largest value; a layout mix-up would be off by O(1).
		// The floor covers conv biases that feed batch norm: their true gradient is 0 and both
		// layouts give rounding noise around it.
		if len(a) != len(b) || worst > 5e-3*scale+1e-5 {
			t.Fatalf("%s: channels-last differs by %g (scale %g)", what, worst, scale)
		}
	}
	close("logits", l1, l2)
	for i := range g1 {
		close(fmt.Sprintf("gradient %d", i), g1[i], g2[i])
	}
}
