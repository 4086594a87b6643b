// Package bench measures hdge-torch against a PyTorch reference of the released HDGE code run on
// the same libtorch: training, the contrastive term, the data pipeline, evaluation, memory and
// FLOP rate, each side in its own child processes, alternating, with medians (`make bench`).
package bench
