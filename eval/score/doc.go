// Package score applies a trained model to a user's images: for each image its predicted class,
// max softmax probability, log q(x), a chosen OOD score and an in/out-of-distribution decision
// from a threshold set for a target true-positive rate on the run's held-out validation images.
package score
