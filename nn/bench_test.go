package nn

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/torch"
)

// BenchmarkPrecisionStep times a WideResNet training step (forward, cross-entropy, backward,
// Adam), channels-last, batch 64, in float32 and under BF16 mixed precision, alternating the two
// each iteration so that machine load hits both alike; it reports both rates and their ratio.
// HDGE_BENCH_THREADS sets libtorch's threads (default 1). The same step in PyTorch, float32 and
// under torch.autocast bf16: testdata/bench_precision.py.
//
//	go test -run '^$' -bench PrecisionStep -benchtime 5x ./nn/
func BenchmarkPrecisionStep(b *testing.B) {
	threads := 1
	if v := os.Getenv("HDGE_BENCH_THREADS"); v != "" {
		var err error
		if threads, err = strconv.Atoi(v); err != nil || threads < 1 {
			b.Fatalf("HDGE_BENCH_THREADS=%q: want a positive integer", v)
		}
	}
	torch.SetNumThreads(threads)
	cpu, _ := torch.HostCPU()
	b.Logf("CPU %q: amx_bf16 %v, avx512_bf16 %v; %d thread(s)", cpu.Model, cpu.AMXBF16, cpu.AVX512BF16, threads)
	for _, c := range []struct {
		name         string
		depth, width int
		channels     int
		side         int64
	}{
		{"wrn-10-2-1x28x28", 10, 2, 1, 28},
		{"wrn-16-4-3x32x32", 16, 4, 3, 32},
	} {
		b.Run(c.name, func(b *testing.B) {
			store := torch.NewScope()
			defer store.Close()
			gen, err := torch.NewGenerator(1, torch.CPU)
			if err != nil {
				b.Fatal(err)
			}
			defer gen.Close()
			norm := "none"
			if c.depth == 10 {
				norm = "batch" // the Fashion-MNIST CPU default
			}
			m, err := NewWideResNet(Init{Store: store, Gen: gen, Dev: torch.CPU}, WRNConfig{Depth: c.depth, Width: c.width,
				Classes: 10, InChannels: c.channels, Norm: norm, ChannelsLast: true})
			if err != nil {
				b.Fatal(err)
			}
			opt := torch.NewAdam(m.Parameters(), torch.DefaultAdamConfig(1e-4))
			defer opt.Close()
			const batch = 64
			x := store.Randn(gen, []int64{batch, int64(c.channels), c.side, c.side}, torch.Float32, torch.CPU)
			y := store.RandInt(gen, 0, 10, []int64{batch}, torch.CPU)
			step := func(p torch.Precision) time.Duration {
				t0 := time.Now()
				s := torch.NewScope()
				s.SetPrecision(p)
				s.Backward(s.CrossEntropy(m.Forward(s, x, true), y, 0, torch.Mean))
				if err := s.Err(); err != nil {
					b.Fatal(err)
				}
				if err := opt.Step(); err != nil {
					b.Fatal(err)
				}
				torch.ZeroGrad(m.Parameters())
				s.Close()
				return time.Since(t0)
			}
			step(torch.FP32) // warm-up: oneDNN's primitive caches for both types
			step(torch.BF16)
			var t32, t16 []float64
			i := 0
			for b.Loop() {
				// The order flips every iteration: neither type always runs on a just-warmed cache.
				if i%2 == 0 {
					t32 = append(t32, step(torch.FP32).Seconds())
					t16 = append(t16, step(torch.BF16).Seconds())
				} else {
					t16 = append(t16, step(torch.BF16).Seconds())
					t32 = append(t32, step(torch.FP32).Seconds())
				}
				i++
			}
			m32, m16 := median(t32), median(t16)
			b.ReportMetric(batch/m32, "fp32_img/s")
			b.ReportMetric(batch/m16, "bf16_img/s")
			b.ReportMetric(m32/m16, "bf16/fp32")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
