# gaia: gradient-based OOD detection in Go on LibTorch.
#
#   make demo     the embedded demo (installs what is missing, builds, runs)
#   make test     every test (installs what is missing, builds, makes test models)
#   make test-slurm  the Slurm array job on a real one-node Slurm (root)
#   make build    bin/gaia
#   make bench    Go benchmarks of every detector and of the bare forward/backward
#   make bench-compare   gaia against the authors'-style PyTorch, side by side
#   make env      prints the CGO_* exports for running `go build` / `go test` by hand
#
# LibTorch is found by scripts/find-libtorch.sh: LIBTORCH=/path (official zip
# layout), else the torch package of $(PYTHON) (default python3 on PATH), else
# Debian's libtorch-dev; `make deps` installs Debian's when none is found.

SHELL := /bin/bash
GO ?= go
BUILD := build
export LIBTORCH PYTHON

# Detection is cached per choice of LIBTORCH and PYTHON; `make clean` forgets it.
TORCH_KEY := $(shell echo '$(LIBTORCH)|$(PYTHON)' | md5sum | cut -c1-8)
TORCH_MK := $(BUILD)/torch-$(TORCH_KEY).mk
# Test models are written by the torch that is linked: one folder per choice.
TESTDATA := $(BUILD)/testdata$(if $(LIBTORCH)$(PYTHON),-$(TORCH_KEY))

ifeq ($(filter clean help,$(MAKECMDGOALS)),)
-include $(TORCH_MK)
endif

$(TORCH_MK): scripts/find-libtorch.sh scripts/deps.sh
	@mkdir -p $(BUILD)
	@scripts/deps.sh
	@scripts/find-libtorch.sh > $@.tmp && mv $@.tmp $@
	@sed -n 's/^TORCH_SOURCE=/LibTorch: /p' $@ >&2

# Only -I, -L and -rpath go through CGO_* (they reach every cgo package,
# runtime/cgo too); the libraries themselves are named by torch/module.go.
ifeq ($(TORCH_INCLUDE),/usr/include)
TORCH_CXXFLAGS := -I/usr/include/torch/csrc/api/include
TORCH_LDFLAGS := -L$(TORCH_LIB)
else
TORCH_CXXFLAGS := -I$(TORCH_INCLUDE) -I$(TORCH_INCLUDE)/torch/csrc/api/include
TORCH_LDFLAGS := -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB)
endif
GO_TAGS := $(if $(filter 1,$(TORCH_CUDA)),-tags=gaia_torch_cuda)

