//go:build !cgo || gaia_nolibtorch

package torch

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLoadWithoutLibTorch: a build without LibTorch says so when a model is
// loaded, and still checks what it can (the device, the file).
func TestLoadWithoutLibTorch(t *testing.T) {
	if Available() {
		t.Fatal("Available in a build without LibTorch")
	}
	p := filepath.Join(t.TempDir(), "m.pt")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, "cpu")
	if !errors.Is(err, ErrNoLibTorch) {
		t.Fatalf("Load: %v, want ErrNoLibTorch", err)
	}
	if _, err := Load(p, "tpu"); err == nil || errors.Is(err, ErrNoLibTorch) {
		t.Fatalf("Load on a bad device: %v, want the device refused first", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.pt"), "cpu"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
	if _, err := LoadBytes([]byte("x"), "cpu"); !errors.Is(err, ErrNoLibTorch) {
		t.Fatalf("LoadBytes: %v, want ErrNoLibTorch", err)
	}
}
