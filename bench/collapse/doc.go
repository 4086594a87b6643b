// Command collapse trains hdge-torch's HDGE and the PyTorch reference of the released training
// loop side by side, from the same initial weights, queue and batches, to show where (and whether)
// their loss, accuracy and logit-norm trajectories part in the paper's regime (no batch norm,
// Adam 1e-4 with warm-up, σ 0.03, batch 64). `make collapse` runs it; README.md beside this file
// says what it writes.
package main
