// Package trainer runs training: the objectives (cross-entropy, HDGE with a queue of past logits,
// its in-batch variant), the queue itself, learning-rate schedules, the loop with validation and
// logging, and checkpoints that resume a run exactly.
package trainer
