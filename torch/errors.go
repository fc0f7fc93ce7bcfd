package torch

import (
	"errors"
	"fmt"
)

// Code classifies an Error.
type Code int

// Codes, as the shim reports them.
const (
	CodeTorch   Code = 1 // LibTorch raised c10::Error
	CodeStd     Code = 2 // another C++ std::exception
	CodeUnknown Code = 3 // anything else thrown in C++
	CodeInvalid Code = 4 // a bad argument (shape, device, index)
	CodeGraph   Code = 5 // a TorchScript graph the tap machinery cannot understand
)

func (c Code) String() string {
	switch c {
	case CodeTorch:
		return "torch"
	case CodeStd:
		return "c++"
	case CodeUnknown:
		return "unknown"
	case CodeInvalid:
		return "invalid argument"
	case CodeGraph:
		return "graph"
	}
	return fmt.Sprintf("code %d", int(c))
}

// Error is an error from LibTorch or from the shim around it.
type Error struct {
	Op   string // what was being done: "load /path/m.pt", "run"
	Code Code
	Msg  string // LibTorch's message, without its C++ backtrace
}

func (e *Error) Error() string {
	return fmt.Sprintf("torch: %s: %s", e.Op, e.Msg)
}

// ErrClosed is returned by calls on a closed Module.
var ErrClosed = errors.New("torch: module is closed")

// ErrNoLibTorch is returned by Load in a build without LibTorch (cgo off,
// as CGO_ENABLED=0 builds are): such a gaia reads score files, evaluates,
// calibrates, merges and reports, but scores nothing.
var ErrNoLibTorch = errors.New("this build of gaia has no LibTorch (it was built with CGO_ENABLED=0)")
