// Package torch is a thin binding to LibTorch for running TorchScript image
// classifiers and taking gradients at their intermediate activations.
//
// A Module is a TorchScript file loaded onto a device. At load time its forward
// graph is rewritten so that it also returns its taps: the output of every
// normalization layer (aten::batch_norm, aten::group_norm, aten::instance_norm)
// or, for a model without any, the input of every ReLU; the final feature map
// before global pooling; and the classifier's input vector. Taps are named by
// module path ("layer3.1.bn2"), and a tap keeps its own value even when the
// graph later applies a ReLU or an addition to it in place, so the gradient at
// a normalization output is the gradient before the ReLU that follows.
//
// One call, Module.Run, does a whole batch: the forward, then any number of
// backward passes from fixed scalar losses to chosen taps, each gradient
// reduced on the device (per channel, or to one number per sample) before the
// compact result is copied into Go memory. LibTorch's thread-local state
// (grad mode, the current device) is set inside that call, so goroutines may
// move between OS threads freely.
//
// Concurrency: a Module is safe for use by several goroutines; their calls are
// serialized (each call already uses all intra-op threads). For parallel work,
// load one Module per goroutine or device. Close waits for a call in flight,
// then frees the module; calls after Close return ErrClosed.
//
// Errors from LibTorch come back as *Error values carrying the operation, a
// Code and LibTorch's message; nothing panics or aborts across the boundary.
//
// Loading a model needs cgo and LibTorch; the Makefile finds LibTorch and
// sets CGO_CXXFLAGS and CGO_LDFLAGS (print them with `make -s env`). A build
// without cgo (or with the gaia_nolibtorch tag) still has every type here,
// and Load returns ErrNoLibTorch.
package torch
