package nn

import (
	"math"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// TestBNMomentum: from zero running statistics, one training forward moves the running mean
// momentum·μ toward the batch mean μ, so a model built with the released code's 0.9 holds nine
// times the running mean of one built with PyTorch's default 0.1 (same seed, same input).
func TestBNMomentum(t *testing.T) {
	runningMean := func(momentum float64) []float32 {
		store := torch.NewScope()
		defer store.Close()
		gen, err := torch.NewGenerator(4, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer gen.Close()
		m, err := NewWideResNet(Init{Store: store, Gen: gen, Dev: torch.CPU},
			WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 1, Norm: "batch", BNMomentum: momentum})
		if err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		defer s.Close()
		m.Forward(s, s.Randn(gen, []int64{4, 1, 8, 8}, torch.Float32, torch.CPU), true)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		for _, p := range m.StateDict() {
			if p.Name == "layer1.0.bn1.running_mean" {
				v, err := p.T.Float32s()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatal("no layer1.0.bn1.running_mean in the state dict")
		return nil
	}
	def, released := runningMean(0), runningMean(0.9)
	var moved bool
	for i := range def {
		if math.Abs(float64(released[i])-9*float64(def[i])) > 1e-5+1e-4*math.Abs(float64(released[i])) {
			t.Fatalf("channel %d: running mean %g with momentum 0.9, %g with the default 0.1 (want 9×)", i, released[i], def[i])
		}
		moved = moved || def[i] != 0
	}
	if !moved {
		t.Fatal("the running mean did not move")
	}
}
