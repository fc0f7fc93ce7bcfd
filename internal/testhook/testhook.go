// Package testhook lets the tests of other packages hold gaia's batchers:
// a function registered for a model file runs before each batch of every
// Model opened on that path. Nothing but tests registers one.
package testhook

import "sync"

var hooks sync.Map // model path -> func()

// HoldBatches makes every batcher of a model opened on path call f before
// each batch, until the returned function removes it.
func HoldBatches(path string, f func()) (remove func()) {
	hooks.Store(path, f)
	return func() { hooks.Delete(path) }
}

// BeforeBatch is the function registered for path, or nil.
func BeforeBatch(path string) func() {
	if f, ok := hooks.Load(path); ok {
		return f.(func())
	}
	return nil
}
