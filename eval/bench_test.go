package eval

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkOOD measures the four OOD metrics on a CIFAR-10-test-sized pair of sets.
func BenchmarkOOD(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	in := make([]float64, 10000)
	out := make([]float64, 26032) // SVHN test
	for i := range in {
		in[i] = rng.NormFloat64() + 1
	}
	for i := range out {
		out[i] = rng.NormFloat64()
	}
	for b.Loop() {
		if _, err := OOD(in, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*(len(in)+len(out)))/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkCalibrate measures ECE, Brier and NLL over CIFAR-100-test-sized logits.
func BenchmarkCalibrate(b *testing.B) {
	l, y := synthLogits(rand.New(rand.NewPCG(11, 12)), 10000, 100, 3, 2)
	for b.Loop() {
		if _, err := Calibrate(l, y, DefaultCalibrationBins); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*l.N)/b.Elapsed().Seconds(), "samples/s")
}
