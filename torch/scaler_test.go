package torch

import (
	"math"
	"testing"
)

// scalerStep runs one scaled step of loss = sum(mult * p) for one parameter p = [1, 2]: the
// gradient is mult (times the scale before unscaling). It returns whether the optimiser stepped,
// the gradient after unscaling and p afterwards.
func scalerStep(t *testing.T, g *GradScaler, p *Tensor, opt *SGD, mult float64) (bool, []float32, []float32) {
	t.Helper()
	s := NewScope()
	defer s.Close()
	loss := s.Sum(s.MulScalar(p, mult), nil, false)
	s.Backward(g.Scale(s, loss))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	stepped, err := g.Step(opt, []*Tensor{p})
	if err != nil {
		t.Fatal(err)
	}
	grad, _ := s.Grad(p).Float32s()
	g.Update()
	ZeroGrad([]*Tensor{p})
	v, _ := p.Float32s()
	return stepped, grad, v
}

func TestGradScalerRules(t *testing.T) {
	store := NewScope()
	defer store.Close()
	p := store.FromFloat32([]float32{1, 2}, 2)
	if err := p.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	opt := NewSGD([]*Tensor{p}, SGDConfig{LR: 0.1})
	defer opt.Close()
	g, err := NewGradScaler(GradScalerConfig{InitScale: 1024, GrowthInterval: 3})
	if err != nil {
		t.Fatal(err)
	}

	// A good step: gradients unscaled to the true gradient, the step taken, the scale kept.
	stepped, grad, v := scalerStep(t, g, p, opt, 0.5)
	if !stepped || grad[0] != 0.5 || v[0] != 1-0.05 || g.ScaleValue() != 1024 {
		t.Fatalf("good step: stepped %v grad %v p %v scale %g", stepped, grad, v, g.ScaleValue())
	}
	// An overflowing step (inf gradient): skipped, parameters untouched, scale halved, run reset.
	stepped, _, v2 := scalerStep(t, g, p, opt, math.Inf(1))
	if stepped || v2[0] != v[0] || v2[1] != v[1] || g.ScaleValue() != 512 || g.State().GrowthTracker != 0 {
		t.Fatalf("inf step: stepped %v p %v (was %v) state %+v", stepped, v2, v, g.State())
	}
	// NaN counts as non-finite too.
	if stepped, _, _ := scalerStep(t, g, p, opt, math.NaN()); stepped || g.ScaleValue() != 256 {
		t.Fatalf("nan step: stepped %v scale %g", stepped, g.ScaleValue())
	}
	// GrowthInterval good steps in a row double the scale, and the run starts again.
	for i := 1; i <= 3; i++ {
		if stepped, _, _ := scalerStep(t, g, p, opt, 1); !stepped {
			t.Fatalf("good step %d skipped", i)
		}
		want := 256.0
		if i == 3 {
			want = 512
		}
		if g.ScaleValue() != want {
			t.Fatalf("after %d good steps scale %g, want %g", i, g.ScaleValue(), want)
		}
	}
	if g.State().GrowthTracker != 0 {
		t.Errorf("tracker %d after growth", g.State().GrowthTracker)
	}
	scalerStep(t, g, p, opt, 1)

	// State round trip: a new scaler loaded from the state continues the same schedule.
	st := g.State()
	h, _ := NewGradScaler(GradScalerConfig{InitScale: 1024, GrowthInterval: 3})
	if err := h.LoadState(st); err != nil {
		t.Fatal(err)
	}
	if h.State() != st || st != (GradScalerState{Scale: 512, GrowthTracker: 1}) {
		t.Errorf("state %+v, loaded %+v", st, h.State())
	}
	for _, bad := range []GradScalerState{{Scale: 0}, {Scale: math.Inf(1)}, {Scale: 1, GrowthTracker: 3}, {Scale: 1, GrowthTracker: -1}} {
		if err := h.LoadState(bad); err == nil {
			t.Errorf("LoadState(%+v) accepted", bad)
		}
	}
}

func TestGradScalerUnscaleOnce(t *testing.T) {
	store := NewScope()
	defer store.Close()
	p := store.FromFloat32([]float32{1}, 1)
	q := store.FromFloat32([]float32{1}, 1) // no gradient: skipped
	_ = p.SetRequiresGrad(true)
	_ = q.SetRequiresGrad(true)
	g, _ := NewGradScaler(GradScalerConfig{InitScale: 8})
	s := NewScope()
	defer s.Close()
	s.Backward(g.Scale(s, s.Sum(s.MulScalar(p, 3), nil, false)))
	inf, err := g.Unscale([]*Tensor{p, q})
	if err != nil || inf {
		t.Fatalf("Unscale: %v %v", inf, err)
	}
	if v, _ := s.Grad(p).Float32s(); v[0] != 3 {
		t.Errorf("unscaled gradient %v, want 3", v)
	}
	if _, err := g.Unscale([]*Tensor{p}); err == nil {
		t.Errorf("a second Unscale before Update divided the gradients again")
	}
	for _, c := range []GradScalerConfig{{InitScale: -1}, {GrowthFactor: 0.5}, {BackoffFactor: 1}, {GrowthInterval: -2}} {
		if _, err := NewGradScaler(c); err == nil {
			t.Errorf("NewGradScaler(%+v) accepted", c)
		}
	}
}
