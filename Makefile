# hdge-torch build. `make test` and `make run` install what a fresh Debian bookworm machine lacks.
SHELL := /bin/bash
GO ?= go
# Point LIBTORCH at another libtorch (a CUDA build, or a PyTorch install's torch/ folder) to build the
# shim against it; or set TORCH_INCLUDE and TORCH_LIB separately.
LIBTORCH ?= /usr
TORCH_INCLUDE ?= $(LIBTORCH)/include
TORCH_LIB ?= $(if $(filter /usr,$(LIBTORCH)),/usr/lib/x86_64-linux-gnu,$(LIBTORCH)/lib)
BUILD := build
SHIM := $(BUILD)/libhdgetorch.so

.PHONY: all deps shim build test run bench bench-quick clean test-torch

all: build

# Debian packages the project needs; installed only when missing.
APT_PKGS := libtorch-dev libopenblas0-pthread python3-torch python3-torchvision python3-numpy python3-scipy python3-sklearn python3-matplotlib dataset-fashion-mnist chromium libgloo-dev
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; fi
	$(GO) mod download

# The C++ shim over libtorch (cgo/*.cpp -> $(SHIM)). One object per source file so `make -j2` compiles
# them in parallel; Go packages link against the .so and never include torch headers.
SHIM_SRCS := $(wildcard cgo/*.cpp)
SHIM_OBJS := $(patsubst cgo/%.cpp,$(BUILD)/shim/%.o,$(SHIM_SRCS))
SHIM_CXXFLAGS ?= -O2 -g0
SHIM_CUDA_LIB := $(if $(wildcard $(TORCH_LIB)/libtorch_cuda.so),-ltorch_cuda)

$(BUILD)/shim/%.o: cgo/%.cpp cgo/hdge_torch.h cgo/hdge_internal.hpp
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -fPIC $(SHIM_CXXFLAGS) $(SHIM_DEFS) -I$(TORCH_INCLUDE) -I$(TORCH_INCLUDE)/torch/csrc/api/include -Icgo -c $< -o $@

# The distributed part (cgo/dist*.cpp, C ABI in hdge_dist.h). c10d's Gloo header compiles only with
# USE_C10D_GLOO and Gloo's headers (Debian's libgloo-dev, the version of the libgloo0 libtorch
# links; a libtorch zip ships its own under include/). NCCL is compiled in only where the libtorch
# has CUDA and nccl.h is found (NCCL_INCLUDE, CUDA_HOME); elsewhere dist_nccl.cpp reports that
# NCCL is missing. Only these objects get the extra flags.
GLOO_INCLUDE ?= $(if $(wildcard $(TORCH_INCLUDE)/gloo/config.h),$(TORCH_INCLUDE),/usr/include)
CUDA_HOME ?= /usr/local/cuda
NCCL_INCLUDE ?= $(firstword $(dir $(wildcard $(TORCH_INCLUDE)/nccl.h $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h)))
SHIM_HAVE_NCCL := $(and $(wildcard $(TORCH_LIB)/libtorch_cuda.so),$(NCCL_INCLUDE),$(wildcard $(TORCH_INCLUDE)/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp))
GLOO_FLAGS := -DUSE_C10D_GLOO $(if $(filter /usr/include,$(GLOO_INCLUDE)),,-I$(GLOO_INCLUDE))
DIST_HDRS := cgo/hdge_dist.h cgo/hdge_dist_internal.hpp
$(BUILD)/shim/dist.o $(BUILD)/shim/dist_gloo.o $(BUILD)/shim/dist_nccl.o: $(DIST_HDRS)
$(BUILD)/shim/dist_gloo.o: SHIM_DEFS = $(GLOO_FLAGS)
$(BUILD)/shim/dist_nccl.o: SHIM_DEFS = $(if $(SHIM_HAVE_NCCL),-DUSE_C10D_NCCL $(GLOO_FLAGS) -I$(NCCL_INCLUDE) -I$(CUDA_HOME)/include)

# --no-as-needed keeps libtorch_cuda linked although no symbol of it is referenced: loading it is
# what registers the CUDA backend.
$(SHIM): $(SHIM_OBJS)
	$(CXX) -shared -o $@ $(SHIM_OBJS) -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB) -Wl,--no-as-needed $(SHIM_CUDA_LIB) -ltorch -ltorch_cpu -lc10 -Wl,--as-needed

shim: $(SHIM)

# -count=1: the test cache does not see a rebuilt shim library.
test-torch: $(SHIM)
	$(GO) test -p 1 -count=1 ./torch/...

# Everything: Debian packages, Go modules, the shim, then every test. CI runs exactly this.
test: deps
	$(MAKE) -j2 shim
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 20m ./...

build: $(SHIM)
	$(GO) build -o bin/hdge-torch ./cmd/hdge-torch

clean:
	rm -rf $(BUILD) bin

# The main job: train HDGE on Fashion-MNIST with the CPU defaults, then evaluate it with MNIST and
# CIFAR-10 (grey, 28x28) as OOD sets when their files are found (the data directories, then
# ../shared/data next to the repository), interp and both noise sets, calibration and a short PGD
# sweep whose two step counts check that more steps do not help the model. An earlier $(RUN_DIR)
# is kept as $(RUN_DIR).prev.
RUN_DIR ?= runs/fashion-hdge
RUN_SHARED_DATA := $(wildcard $(CURDIR)/../shared/data)
RUN_EVAL_FLAGS ?= --ood-limit 2000 --pgd-limit 200 --pgd-steps 5,10
run: deps
	$(MAKE) -j2 build
	@if [ -e $(RUN_DIR) ]; then rm -rf $(RUN_DIR).prev && mv $(RUN_DIR) $(RUN_DIR).prev; fi
	export HDGE_DATA="$${HDGE_DATA:+$$HDGE_DATA:}$(RUN_SHARED_DATA)" && \
	bin/hdge-torch train --out $(RUN_DIR) && \
	bin/hdge-torch eval --checkpoint $(RUN_DIR) --out $(RUN_DIR)/eval $(RUN_EVAL_FLAGS)
	@echo "report: $(RUN_DIR)/eval/report.html (numbers in $(RUN_DIR)/eval/metrics.json)"

# Experiments of RESULTS.md (hours on a CPU; the specs are experiments/*.json). Finished
# runs are skipped, so after an interruption the same target continues. EXPERIMENT_FLAGS passes
# e.g. --only ce or --seeds 1; `bin/hdge-torch experiment aggregate SPEC` re-makes the tables alone.
# The specs give each run one libtorch thread; EXPERIMENT_JOBS runs that many at once (one per core).
EXPERIMENT_JOBS ?= 2
EXPERIMENT_FLAGS ?= --jobs $(EXPERIMENT_JOBS)
.PHONY: experiment-bf16 experiment-fashion experiment-k experiment-cifar10 experiment-tau experiment-fashion-400 experiment-k-400 experiment-baselines-fashion experiment-baselines-cifar10
experiment-fashion: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-grid.json
# bf16 against fp32 at the CPU defaults: for a CPU with AMX or AVX512-BF16, or a GPU.
experiment-bf16: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-bf16.json
experiment-k: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-k.json
experiment-cifar10: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/cifar10.json
# The short versions (400 steps, step schedule) and the tau sweep that goes with them.
experiment-fashion-400: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-grid-400.json
experiment-k-400: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-k-400.json
experiment-tau: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-tau.json
# The paper's regime on Fashion-MNIST (experiments/fashion-jem.json). experiment-jem trains its first
# part, CE, HDGE, JEM and HDGE+JEM on seeds 1 and 2 (about 5 hours of a 2-core AVX2 EPYC), then draws
# class-conditional samples of each JEM-type run, scored in the features of the CE run of the same
# seed (samples/metrics.json); the second `experiment run` adds them to each run's eval/report.html
# and to results.md, evaluating nothing again. experiment-paper-fashion trains the rest of the grid
# (HDGE's other forms, the baselines, the Table 6 ablation, a third seed of CE and HDGE): about 8
# more hours of both cores; it continues where it stopped.
JEM_OUT := experiments/out/fashion-jem
JEM_FIRST := --only ce,hdge,jem,hdge-jem --seeds 1,2
# $(call jem_samples,OUT,RUNS): sample each finished JEM-type run of an experiment folder once,
# scored in the features of the CE run of the same seed.
define jem_samples
	for r in $(2); do for s in 1 2; do d=$(1)/$$r/seed-$$s; [ -f $$d/summary.json ] || continue; \
	  [ -f $$d/samples/metrics.json ] || bin/hdge-torch sample --checkpoint $$d --out $$d/samples --class all --n 100 --steps 100 --threads 2 \
	    --feature-checkpoint $(1)/ce/seed-$$s || exit 1; done; done
endef
.PHONY: experiment-jem experiment-paper-fashion
experiment-jem: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) $(JEM_FIRST) experiments/fashion-jem.json
	$(call jem_samples,$(JEM_OUT),jem hdge-jem)
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) $(JEM_FIRST) experiments/fashion-jem.json
experiment-paper-fashion: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-jem.json
	$(call jem_samples,$(JEM_OUT),jem hdge-jem hdge-jem-l2 jem-n128)
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-jem.json
# The CIFAR-10 half of the paper's-regime grid, with WideResNet-16-4 for CE, HDGE and JEM
# (experiments/cifar10-paper.json): about 3x the Fashion-MNIST half, several sittings.
.PHONY: experiment-paper-cifar10
experiment-paper-cifar10: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/cifar10-paper.json
	$(call jem_samples,experiments/out/cifar10-paper,jem hdge-jem hdge-jem-l2 jem-n128 jem-wrn16-4)
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/cifar10-paper.json
# HDGE's logit collapse in the paper's regime: length (1x, 2x, 4x the probe), eq13, alpha, lr, warm-up
# and --norm-logits=false against CE (experiments/fashion-collapse.json, about 6-7 hours of 2 cores).
experiment-collapse: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-collapse.json
# The paper's baselines (Tables 1 and 2, Figure 4): SupCon + linear, SimCLR + linear, JointLoss, PGD
# adversarial training, beside CE and HDGE. Two-stage runs wait for their stage 1.
experiment-baselines-fashion: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/fashion-baselines.json
experiment-baselines-cifar10: build
	bin/hdge-torch experiment run $(EXPERIMENT_FLAGS) experiments/cifar10-baselines.json
# The paper's whole CIFAR-10 protocol on one CUDA GPU (experiments/paper-cifar10-gpu.json: every method,
# the Table 6 ablation, 2-3 seeds, evaluation, samples with IS/FID): about 215 GPU-hours on an H200,
# estimated. The script builds the shim against LIBTORCH (a CUDA libtorch), checks the GPU and the
# data, and continues where it stopped; its header lists DATA_DIR, FID_WEIGHTS, JOBS, SEEDS, ONLY.
.PHONY: experiment-paper-gpu
experiment-paper-gpu:
	scripts/paper-gpu.sh

# hdge-torch against the PyTorch reference of the released HDGE code, on the same libtorch, side by
# side (bench/README.md): about 25-30 minutes on 2 cores (the objectives section 9-15). Writes bench/results.md and bench/results.json;
# scratch files go to bench/out/. BENCH_FLAGS passes e.g. --only training or --reps 5.
BENCH_FLAGS ?=
bench: $(SHIM)
	$(GO) build -o bin/hdgebench ./bench/cmd/hdgebench
	bin/hdgebench --out bench/results.md --json bench/results.json --work bench/out $(BENCH_FLAGS)

# Every code path of `make bench` on tiny inputs (about a minute; the numbers mean nothing). The
# bench package's test runs the same.
bench-quick: $(SHIM)
	$(GO) build -o bin/hdgebench ./bench/cmd/hdgebench
	bin/hdgebench --quick --out bench/out/quick.md --json bench/out/quick.json --work bench/out/quick $(BENCH_FLAGS)

# hdge-torch's HDGE against the released training loop (bench/reference.py) in the paper's regime
# (wrn-10-2 without batch norm, Adam 1e-4 with a 1000-step warm-up, sigma 0.03, batch 64), from the
# same weights, queue and batches, plus hdge-torch with --norm-logits=false and with --contrast eq13:
# 600 steps take 7 to 15 minutes per run on a busy 2-core machine (the Python side about as long as
# the Go side). Writes bench/collapse/results/ (bench/collapse/README.md).
COLLAPSE_STEPS ?= 600
COLLAPSE_WORK := bench/out/collapse
.PHONY: collapse
collapse: $(SHIM)
	$(GO) build -o bin/collapse ./bench/collapse
	bin/collapse export --dir $(COLLAPSE_WORK) --steps $(COLLAPSE_STEPS)
	bin/collapse train --dir $(COLLAPSE_WORK) --name go
	/usr/bin/python3 bench/collapse/collapse.py --dir $(COLLAPSE_WORK) --name py
	bin/collapse train --dir $(COLLAPSE_WORK) --name go-nonorm --norm-logits=false
	bin/collapse train --dir $(COLLAPSE_WORK) --name go-eq13 --contrast eq13
	/usr/bin/python3 bench/collapse/compare.py --dir $(COLLAPSE_WORK) --out bench/collapse/results \
	  --extra "go-nonorm=hdge-torch, --norm-logits=false" --extra "go-eq13=hdge-torch, --contrast eq13"

# Refresh the generated blocks of README.md and RESULTS.md (experiment and benchmark tables) from the files that
# `hdge-torch experiment` and `make bench` wrote.
.PHONY: readme
readme:
	scripts/include-results.sh
