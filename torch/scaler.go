package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"fmt"
	"math"
)

// GradScalerConfig holds torch.cuda.amp.GradScaler's settings; zero fields take its defaults.
type GradScalerConfig struct {
	InitScale      float64 // 65536
	GrowthFactor   float64 // 2
	BackoffFactor  float64 // 0.5
	GrowthInterval int     // 2000 good steps between growths
}

// GradScalerState is what a checkpoint keeps to resume loss scaling exactly.
type GradScalerState struct {
	Scale         float64 `json:"scale"`
	GrowthTracker int     `json:"growth_tracker"`
}

// GradScaler is dynamic loss scaling for float16 training, with GradScaler's rules: the loss is
// multiplied by the scale before backward so that small gradients survive float16's range; the
// gradients are divided by it again before the optimiser step; a step whose gradients hold an inf or
// NaN is skipped and the scale halved; after GrowthInterval good steps in a row the scale doubles.
// bfloat16 has float32's range and needs none of this.
//
// A step: loss = g.Scale(s, loss); backward; stepped, err := g.Step(opt, params); g.Update().
type GradScaler struct {
	cfg      GradScalerConfig
	scale    float64
	tracker  int
	unscaled bool // Unscale ran since the last Update
	foundInf bool
}

// NewGradScaler returns a scaler at cfg.InitScale.
func NewGradScaler(cfg GradScalerConfig) (*GradScaler, error) {
	if cfg.InitScale == 0 {
		cfg.InitScale = 65536
	}
	if cfg.GrowthFactor == 0 {
		cfg.GrowthFactor = 2
	}
	if cfg.BackoffFactor == 0 {
		cfg.BackoffFactor = 0.5
	}
	if cfg.GrowthInterval == 0 {
		cfg.GrowthInterval = 2000
	}
	switch {
	case !(cfg.InitScale > 0) || math.IsInf(cfg.InitScale, 0):
		return nil, fmt.Errorf("grad scaler: initial scale must be positive and finite, got %g", cfg.InitScale)
	case !(cfg.GrowthFactor > 1):
		return nil, fmt.Errorf("grad scaler: growth factor must be above 1, got %g", cfg.GrowthFactor)
	case !(cfg.BackoffFactor > 0 && cfg.BackoffFactor < 1):
		return nil, fmt.Errorf("grad scaler: backoff factor must be in (0, 1), got %g", cfg.BackoffFactor)
	case cfg.GrowthInterval < 1:
		return nil, fmt.Errorf("grad scaler: growth interval must be at least 1, got %d", cfg.GrowthInterval)
	}
	return &GradScaler{cfg: cfg, scale: cfg.InitScale}, nil
}

// ScaleValue is the current loss scale.
func (g *GradScaler) ScaleValue() float64 { return g.scale }

// Scale is loss multiplied by the current scale, in s.
func (g *GradScaler) Scale(s *Scope, loss *Tensor) *Tensor { return s.MulScalar(loss, g.scale) }

// Unscale divides the gradients of params by the scale in place and records whether any is
// non-finite, in one C call. Call it before clipping gradients; Step calls it when it was not.
func (g *GradScaler) Unscale(params []*Tensor) (foundInf bool, err error) {
	if g.unscaled {
		return false, fmt.Errorf("grad scaler: Unscale called twice before Update")
	}
	hs := make([]C.hdge_tensor, len(params))
	for i, p := range params {
		if !p.live() {
			return false, errFreed("Unscale")
		}
		hs[i] = p.h
	}
	var found C.int
	if len(hs) > 0 {
		if e := C.hdge_unscale_grads(&hs[0], C.int(len(hs)), C.double(1/g.scale), &found); e != nil {
			return false, takeError("Unscale", e)
		}
	}
	g.unscaled, g.foundInf = true, found != 0
	return g.foundInf, nil
}

// Step unscales (unless Unscale already ran) and runs opt.Step unless a gradient is inf or NaN;
// stepped says whether it ran. Call Update after it.
func (g *GradScaler) Step(opt interface{ Step() error }, params []*Tensor) (stepped bool, err error) {
	if !g.unscaled {
		if _, err := g.Unscale(params); err != nil {
			return false, err
		}
	}
	if g.foundInf {
		return false, nil
	}
	if err := opt.Step(); err != nil {
		return false, err
	}
	return true, nil
}

// Update adjusts the scale after a step: halved (times BackoffFactor) after one with non-finite
// gradients, which resets the run of good steps; doubled (times GrowthFactor) when the run reaches
// GrowthInterval.
func (g *GradScaler) Update() {
	if g.foundInf {
		g.scale *= g.cfg.BackoffFactor
		g.tracker = 0
	} else {
		g.tracker++
		if g.tracker == g.cfg.GrowthInterval {
			g.scale *= g.cfg.GrowthFactor
			g.tracker = 0
		}
	}
	g.unscaled, g.foundInf = false, false
}

// State is the scaler's state for a checkpoint.
func (g *GradScaler) State() GradScalerState {
	return GradScalerState{Scale: g.scale, GrowthTracker: g.tracker}
}

// LoadState restores State's result.
func (g *GradScaler) LoadState(st GradScalerState) error {
	if !(st.Scale > 0) || math.IsInf(st.Scale, 0) {
		return fmt.Errorf("grad scaler state: scale must be positive and finite, got %g", st.Scale)
	}
	if st.GrowthTracker < 0 || st.GrowthTracker >= g.cfg.GrowthInterval {
		return fmt.Errorf("grad scaler state: growth tracker %d outside [0, %d)", st.GrowthTracker, g.cfg.GrowthInterval)
	}
	g.scale, g.tracker = st.Scale, st.GrowthTracker
	g.unscaled, g.foundInf = false, false
	return nil
}
