//go:build !cgo

package data

// Without cgo the resampling passes are the Go ones.
var (
	hpass8 = hpass8Go
	vpass8 = vpass8Go
)
