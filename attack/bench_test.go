package attack

import (
	"context"
	"testing"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

// BenchmarkPGD measures attack throughput, in image-steps per second, of a WideResNet-10-2 (the CPU
// default model) on 28×28 grey images, for both norms.
func BenchmarkPGD(b *testing.B) {
	gen, err := torch.NewGenerator(1, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	defer gen.Close()
	store := torch.NewScope()
	defer store.Close()
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU}, nn.WRNConfig{Depth: 10, Width: 2, Classes: 10, InChannels: 1})
	if err != nil {
		b.Fatal(err)
	}
	d := data.UniformNoise(100, 1, 28, 28, 1)
	for _, norm := range Norms {
		b.Run(norm, func(b *testing.B) {
			c := Config{Norm: norm, Eps: 0.03, Steps: 5, RandomStart: true}
			for b.Loop() {
				if _, err := Run(context.Background(), m, d, c, Options{BatchSize: 100}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(d.N*c.Steps*b.N)/b.Elapsed().Seconds(), "img-steps/s")
		})
	}
}
