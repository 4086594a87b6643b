// Package model builds a classifier from its settings, reads and writes hdge-torch checkpoints,
// and runs a model over a dataset in batches (logits, features). It is what trainer, eval,
// experiment and bench share, so that nothing outside the trainer needs the trainer. Model
// families (WideResNet today) plug in through the Net interface and the Families table.
package model
