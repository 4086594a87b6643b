// Package ptfile reads and writes PyTorch's torch.save zip format (PyTorch 1.6 and later) in pure
// Go, so that checkpoints written here open with torch.load and state dicts saved by Python load
// here. Tensors travel as plain little-endian bytes with a dtype and shape; dicts keep their order.
package ptfile
