# gaia: gradient-based OOD detection in Go on LibTorch.
#
#   make demo     the embedded demo (installs what is missing, builds, runs)
#   make test     every test (installs what is missing, builds, makes test models)
#   make build    bin/gaia
#   make env      prints the CGO_* exports for running `go build` / `go test` by hand
#
# LibTorch is found by scripts/find-libtorch.sh: LIBTORCH=/path (official zip
# layout), else the torch package of $(PYTHON) (default python3 on PATH), else
# Debian's libtorch-dev; `make deps` installs Debian's when none is found.

SHELL := /bin/bash
GO ?= go
BUILD := build
TESTDATA := $(BUILD)/testdata
export LIBTORCH PYTHON

# Detection is cached per choice of LIBTORCH and PYTHON; `make clean` forgets it.
TORCH_KEY := $(shell echo '$(LIBTORCH)|$(PYTHON)' | md5sum | cut -c1-8)
TORCH_MK := $(BUILD)/torch-$(TORCH_KEY).mk

ifeq ($(filter clean help,$(MAKECMDGOALS)),)
-include $(TORCH_MK)
endif

$(TORCH_MK): scripts/find-libtorch.sh scripts/deps.sh
	@mkdir -p $(BUILD)
	@scripts/deps.sh
	@scripts/find-libtorch.sh > $@.tmp && mv $@.tmp $@
	@sed -n 's/^TORCH_SOURCE=/LibTorch: /p' $@ >&2

ifeq ($(TORCH_INCLUDE),/usr/include)
TORCH_CXXFLAGS := -I/usr/include/torch/csrc/api/include
TORCH_LDFLAGS := -L$(TORCH_LIB)
else
TORCH_CXXFLAGS := -I$(TORCH_INCLUDE) -I$(TORCH_INCLUDE)/torch/csrc/api/include
TORCH_LDFLAGS := -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB)
endif
ifeq ($(TORCH_CUDA),1)
TORCH_LDFLAGS += -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed
endif
export CGO_ENABLED := 1
export CGO_CXXFLAGS := $(TORCH_CXXFLAGS)
export CGO_LDFLAGS := $(TORCH_LDFLAGS)
export GAIA_PYTHON := $(TORCH_PYTHON)

.PHONY: all deps build test test-go testdata demo env clean help

all: build

deps: $(TORCH_MK)

build: $(TORCH_MK)
	$(GO) build -o bin/gaia ./cmd/gaia

testdata: $(TORCH_MK)
	$(TORCH_PYTHON) scripts/make_testdata.py --out $(TESTDATA)
	$(TORCH_PYTHON) scripts/metrics_reference.py --out $(TESTDATA)/metrics_cases.json

test: build testdata
	$(GO) vet ./...
	GAIA_TESTDATA=$(abspath $(TESTDATA)) $(GO) test -count=1 ./...

demo: build
	@GO=$(GO) scripts/demo.sh

env: $(TORCH_MK)
	@echo 'export CGO_ENABLED=1'
	@echo "export CGO_CXXFLAGS='$(CGO_CXXFLAGS)'"
	@echo "export CGO_LDFLAGS='$(CGO_LDFLAGS)'"
	@echo "export GAIA_PYTHON='$(TORCH_PYTHON)'"

clean:
	rm -rf $(BUILD) bin

help:
	@sed -n '1,12p' Makefile
