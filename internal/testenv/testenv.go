// Package testenv locates what tests need outside the repository: the test
// models made by `make testdata` and the real data in ../shared/data.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Root is the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Testdata returns the folder scripts/make_testdata.py writes. Under `make
// test` GAIA_TESTDATA names it and it must exist; otherwise, when build/testdata
// is absent, the test is skipped, saying how to make it.
func Testdata(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("GAIA_TESTDATA"); dir != "" {
		return dir
	}
	dir := filepath.Join(Root(), "build", "testdata")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no test models: run `make testdata` (or `make test`), or set GAIA_TESTDATA")
	}
	return dir
}

// SharedData returns ../shared/data beside the repository, or skips the
// test, saying why, when it is absent (a fresh clone has no such folder).
func SharedData(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(Root(), "..", "shared", "data")
	if _, err := os.Stat(filepath.Join(dir, "cifar10")); err != nil {
		t.Skip("../shared/data is absent: this test needs the real CIFAR-10 data and weights kept beside the project")
	}
	return dir
}

// Device is the device tests run models on: GAIA_TEST_DEVICE, default cpu
// (scripts/gpu-check.sh sets cuda).
func Device() string {
	if d := os.Getenv("GAIA_TEST_DEVICE"); d != "" {
		return d
	}
	return "cpu"
}

// OnCUDA reports whether tests run on a CUDA device.
func OnCUDA() bool { return len(Device()) >= 4 && Device()[:4] == "cuda" }

// Need skips the test when a test file is missing and GAIA_TESTDATA_PARTIAL
// is set (a machine that could make only part of the test models, such as
// one without torchvision); otherwise a missing file is the test's failure.
func Need(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil && os.Getenv("GAIA_TESTDATA_PARTIAL") != "" {
		t.Skipf("%s is missing (GAIA_TESTDATA_PARTIAL)", filepath.Base(path))
	}
}

// SharedDataIfPresent returns ../shared/data beside the repository, or ""
// when it is absent.
func SharedDataIfPresent() string {
	dir := filepath.Join(Root(), "..", "shared", "data")
	if _, err := os.Stat(filepath.Join(dir, "cifar10")); err != nil {
		return ""
	}
	return dir
}
