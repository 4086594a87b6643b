package torch

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// benchThreads is the intra-op thread count for benchmarks, from HDGE_BENCH_THREADS (default 1,
// libtorch's default on the development machine); the Python side gets the same.
func benchThreads(b *testing.B) int {
	n := 1
	if v := os.Getenv("HDGE_BENCH_THREADS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("HDGE_BENCH_THREADS=%q: want a positive integer", v)
		}
	}
	SetNumThreads(n)
	return n
}

// BenchmarkTinyOp measures the cost of one op round trip through cgo on a 1-element tensor.
func BenchmarkTinyOp(b *testing.B) {
	benchThreads(b)
	b.Run("op+free", func(b *testing.B) {
		s := NewScope()
		defer s.Close()
		x := s.Ones([]int64{1}, Float32, CPU)
		for b.Loop() {
			s.AddScalar(x, 1).Free()
		}
		if s.Err() != nil {
			b.Fatal(s.Err())
		}
	})
	// The usual pattern: ops accumulate in a step scope that is closed at the end of the step.
	b.Run("op,scope-per-256", func(b *testing.B) {
		x := NewScope()
		defer x.Close()
		one := x.Ones([]int64{1}, Float32, CPU)
		s := NewScope()
		n := 0
		for b.Loop() {
			s.AddScalar(one, 1)
			if n++; n == 256 {
				s.Close()
				s, n = NewScope(), 0
			}
		}
		s.Close()
	})
	b.Run("metadata", func(b *testing.B) {
		s := NewScope()
		defer s.Close()
		x := s.Ones([]int64{1}, Float32, CPU)
		for b.Loop() {
			_ = x.Size(0)
		}
	})
}

// convParams is the benchmark network's parameters, shaped as bench_conv.py's.
func convParams(b *testing.B, s *Scope) []*Tensor {
	g, err := NewGenerator(0, CPU)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	shapes := [][]int64{{16, 3, 3, 3}, {16}, {32, 16, 3, 3}, {32}, {64, 32, 3, 3}, {64}, {10, 64}, {10}}
	ps := make([]*Tensor, len(shapes))
	for i, sh := range shapes {
		ps[i] = s.MulScalar(s.Randn(g, sh, Float32, CPU), 0.1)
		if err := ps[i].SetRequiresGrad(true); err != nil {
			b.Fatal(err)
		}
	}
	return ps
}

