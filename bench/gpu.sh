#!/bin/sh
# The GPU comparison of `make bench`: wrn-28-10 with CUDA tensors on both sides, on a machine with a
# CUDA build of libtorch and a CUDA PyTorch. Run from the repository root:
#
#   LIBTORCH=/path/to/libtorch PYTHON=python3 bench/gpu.sh [more hdgebench flags]
#
# LIBTORCH (optional) rebuilds the shim against that libtorch (a PyTorch install's torch/ folder
# works: the Python side then runs the very same library). Without a Go toolchain on the GPU
# machine, build bin/hdgebench elsewhere first; it finds the shim through LD_LIBRARY_PATH=build.
# Fashion-MNIST and the shared CIFAR-10/MNIST copies are found through FASHION_DIR and
# HDGE_SHARED_DATA. Results: bench/results-gpu.md and bench/results-gpu.json.
set -eu
cd "$(dirname "$0")/.."
if [ -n "${LIBTORCH:-}" ]; then
	make -j"$(nproc)" shim LIBTORCH="$LIBTORCH"
fi
if command -v go >/dev/null 2>&1; then
	go build -o bin/hdgebench ./bench/cmd/hdgebench
fi
export LD_LIBRARY_PATH="$PWD/build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec bin/hdgebench --device cuda --cifar-model wrn-28-10 --fashion-model wrn-28-10 --fashion-norm none --cifar-norm none --reps 5 \
	--python "${PYTHON:-python3}" --fashion-dir "${FASHION_DIR:-/usr/share/datasets/fashion-mnist}" \
	--out bench/results-gpu.md --json bench/results-gpu.json --work bench/out/gpu "$@"
