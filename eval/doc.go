// Package eval turns a classifier's exported logits into the numbers and pictures the HDGE paper
// reports: accuracy and NLL, out-of-distribution detection (AUROC, AUPR, FPR at 95% TPR, matching
// scikit-learn including ties), calibration (ECE, reliability diagrams), robustness curves and
// training curves, sample quality (Inception Score and Fréchet distance over exported
// probabilities and features), gathered into a metrics.json and a self-contained report.html.
// It is pure Go so it tests without libtorch; attacks that need gradients live elsewhere.
package eval