# CUDA: with a CUDA LibTorch and an nvcc, the fused kernels of cuda/ are built
# into build/cuda/libgaia_cuda.a and linked into the shim (build tag gaia_cuda).
NVCC := $(shell TORCH_PYTHON=$(TORCH_PYTHON) scripts/find-nvcc.sh)
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
CUDA_LIB_A := $(BUILD)/cuda/libgaia_cuda.a
ifneq ($(NVCC),)
CUDA_HOME := $(abspath $(dir $(NVCC))..)
CUDART_SO := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcudart.so.* $(CUDA_HOME)/lib/libcudart.so.*))
endif
ifeq ($(TORCH_CUDA)$(if $(NVCC),yes,no),1yes)
WITH_CUDA := 1
GO_TAGS := -tags=gaia_torch_cuda,gaia_cuda
TORCH_CXXFLAGS += -I$(CURDIR)/cuda -I$(CUDA_HOME)/include -I$(CUDA_HOME)/include/cccl
TORCH_LDFLAGS += -L$(abspath $(BUILD)/cuda) -L$(dir $(CUDART_SO)) -Wl,-rpath,$(dir $(CUDART_SO))
# Go's build cache does not see the archive's content: its hash goes into the flags.
TORCH_CXXFLAGS += -DGAIA_CUDA_SRC=$(shell cat cuda/*.cu cuda/*.h | md5sum | cut -c1-12)
endif

export CGO_ENABLED := 1
export CGO_CXXFLAGS := $(TORCH_CXXFLAGS)
export CGO_LDFLAGS := $(TORCH_LDFLAGS)
export GAIA_PYTHON := $(TORCH_PYTHON)
export GOFLAGS := $(GO_TAGS)

.PHONY: all deps build test test-go testdata demo env clean help cuda-kernels gpu-bundle bench bench-compare bench-models rehearse-cifar test-report test-slurm test-examples test-gpu-partial

all: build

deps: $(TORCH_MK)

build: $(TORCH_MK) $(if $(WITH_CUDA),$(CUDA_LIB_A) $(BUILD)/cuda/libcudart.so)
	$(GO) build -o bin/gaia ./cmd/gaia
	$(GO) build -o bin/gaia-load ./cmd/gaia-load

$(CUDA_LIB_A): cuda/reduce.cu cuda/gaia_cuda.h
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 $(CUDA_ARCHS) -Xcompiler -fPIC -Icuda -c cuda/reduce.cu -o $(BUILD)/cuda/reduce.o
	ar rcs $@ $(BUILD)/cuda/reduce.o

# PyPI's CUDA runtime has only libcudart.so.NN: a link for -lcudart.
$(BUILD)/cuda/libcudart.so:
	@mkdir -p $(dir $@)
	ln -sf $(CUDART_SO) $@

# cuda-kernels compiles cuda/ whatever the LibTorch, so that the kernels cannot
# rot unseen on machines without a GPU: with the nvcc found, else one installed
# from PyPI (nvidia-cuda-nvcc 13.0) into build/nvcc-venv.
NVCC_PYPI := nvidia-cuda-nvcc==13.0.* nvidia-cuda-crt==13.0.* nvidia-nvvm==13.0.* nvidia-cuda-runtime==13.0.* nvidia-cuda-cccl==13.0.*
cuda-kernels:
	@nvcc="$(NVCC)"; \
	if [ -z "$$nvcc" ]; then \
	  echo "cuda-kernels: no nvcc found; installing PyPI's into $(BUILD)/nvcc-venv" >&2; \
	  python3 -m venv $(BUILD)/nvcc-venv && $(BUILD)/nvcc-venv/bin/pip install -q $(NVCC_PYPI) || exit 1; \
	  nvcc=$$(TORCH_PYTHON= scripts/find-nvcc.sh); \
	fi; \
	mkdir -p $(BUILD)/cuda-check; \
	echo "$$nvcc $(CUDA_ARCHS) -c cuda/reduce.cu"; \
	"$$nvcc" -O3 -std=c++17 $(CUDA_ARCHS) -Xcompiler -fPIC -Icuda -c cuda/reduce.cu -o $(BUILD)/cuda-check/reduce.o && \
	echo "cuda-kernels: cuda/reduce.cu compiles ($$("$$nvcc" --version | tail -n 2 | head -n 1))"

testdata: $(TORCH_MK)
	$(TORCH_PYTHON) scripts/make_testdata.py --out $(TESTDATA)
	$(TORCH_PYTHON) scripts/metrics_reference.py --out $(TESTDATA)/metrics_cases.json

# The pure-Go core is also built, vetted and tested without cgo (what a
# CGO_ENABLED=0 build of gaia can do: eval, calibrate, merge, reports), and
# under the race detector, which needs cgo, with LibTorch left out by the
# gaia_nolibtorch tag.
RACE_PKGS := ./gaia/... ./torch/... ./cmd/...
# The preprocessing reference: Debian's Pillow, which links the libjpeg-turbo gaia links.
PILLOW_PYTHON ?= /usr/bin/python3
test: build testdata cuda-kernels
	$(TORCH_PYTHON) scripts/test_export.py
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet ./...
	CGO_ENABLED=0 GAIA_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -count=1 ./...
	$(GO) test -race -count=1 -tags gaia_nolibtorch $(RACE_PKGS)
	GAIA_TESTDATA=$(abspath $(TESTDATA)) GAIA_PILLOW_PYTHON=$(PILLOW_PYTHON) GAIA_BIN=$(abspath bin/gaia) $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory test-gpu-partial
	$(MAKE) --no-print-directory test-examples
	$(MAKE) --no-print-directory test-report

# scripts/gpu-check.sh's own test run, on the CPU: the gaia and torch tests
# with only the test models that check makes (its archs line) and
# GAIA_TESTDATA_PARTIAL=1, so that a test which needs another model fails
# here, in CI, not on the lent GPU.
GPU_CHECK_ARCHS := $(shell sed -n 's/^archs=//p' scripts/gpu-check.sh)
test-gpu-partial: $(TORCH_MK)
	@archs=$(GPU_CHECK_ARCHS); if $(TORCH_PYTHON) -c 'import torchvision' >/dev/null 2>&1; then archs=$$archs,densenet121; fi; \
	  $(TORCH_PYTHON) scripts/make_testdata.py --out $(TESTDATA)-partial --archs $$archs
	$(TORCH_PYTHON) scripts/metrics_reference.py --out $(TESTDATA)-partial/metrics_cases.json
	GAIA_TESTDATA=$(abspath $(TESTDATA))-partial GAIA_TESTDATA_PARTIAL=1 $(GO) test -short -count=1 ./gaia/ ./torch/

# The programs of examples/ built in a module of their own (a replace
# directive, LibTorch through make env's exports), as a user builds them,
# and run against the MNIST ResNet.
test-examples: build
	GO=$(GO) PILLOW_PYTHON=$(PILLOW_PYTHON) scripts/test_examples.sh $(BUILD)/examples-test

# The Slurm scripts of deploy/slurm run by a real one-node Slurm (slurm-wlm
# and munge installed when missing, every daemon stopped by PID):
# docs/scale.md. Needs root, as CI has.
test-slurm: build
	GO=$(GO) scripts/test_slurm.sh $(BUILD)/slurm-test

# The demo's report.html in headless Chromium (installed when missing): valid
# HTML, a table row per detector, every gallery image loaded, not blank.
# SCREENSHOT=docs/report.png also remakes the README's picture.
test-report: build
	GO=$(GO) PILLOW_PYTHON=$(PILLOW_PYTHON) scripts/test_report.sh $(BUILD)/report-test

demo: build
	@GO=$(GO) scripts/demo.sh

# Benchmarks (minutes, not part of make test). The CIFAR ResNet-20 takes the
# weights of ../shared/data when present, else random ones; ResNet-34 is
# random at 32x32.
BENCH := $(BUILD)/bench
SHARED_R20 := ../shared/data/cifar10/resnet20-12fca82f.th
bench-models: $(TORCH_MK)
	@mkdir -p $(BENCH)
	$(TORCH_PYTHON) scripts/export.py --arch cifar_resnet20 --out $(BENCH)/resnet20.pt \
	  $(if $(wildcard $(SHARED_R20)),--weights $(SHARED_R20) --trust-pickle)
	$(TORCH_PYTHON) scripts/export.py --arch resnet34 --num-classes 10 --out $(BENCH)/resnet34.pt

SHARED_JPEGS := ../shared/data/tinyimagenet/test
# The GAIA authors' CIFAR protocol end to end on stand-ins in the real formats
# (configs/gaia_cifar10.yaml, a random gaia_resnet34): docs/reproduce.md.
rehearse-cifar: build
	PYTHON=$(TORCH_PYTHON) scripts/rehearse_cifar.sh $(BUILD)/cifar-rehearsal

bench: build bench-models
	GAIA_BENCH_MODELS=resnet20=$(abspath $(BENCH))/resnet20.pt:3x32x32,resnet34=$(abspath $(BENCH))/resnet34.pt:3x32x32 \
	  $(GO) test -run '^$$' -bench BenchmarkDetectors -benchtime $(BENCHTIME) -timeout 60m ./gaia/
	GAIA_BENCH_MODELS=resnet20=$(abspath $(BENCH))/resnet20.pt:3x32x32,resnet34=$(abspath $(BENCH))/resnet34.pt:3x32x32 \
	  $(GO) test -run '^$$' -bench BenchmarkLibrary -benchtime 1x -timeout 30m ./gaia/
	GAIA_BENCH_IMAGES=$(if $(wildcard $(SHARED_JPEGS)),$(abspath $(SHARED_JPEGS))) \
	  $(GO) test -run '^$$' -bench BenchmarkLoader -benchtime 3x ./gaia/data/
	PILLOW_PYTHON=$(PILLOW_PYTHON) GO=$(GO) scripts/bench_preprocess.sh
BENCHTIME ?= 2s

bench-compare: build bench-models
	$(TORCH_PYTHON) scripts/bench_compare.py --gaia bin/gaia --model $(BENCH)/resnet20.pt --arch cifar_resnet20 $(BENCH_ARGS)
	$(TORCH_PYTHON) scripts/bench_compare.py --gaia bin/gaia --model $(BENCH)/resnet34.pt --arch resnet34 --input 3x32x32 $(BENCH_ARGS)

# gpu-bundle: what scripts/gpu-check.sh runs on a GPU machine without Go:
# gaia, gaia-load and the test binaries (stripped, to travel light), linked against a CUDA LibTorch with the
# fused kernels (make gpu-bundle PYTHON=/path/to/venv-with-torch-2.11/bin/python).
# It builds into build/gpu alone: bin/gaia stays the binary of the default
# LibTorch.
gpu-bundle: $(TORCH_MK) $(if $(WITH_CUDA),$(CUDA_LIB_A) $(BUILD)/cuda/libcudart.so)
	@if [ -z "$(WITH_CUDA)" ]; then echo "gpu-bundle: needs a CUDA LibTorch (PYTHON= a Python with PyPI's torch) and nvcc; have $(TORCH_SOURCE), nvcc '$(NVCC)'" >&2; exit 1; fi
	@mkdir -p $(BUILD)/gpu
	$(GO) build -ldflags='-s -w' -o $(BUILD)/gpu/gaia ./cmd/gaia
	$(GO) build -ldflags='-s -w' -o $(BUILD)/gpu/gaia-load ./cmd/gaia-load
	$(GO) test -c -ldflags='-s -w' -o $(BUILD)/gpu/torch.test ./torch
	$(GO) test -c -ldflags='-s -w' -o $(BUILD)/gpu/gaia.test ./gaia
	@du -sh $(BUILD)/gpu

env: $(TORCH_MK)
	@echo 'export CGO_ENABLED=1'
	@echo "export CGO_CXXFLAGS='$(CGO_CXXFLAGS)'"
	@echo "export CGO_LDFLAGS='$(CGO_LDFLAGS)'"
	@echo "export GAIA_PYTHON='$(TORCH_PYTHON)'"
	@echo "export GOFLAGS='$(GO_TAGS)'"
	@echo "# CUDA kernels: $(if $(WITH_CUDA),built with $(NVCC),not built (needs a CUDA LibTorch and nvcc))"

clean:
	rm -rf $(BUILD) bin

help:
	@sed -n '1,12p' Makefile
