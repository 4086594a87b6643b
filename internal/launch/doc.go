// Package launch starts and supervises the worker processes of a data-parallel run on one machine,
// and reads the environment contract (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK) that
// it and torchrun give each worker. Pure Go: it knows nothing of libtorch.
package launch
