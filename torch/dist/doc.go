// Package dist is data-parallel communication over libtorch's c10d: a TCPStore rendezvous, a Gloo
// (CPU) or NCCL (CUDA) process group, and the collectives a DDP-style training loop needs, over
// many tensors at once in buckets. A peer that dies surfaces as a *LostRankError naming it, within
// a bounded time, instead of a hang.
package dist
