// Package compare puts several evaluations side by side in one self-contained HTML page: a
// summary table, reliability diagrams, overlaid ROC, robustness and training curves, and score
// histograms. It reads only what eval writes (metrics.json, the logits folder, the run's
// metrics.jsonl) and, for an experiment's folder, draws mean ± std across seeds per run.
package compare
