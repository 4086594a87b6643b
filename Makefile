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

.PHONY: all deps shim build test run bench bench-quick clean

all: build

# Debian packages the project needs; installed only when missing.
APT_PKGS := libtorch-dev libopenblas0-pthread python3-torch python3-numpy python3-scipy python3-sklearn dataset-fashion-mnist chromium
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; fi
	$(GO) mod download

clean:
	rm -rf $(BUILD) bin