// BenchmarkConvStep times a conv-heavy forward+backward step and the same step in PyTorch
// (testdata/bench_conv.py, same thread count), reporting the ratio of the medians.
func BenchmarkConvStep(b *testing.B) {
	threads := benchThreads(b)
	store := NewScope()
	defer store.Close()
	ps := convParams(b, store)
	x := store.Randn(nil, []int64{64, 3, 32, 32}, Float32, CPU)
	y := store.RandInt(nil, 0, 10, []int64{64}, CPU)
	step := func() {
		s := NewScope()
		ZeroGrad(ps)
		h := s.MaxPool2d(s.ReLU(s.Conv2d(x, ps[0], ps[1], 1, 1)), 2, 2, 0)
		h = s.MaxPool2d(s.ReLU(s.Conv2d(h, ps[2], ps[3], 1, 1)), 2, 2, 0)
		h = s.ReLU(s.Conv2d(h, ps[4], ps[5], 1, 1))
		h = s.Flatten(s.AdaptiveAvgPool2d(h, 1, 1), 1, -1)
		s.Backward(s.CrossEntropy(s.Linear(h, ps[6], ps[7]), y, 0, Mean))
		if err := s.Err(); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	for range 3 {
		step()
	}
	var times []time.Duration
	for b.Loop() {
		t0 := time.Now()
		step()
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	goMedian := times[len(times)/2].Seconds()
	b.ReportMetric(goMedian*1e3, "go-ms/step")

	ratio, pyMedian, err := interleavedRatio(threads, step)
	if err != nil {
		b.Logf("Python side skipped: %v", err)
		return
	}
	b.ReportMetric(pyMedian*1e3, "py-ms/step")
	b.ReportMetric(ratio, "go/py")
}

// interleavedRatio alternates rounds of Go steps and Python steps (a long-running bench_conv.py
// serving requests), so that load from other processes hits both alike, and returns the ratio
// of the two medians and Python's median in seconds.
func interleavedRatio(threads int, step func()) (ratio, pyMedian float64, err error) {
	cmd := exec.Command(python, filepath.Join("testdata", "bench_conv.py"), strconv.Itoa(threads), "serve")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	dec := json.NewDecoder(stdout)
	var hello struct {
		Ready   bool `json:"ready"`
		Threads int  `json:"threads"`
	}
	if err := dec.Decode(&hello); err != nil || !hello.Ready || hello.Threads != threads {
		return 0, 0, fmt.Errorf("bench_conv.py did not start with %d threads: %+v %v", threads, hello, err)
	}
	const rounds, perRound = 10, 3
	var goTimes, pyTimes []float64
	for range rounds {
		for range perRound {
			t0 := time.Now()
			step()
			goTimes = append(goTimes, time.Since(t0).Seconds())
		}
		if _, err := fmt.Fprintln(stdin, perRound); err != nil {
			return 0, 0, err
		}
		var ts []float64
		if err := dec.Decode(&ts); err != nil {
			return 0, 0, err
		}
		pyTimes = append(pyTimes, ts...)
	}
	slices.Sort(goTimes)
	slices.Sort(pyTimes)
	goMed, pyMed := goTimes[len(goTimes)/2], pyTimes[len(pyTimes)/2]
	return goMed / pyMed, pyMed, nil
}

// BenchmarkConvPeak is the convolution rate the FLOP-rate table's bf16 rows compare against: a
// 64×256×16×16 batch through a 3×3 convolution to 256 channels (the table's float32 reference),
// forward only, channels-last, in float32 and under a BF16 scope (input and weight converted as a
// training step converts them; the weight copy is cached, the input's conversion is timed). It
// reports GFLOP/s for each and their ratio.
//
//	go test -run '^$' -bench ConvPeak -benchtime 5x ./torch/
func BenchmarkConvPeak(b *testing.B) {
	benchThreads(b)
	store := NewScope()
	defer store.Close()
	x := store.ChannelsLast(store.Randn(nil, []int64{64, 256, 16, 16}, Float32, CPU))
	w := store.Randn(nil, []int64{256, 256, 3, 3}, Float32, CPU)
	if err := w.MakeChannelsLast(); err != nil {
		b.Fatal(err)
	}
	flops := 2.0 * 64 * 256 * 256 * 9 * 16 * 16
	s32, s16 := NewScope(), NewScope()
	defer s32.Close()
	defer s16.Close()
	s32.SetGradEnabled(false)
	s16.SetGradEnabled(false)
	s16.SetPrecision(BF16)
	conv := func(s *Scope) float64 {
		t0 := time.Now()
		s.Conv2d(x, w, nil, 1, 1).Free()
		if s.Err() != nil {
			b.Fatal(s.Err())
		}
		return time.Since(t0).Seconds()
	}
	conv(s32)
	conv(s16)
	var t32, t16 []float64
	for b.Loop() {
		t32 = append(t32, conv(s32))
		t16 = append(t16, conv(s16))
	}
	slices.Sort(t32)
	slices.Sort(t16)
	m32, m16 := t32[len(t32)/2], t16[len(t16)/2]
	b.ReportMetric(flops/m32/1e9, "fp32_GFLOP/s")
	b.ReportMetric(flops/m16/1e9, "bf16_GFLOP/s")
	b.ReportMetric(m32/m16, "bf16/fp32")
	b.ReportMetric(0, "ns/op")
}
