package dist_test

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/dist"
)

// fakeGrads makes tensors of the shapes of a WideResNet's parameters: what the training loop
// all-reduces after every backward pass.
func fakeGrads(s *torch.Scope, model string) ([]*torch.Tensor, int64, error) {
	depth, width, err := nn.ParseModel(model)
	if err != nil {
		return nil, 0, err
	}
	gen, err := torch.NewGenerator(1, torch.CPU)
	if err != nil {
		return nil, 0, err
	}
	defer gen.Close()
	store := torch.NewScope()
	defer store.Close()
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU},
		nn.WRNConfig{Depth: depth, Width: width, Classes: 10, InChannels: 3})
	if err != nil {
		return nil, 0, err
	}
	var gs []*torch.Tensor
	var bytes int64
	for _, p := range m.Parameters() {
		gs = append(gs, s.RandnLike(gen, p))
		bytes += 4 * p.Numel()
	}
	return gs, bytes, s.Err()
}

// benchLoop is both ranks' side of the benchmark: warm-up, then n all-reduces.
func benchLoop(g *dist.Group, model string, n int, timer func(bool)) (int64, error) {
	s := torch.NewScope()
	defer s.Close()
	gs, bytes, err := fakeGrads(s, model)
	if err != nil {
		return 0, err
	}
	for i := 0; i < 3; i++ {
		if err := g.AllReduce(gs, dist.Mean); err != nil {
			return 0, err
		}
	}
	timer(true)
	for i := 0; i < n; i++ {
		if err := g.AllReduce(gs, dist.Mean); err != nil {
			return 0, err
		}
	}
	timer(false)
	return bytes, nil
}

func benchWorker(g *dist.Group) error {
	n, _ := strconv.Atoi(os.Getenv("BENCH_N"))
	_, err := benchLoop(g, os.Getenv("BENCH_MODEL"), n, func(bool) {})
	return err
}

// BenchmarkAllReduceWRN is the gradient all-reduce of one training step across 2 processes over
// Gloo on 127.0.0.1, one libtorch thread each: this process is rank 0, a copy of the test binary
// rank 1. ms/step is the time the loop adds to a step on top of backward.
func BenchmarkAllReduceWRN(b *testing.B) {
	for _, model := range []string{"wrn-10-2", "wrn-16-4"} {
		b.Run(model, func(b *testing.B) {
			torch.SetNumThreads(1)
			port := freePortB(b)
			w := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
			w.Env = append(os.Environ(), "HDGE_DIST_TEST_ROLE=bench", "MASTER_PORT="+strconv.Itoa(port), "RANK=1",
				"WORLD_SIZE=2", "OMP_NUM_THREADS=1", "BENCH_MODEL="+model, "BENCH_N="+strconv.Itoa(b.N))
			w.Stderr = os.Stderr
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = w.Wait() }()
			g, err := dist.New(dist.Config{MasterAddr: "127.0.0.1", MasterPort: port, Rank: 0, WorldSize: 2,
				ConnectTimeout: 30 * time.Second})
			if err != nil {
				_ = w.Process.Kill()
				b.Fatal(err)
			}
			defer g.Close()
			var start time.Time
			var took time.Duration
			bytes, err := benchLoop(g, model, b.N, func(on bool) {
				if on {
					b.ResetTimer()
					start = time.Now()
				} else {
					b.StopTimer()
					took = time.Since(start)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			ms := took.Seconds() * 1e3 / float64(b.N)
			b.ReportMetric(ms, "ms/step")
			b.ReportMetric(float64(bytes)/1e6, "MB/step")
			b.ReportMetric(float64(bytes)/1e6/(ms/1e3), "MB/s")
			b.ReportMetric(float64(g.Stats().LastBuckets), "buckets")
		})
	}
}

func freePortB(b *testing.B) int {
	p, err := freePortErr()
	if err != nil {
		b.Fatal(err)
	}
	return p
}
