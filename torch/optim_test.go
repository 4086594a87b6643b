package torch

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// optimizer is what Adam and SGD have in common.
type optimizer interface {
	Step() error
	SetLR(float64)
	LR() float64
	State() map[string]*Tensor
	LoadState(map[string]*Tensor) error
	StepCount() int64
	Close()
}

func newOptimizer(kind string, p params, ps []*Tensor) optimizer {
	if kind == "adam" {
		return NewAdam(ps, AdamConfig{LR: p.f("lr"), Beta1: p.f("beta1"), Beta2: p.f("beta2"), Eps: p.f("eps"),
			WeightDecay: p.f("wd")})
	}
	return NewSGD(ps, SGDConfig{LR: p.f("lr"), Momentum: p.f("momentum"), Dampening: p.f("dampening"),
		WeightDecay: p.f("wd"), Nesterov: p.b("nesterov")})
}

// trainSteps runs n steps of the goldens' regression problem, each in its own scope, and returns
// the losses.
func trainSteps(t *testing.T, o optimizer, w, b, x, y *Tensor, n int) []float64 {
	t.Helper()
	var losses []float64
	for range n {
		s := NewScope()
		ZeroGrad([]*Tensor{w, b})
		loss := s.Mean(s.Square(s.Sub(s.Tanh(s.Linear(x, w, b)), y)), nil, false)
		s.Backward(loss)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		v, err := loss.Item()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, v)
		s.Close()
		if err := o.Step(); err != nil {
			t.Fatal(err)
		}
	}
	return losses
}

// TestOptimizerTrajectories compares several steps of Adam and SGD with torch.optim: losses,
// final parameters and the optimizer state under its saved names.
func TestOptimizerTrajectories(t *testing.T) {
	for i, tr := range loadGoldens(t).Optim {
		t.Run(fmt.Sprintf("%s_%d", tr.Kind, i), func(t *testing.T) {
			store := NewScope()
			defer store.Close()
			w, b := tr.W0.tensor(t, store, true), tr.B0.tensor(t, store, true)
			x, y := tr.X.tensor(t, store, false), tr.Y.tensor(t, store, false)
			o := newOptimizer(tr.Kind, tr.Cfg, []*Tensor{w, b})
			defer o.Close()
			losses := trainSteps(t, o, w, b, x, y, tr.Steps)
			for k, want := range tr.Losses {
				if math.Abs(losses[k]-want) > 1e-5*(1+math.Abs(want)) {
					t.Errorf("loss at step %d: %v, want %v", k, losses[k], want)
				}
			}
			expectClose(t, "w", w, tr.W, 1e-5, 1e-5)
			expectClose(t, "b", b, tr.B, 1e-5, 1e-5)
			st := o.State()
			for key, want := range tr.State {
				expectClose(t, "state "+key, st[key], want, 1e-5, 1e-5)
			}
			if o.StepCount() != int64(tr.Steps) {
				t.Errorf("StepCount %d, want %d", o.StepCount(), tr.Steps)
			}
		})
	}
}

// TestOptimizerResume checks that State/LoadState carry everything: 3 steps, save the state into
// a fresh optimizer, 3 more steps, equals 6 uninterrupted steps.
func TestOptimizerResume(t *testing.T) {
	for _, tr := range loadGoldens(t).Optim {
		if tr.Cfg.f("lr") == 0 {
			continue
		}
		t.Run(tr.Kind, func(t *testing.T) {
			store := NewScope()
			defer store.Close()
			w, b := tr.W0.tensor(t, store, true), tr.B0.tensor(t, store, true)
			x, y := tr.X.tensor(t, store, false), tr.Y.tensor(t, store, false)
			o1 := newOptimizer(tr.Kind, tr.Cfg, []*Tensor{w, b})
			trainSteps(t, o1, w, b, x, y, 3)
			o2 := newOptimizer(tr.Kind, tr.Cfg, []*Tensor{w, b})
			defer o2.Close()
			// Through a file, as a checkpoint would.
			path := filepath.Join(t.TempDir(), "optim.pt")
			if err := Save(path, o1.State()); err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(store, path)
			if err != nil {
				t.Fatal(err)
			}
			if err := o2.LoadState(loaded); err != nil {
				t.Fatal(err)
			}
			o1.Close()
			trainSteps(t, o2, w, b, x, y, tr.Steps-3)
			expectClose(t, "w", w, tr.W, 1e-5, 1e-5)
			expectClose(t, "b", b, tr.B, 1e-5, 1e-5)
			if o2.StepCount() != int64(tr.Steps) {
				t.Errorf("StepCount %d after resume, want %d", o2.StepCount(), tr.Steps)
			}
		})
	}
}

func TestOptimizerSetLRAndErrors(t *testing.T) {
	store := NewScope()
	defer store.Close()
	w := store.FromFloat32([]float32{1, 2}, 2)
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	o := NewSGD([]*Tensor{w}, SGDConfig{LR: 0.5})
	defer o.Close()
	s := NewScope()
	s.Backward(s.Sum(s.Square(w), nil, false)) // grad = 2w = [2 4]
	s.Close()
	o.SetLR(0.25)
	if o.LR() != 0.25 {
		t.Fatalf("LR %v after SetLR(0.25)", o.LR())
	}
	if err := o.Step(); err != nil {
		t.Fatal(err)
	}
	got, _ := w.Float32s()
	if got[0] != 0.5 || got[1] != 1 {
		t.Errorf("after one SGD step with lr 0.25: %v, want [0.5 1]", got)
	}
	// A state tensor of the wrong shape must be refused, not broadcast.
	a := NewAdam([]*Tensor{w}, DefaultAdamConfig(1e-3))
	defer a.Close()
	st := a.State()
	st["state.0.exp_avg"] = store.Zeros([]int64{1}, Float32, CPU)
	if err := a.LoadState(st); err == nil {
		t.Errorf("LoadState accepted an exp_avg of shape [1] for a parameter of shape [2]")
	}
	delete(st, "state.0.exp_avg_sq")
	if err := a.LoadState(st); err == nil {
		t.Errorf("LoadState accepted a state without exp_avg_sq")
	}
	// A freed parameter is an error from Step, not a crash.
	v := store.FromFloat32([]float32{1}, 1)
	o2 := NewSGD([]*Tensor{v}, SGDConfig{LR: 0.1})
	defer o2.Close()
	v.Free()
	if err := o2.Step(); err == nil {
		t.Errorf("Step over a freed parameter succeeded")
	}
}
