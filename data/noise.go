package data

import "math/rand/v2"

// addNoise adds N(0, σ²) to every value. NormFloat64 is math/rand's ziggurat, exact and a few
// nanoseconds per draw, which keeps CIFAR batches well above the model's appetite.
func addNoise(r *rand.Rand, x []float32, sigma float64) {
	for i := range x {
		x[i] += float32(sigma * r.NormFloat64())
	}
}
