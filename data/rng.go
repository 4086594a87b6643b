package data

import "math/rand/v2"

// splitmix64 is a bijective mixer; chaining it over the inputs gives seeds that differ in every
// bit when any input changes, which is what per-(epoch, batch) streams need.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func mixKeys(keys ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc908)
	for _, k := range keys {
		h = splitmix64(h ^ k)
	}
	return h
}

// Stream tags keep the random numbers for different purposes independent even when the numeric
// keys coincide (epoch 3's permutation vs batch 3's augmentation).
const (
	streamPerm uint64 = iota + 1
	streamAugment
	streamSplit
	streamSubset
	streamInterp
	streamUniform
	streamGauss
)

// newRand returns a generator that depends only on its keys, never on shared state, so any
// goroutine can recreate the exact stream for a given (seed, purpose, position).
func newRand(keys ...uint64) *rand.Rand {
	h := mixKeys(keys...)
	return rand.New(rand.NewPCG(h, splitmix64(h)))
}

// permutation returns a uniformly random permutation of 0..n-1 (Fisher-Yates).
func permutation(r *rand.Rand, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
