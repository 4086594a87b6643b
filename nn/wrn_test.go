package nn

import (
	"fmt"
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
		{Depth: 16, Width: 1, Classes: 100, InChannels: 3, Norm: "batch", Dropout: 0.3},
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
