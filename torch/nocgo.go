//go:build !cgo

package torch

// The torch package binds LibTorch through cgo. This build has cgo disabled
// (CGO_ENABLED=0, or no C compiler found): build with CGO_ENABLED=1 and a C++
// compiler, through the Makefile (`make build`), which also finds LibTorch.
var _ = gaia_torch_package_needs_cgo__build_with_CGO_ENABLED_1_and_see_README
