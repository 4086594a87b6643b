// Package npy writes and reads NumPy .npy files (format 1.0, C order, little-endian) so that
// exported logits, scores and labels open directly with numpy.load, and arrays saved by NumPy
// load here. It is pure Go.
package npy
