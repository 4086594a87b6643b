// Package gen draws images from a trained classifier's energy (JEM's log q(x) or log q(x, y)) by
// SGLD, from the checkpoint's replay buffer or fresh noise, writes them as PNG grids and .npy
// files with a per-class top-confidence selection, and scores them by the Inception Score and
// the Fréchet distance in a named feature network. It is what `hdge-torch sample` runs.
package gen
