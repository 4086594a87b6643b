// Package suite runs a whole evaluation of a trained checkpoint: it exports the model's logits on
// the in-distribution test set, the OOD sets and the PGD-attacked images as .npy files, then scores
// classification, calibration, OOD detection and robustness from those files alone into
// metrics.json, PNG plots and report.html. The scoring half re-runs from an exported folder
// without the model.
package suite
