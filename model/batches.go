package model

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
)

// each runs fn over d in eval mode without autograd, batch by batch in dataset order, with the
// test-time noise (if any) drawn deterministically from seed; fn's result is copied to the host.
func (m *Model) each(d *data.Dataset, noise float64, batch int, seed uint64,
	fn func(s *torch.Scope, x *torch.Tensor) *torch.Tensor) ([]float32, error) {
	loader := data.NewLoader(d, data.LoaderConfig{BatchSize: batch, Workers: max(1, min(2, runtime.NumCPU())), Prefetch: 2,
		Epochs: 1, Seed: seed, Augment: data.Augment{Noise: noise}})
	if err := loader.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out []float32
	for b := range loader.Start(ctx, data.Position{}) {
		s := torch.NewScope()
		s.SetGradEnabled(false)
		s.SetPrecision(m.Precision)
		n := int64(len(b.Y))
		x := s.FromFloat32(b.X, n, int64(d.C), int64(d.H), int64(d.W))
		if m.Dev != torch.CPU {
			x = s.To(x, m.Dev)
		}
		r := fn(s, x)
		if err := s.Err(); err != nil {
			s.Close()
			return nil, err
		}
		v, err := r.Float32s()
		s.Close()
		loader.Recycle(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

// Logits runs the model over a dataset in eval mode and returns N×C logits, in dataset order.
// The noise (if any) is drawn deterministically from seed.
func (m *Model) Logits(d *data.Dataset, noise float64, batch int, seed uint64) ([]float32, error) {
	out, err := m.each(d, noise, batch, seed, func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return m.Forward(s, x, false)
	})
	if err != nil {
		return nil, err
	}
	if len(out) != d.N*m.Classes() {
		return nil, fmt.Errorf("model produced %d logits for %d images of %s", len(out), d.N, d.Name)
	}
	return out, nil
}

// FeaturesOf runs the model over a dataset in eval mode and returns the N×FeatureDim() features
// before the classifier head, in dataset order.
func (m *Model) FeaturesOf(d *data.Dataset, noise float64, batch int, seed uint64) ([]float32, error) {
	out, err := m.each(d, noise, batch, seed, func(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return m.Features(s, x, false)
	})
	if err != nil {
		return nil, err
	}
	if len(out) != d.N*m.FeatureDim() {
		return nil, fmt.Errorf("model produced %d features for %d images of %s", len(out), d.N, d.Name)
	}
	return out, nil
}

// Evaluate returns accuracy and mean cross-entropy of the model on d (eval mode, no grad), with
// test-time noise sigma as JEM applies it.
func (m *Model) Evaluate(d *data.Dataset, noise float64, batch int) (acc, loss float64, err error) {
	logits, err := m.Logits(d, noise, batch, 0)
	if err != nil {
		return 0, 0, err
	}
	c := len(logits) / d.N
	correct := 0
	var nll float64
	for i := 0; i < d.N; i++ {
		row := logits[i*c : (i+1)*c]
		best, mx := 0, row[0]
		for j, v := range row {
			if v > mx {
				best, mx = j, v
			}
		}
		if int64(best) == d.Labels[i] {
			correct++
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		nll += float64(mx) + math.Log(z) - float64(row[d.Labels[i]])
	}
	return float64(correct) / float64(d.N), nll / float64(d.N), nil
}
