package trainer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// benchThreads is libtorch's intra-op thread count for these benchmarks: HDGE_BENCH_THREADS, or
// every core.
func benchThreads(b *testing.B) {
	n := runtime.NumCPU()
	if v := os.Getenv("HDGE_BENCH_THREADS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("HDGE_BENCH_THREADS=%q: want a positive integer", v)
		}
	}
	torch.SetNumThreads(n)
}

// stepBench is the training loop's state for one objective, driving the loop's own trainStep on a
// fixed random batch of Fashion-MNIST shape (1×28×28) with the CPU default model and batch.
type stepBench struct {
	st     *runState
	params []*torch.Tensor
	batch  data.Batch
	shape  *data.Dataset
}

func newStepBench(b *testing.B, objective string, classes int) *stepBench {
	b.Helper()
	cfg := Defaults()
	cfg.Objective = objective
	return newStepBenchFor(b, cfg, classes, 1, 28)
}

// newStepBenchFor is newStepBench for any config and c×side×side inputs.
func newStepBenchFor(b *testing.B, cfg Config, classes, c, side int) *stepBench {
	b.Helper()
	m, err := model.Build(cfg.modelSettings(), c, classes, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	st := &runState{cfg: cfg, dev: m.Dev, model: m, shape: [3]int{c, side, side}}
	st.opt = NewOptimizer(cfg, m.Parameters())
	b.Cleanup(st.opt.Close)
	gen, err := torch.NewGenerator(2, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(gen.Close)
	st.gens = map[string]*torch.Generator{"objective": gen}
	if st.obj, err = NewObjective(Env{Config: cfg, Classes: classes, Shape: st.shape, Model: m, Gen: gen, Dev: m.Dev}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.obj.Close)
	r := rand.New(rand.NewPCG(3, 4))
	bt := data.Batch{X: make([]float32, cfg.BatchSize*c*side*side), Y: make([]int64, cfg.BatchSize)}
	for i := range bt.X {
		bt.X[i] = float32(r.NormFloat64())
	}
	for i := range bt.Y {
		bt.Y[i] = int64(r.IntN(classes))
	}
	return &stepBench{st: st, params: m.Parameters(), batch: bt,
		shape: &data.Dataset{Name: "random", C: c, H: side, W: side}}
}

func (sb *stepBench) step(b *testing.B) {
	st := sb.st
	if _, err := TrainStep(StepInput{Model: st.model, Opt: st.opt, Params: sb.params, Obj: st.obj, Gen: st.gens["objective"], Shape: st.shape}, sb.batch); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTrainStep times one step of the training loop (forward, loss, backward, Adam, queue
// update) with the CPU default model (wrn-10-2) and batch (64); HDGE uses K = 65536. C100 is the
// same model with a 100-class head.
func BenchmarkTrainStep(b *testing.B) {
	benchThreads(b)
	for _, objective := range []string{"ce", "hdge"} {
		for _, classes := range []int{10, 100} {
			b.Run(fmt.Sprintf("%s/C%d", objective, classes), func(b *testing.B) {
				sb := newStepBench(b, objective, classes)
				sb.step(b) // warm-up: first-use allocations and kernel selection
				for b.Loop() {
					sb.step(b)
				}
				b.ReportMetric(float64(b.N*len(sb.batch.Y))/b.Elapsed().Seconds(), "img/s")
			})
		}
	}
}

// BenchmarkHDGEOverCE alternates CE and HDGE steps of the same model and batch (order flipped
// every pair, so that machine load hits both alike) and reports the median step times and the
// median over pairs of the HDGE/CE ratio, in which load drifts cancel; the target is at most 1.05
// with K = 65536.
func BenchmarkHDGEOverCE(b *testing.B) {
	benchThreads(b)
	for _, classes := range []int{10, 100} {
		b.Run(fmt.Sprintf("C%d", classes), func(b *testing.B) {
			ts := alternate(b, newStepBench(b, "ce", classes), newStepBench(b, "hdge", classes))
			ceT, hdgeT := ts[0], ts[1]
			b.ReportMetric(medianOf(ceT)*1e3, "ce-ms/step")
			b.ReportMetric(medianOf(hdgeT)*1e3, "hdge-ms/step")
			b.ReportMetric(medianRatio(hdgeT, ceT), "hdge/ce")
		})
	}
}

// alternate warms each step up once, then times one step of each per round in an order rotated
// every round (for two: flipped every pair), so that machine load hits all alike; ts[i] are step
// i's times, one per round.
func alternate(b *testing.B, sbs ...*stepBench) [][]float64 {
	for _, sb := range sbs {
		sb.step(b)
	}
	ts := make([][]float64, len(sbs))
	round := 0
	for b.Loop() {
		for j := range sbs {
			k := (round + j) % len(sbs)
			t0 := time.Now()
			sbs[k].step(b)
			ts[k] = append(ts[k], time.Since(t0).Seconds())
		}
		round++
	}
	return ts
}

// medianRatio is the median over rounds of a[i]/z[i], in which load drifts cancel.
func medianRatio(a, z []float64) float64 {
	r := make([]float64, len(a))
	for i := range r {
		r[i] = a[i] / z[i]
	}
	return medianOf(r)
}

// BenchmarkLayout alternates CE training steps of one model laid out channels-last (NHWC) and
// row-major (NCHW), same seed and batch, and reports the median step times and the median over
// pairs of the NCHW/NHWC ratio (> 1: channels-last is faster). Its figures are the evidence
// behind --channels-last auto (model.AutoChannelsLast).
func BenchmarkLayout(b *testing.B) {
	benchThreads(b)
	for _, m := range []struct {
		model, norm string
		c, side     int
	}{{"wrn-10-2", "batch", 1, 28}, {"wrn-10-2", "none", 1, 28}, {"wrn-16-4", "none", 3, 32}} {
		b.Run(fmt.Sprintf("%s-%s-%dx%d", m.model, m.norm, m.side, m.side), func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var sbs [2]*stepBench
			for i, layout := range []model.Layout{model.LayoutNCHW, model.LayoutChannelsLast} {
				cfg := Defaults()
				cfg.Objective, cfg.Model, cfg.Norm, cfg.ChannelsLast = "ce", m.model, m.norm, layout
				sbs[i] = newStepBenchFor(b, cfg, 10, m.c, m.side)
			}
			ts := alternate(b, sbs[:]...)
			b.ReportMetric(medianOf(ts[0])*1e3, "nchw-ms/step")
			b.ReportMetric(medianOf(ts[1])*1e3, "nhwc-ms/step")
			b.ReportMetric(medianRatio(ts[0], ts[1]), "nchw/nhwc")
		})
	}
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
