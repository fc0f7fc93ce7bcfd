//go:build cgo && !gaia_nolibtorch

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// pillowPython is the Python whose Pillow is the reference (make test sets
// GAIA_PILLOW_PYTHON to Debian's /usr/bin/python3, whose python3-pil links
// the libjpeg-turbo gaia links).
func pillowPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("GAIA_PILLOW_PYTHON")
	if py == "" {
		t.Skip("GAIA_PILLOW_PYTHON is not set (make test sets it): these tests compare with Pillow itself")
	}
	return py
}

func pillowScript() string { return filepath.Join(testenv.Root(), "scripts", "pillow_reference.py") }

// comparePillow dumps spec's raw pixels with gaia data dump and has Pillow
// recompute every row; any differing pixel fails the test.
func comparePillow(t *testing.T, py, spec, input, transform string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dump.npy")
	_, stderr, err := runCmd("data", "dump", "--quiet", "--raw", "--data", spec, "--input", input, "--out", out)
	require.NoError(t, err, stderr)
	cmd := exec.Command(py, pillowScript(), "compare", "--dump", out, "--transform", transform, "--channels", input[:1])
	res, err := cmd.Output()
	var r struct {
		Images    int               `json:"images"`
		MaxDiff   int               `json:"max_abs_diff"`
		Differing []json.RawMessage `json:"differing"`
	}
	require.NoError(t, json.Unmarshal(res, &r), "%s: %s", transform, res)
	assert.NoError(t, err, "%s", res)
	assert.Zero(t, r.MaxDiff, "%s (%s): max |gaia - Pillow| over %d images; first differing: %s", spec, transform, r.Images, r.Differing)
	assert.Positive(t, r.Images)
	t.Logf("%s %q: %d images, max |gaia - Pillow| = %d", input, transform, r.Images, r.MaxDiff)
}

// TestPillowExact: decoding, channel conversion, resizing (bilinear,
// bicubic, nearest; up and down; the shorter-side form) and center crops
// (offsets and zero padding) give Pillow's and torchvision's bytes, on
// images of every kind at ImageNet sizes and small ones, and on the real
// JPEGs of ../shared/data when it is there.
func TestPillowExact(t *testing.T) {
	py := pillowPython(t)
	dir := t.TempDir()
	out, err := exec.Command(py, pillowScript(), "make", "--out", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var made struct {
		Images int      `json:"images"`
		Sizes  []string `json:"sizes"`
	}
	require.NoError(t, json.Unmarshal(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:], &made), "%s", out)
	for _, s := range made.Sizes {
		var w, h int
		fmt.Sscanf(s, "%dx%d", &w, &h)
		// Decoding alone: the whole image, as RGB and as L.
		comparePillow(t, py, "folder:"+filepath.Join(dir, s), fmt.Sprintf("3x%dx%d", h, w), "")
		comparePillow(t, py, "folder:"+filepath.Join(dir, s), fmt.Sprintf("1x%dx%d", h, w), "")
	}
	for _, c := range []struct{ transform, input string }{
		{"resize=256,center-crop=224", "3x224x224"},                       // the ImageNet 256/224 path
		{"resize=256,resize-filter=bicubic,center-crop=224", "1x224x224"}, // bicubic, to gray
		{"resize=480x480", "3x480x480"},                                   // BiT's 480
		{"resize=480x480,resize-filter=bicubic", "3x480x480"},             // (and everything small upscaled)
		{"resize=32x32", "3x32x32"},                                       // TinyImageNet-resize
		{"resize=32x32,resize-filter=bicubic", "3x32x32"},                 //
		{"center-crop=32x32", "3x32x32"},                                  // TinyImageNet-crop
		{"center-crop=33x30", "3x33x30"},                                  // odd offsets: Python's round
		{"center-crop=600x600", "3x600x600"},                              // larger than every image: zero padding
		{"resize=600,center-crop=600", "3x600x600"},                       // upscaling by the shorter side
		{"resize=300x200,resize-filter=nearest", "3x300x200"},             //
		{"resize=64,resize-filter=nearest,center-crop=64", "3x64x64"},     //
		{"gray,resize=100,center-crop=100", "3x100x100"},                  // gray, then back to three channels
		{"resize=57x93", "1x57x93"},                                       // odd sizes, one channel
	} {
		comparePillow(t, py, "folder:"+dir+","+c.transform, c.input, c.transform)
	}

	shared := filepath.Join(testenv.Root(), "..", "shared", "data")
	if _, err := os.Stat(shared); err != nil {
		t.Log("../shared/data is absent: real JPEGs not checked")
		return
	}
	list := func(folder string, n int) string {
		entries, err := os.ReadDir(folder)
		require.NoError(t, err)
		var b strings.Builder
		for i, e := range entries {
			if i == n {
				break
			}
			fmt.Fprintf(&b, "%s\n", e.Name())
		}
		p := filepath.Join(t.TempDir(), "list.txt")
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
		return "list:" + p + ",root=" + folder
	}
	tin := list(filepath.Join(shared, "tinyimagenet", "test"), 400)
	comparePillow(t, py, tin, "3x64x64", "")
	comparePillow(t, py, tin+",center-crop=32x32", "3x32x32", "center-crop=32x32")
	comparePillow(t, py, tin+",resize=32x32", "3x32x32", "resize=32x32")
	comparePillow(t, py, list(filepath.Join(shared, "tinyimagenet", "test"), 40)+",resize=480x480", "3x480x480", "resize=480x480")
	comparePillow(t, py, list(filepath.Join(shared, "cifar10", "train-jpeg-5000", "airplane"), 300), "3x32x32", "")
}

// TestScoresOfPillowResize: scoring a folder with resize=32x32 gives the
// scores of a CIFAR binary file Pillow made from the same images (resized
// with its bilinear filter): the model sees the same inputs.
func TestScoresOfPillowResize(t *testing.T) {
	py := pillowPython(t)
	tmp := t.TempDir()
	folder := filepath.Join(tmp, "images")
	out, err := exec.Command(py, pillowScript(), "make", "--out", folder).CombinedOutput()
	require.NoError(t, err, "%s", out)
	spec := "folder:" + folder + ",resize=32x32"
	model := filepath.Join(testenv.Testdata(t), "cifar_resnet20.script.pt")
	if shared := testenv.SharedDataIfPresent(); shared != "" {
		// The real CIFAR-10 ResNet-20 on real Tiny ImageNet images.
		if m := filepath.Join(testenv.Testdata(t), "cifar10_resnet20.pt"); fileExists(m) {
			model = m
			spec = "folder:" + filepath.Join(shared, "tinyimagenet", "test") + ",resize=32x32"
		}
	}
	dump := filepath.Join(tmp, "dump.npy")
	_, stderr, err := runCmd("data", "dump", "--quiet", "--raw", "--limit", "300", "--data", spec, "--input", "3x32x32", "--out", dump)
	require.NoError(t, err, stderr)
	raw, err := os.ReadFile(dump + ".sources.tsv")
	require.NoError(t, err)
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n")[1:] {
		paths = append(paths, strings.SplitN(line, "\t", 3)[2])
	}
	sources := filepath.Join(tmp, "sources.txt")
	require.NoError(t, os.WriteFile(sources, []byte(strings.Join(paths, "\n")+"\n"), 0o644))
	list := filepath.Join(tmp, "list.txt")
	require.NoError(t, os.WriteFile(list, []byte(strings.Join(paths, " 0\n")+" 0\n"), 0o644))
	bin := filepath.Join(tmp, "pillow.bin")
	out, err = exec.Command(py, pillowScript(), "cifar", "--sources", sources, "--size", "32", "--out", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)

	a, b := filepath.Join(tmp, "folder.csv"), filepath.Join(tmp, "cifar.csv")
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--device", testenv.Device(), "--data", "list:"+list+",root=/,resize=32x32", "--out", a)
	require.NoError(t, err, stderr)
	_, stderr, err = runCmd("score", "--quiet", "--model", model, "--device", testenv.Device(), "--data", "cifar-bin:"+bin, "--out", b)
	require.NoError(t, err, stderr)
	fa, err := gaia.ReadScoreFile(a)
	require.NoError(t, err)
	fb, err := gaia.ReadScoreFile(b)
	require.NoError(t, err)
	require.Equal(t, len(fa.Rows), len(fb.Rows))
	require.Equal(t, fa.Detectors, fb.Detectors)
	for i := range fa.Rows {
		require.Equal(t, fa.Rows[i].Pred, fb.Rows[i].Pred, "row %d", i)
		for d, v := range fa.Rows[i].Scores {
			w := fb.Rows[i].Scores[d]
			assert.InDelta(t, w, v, 1e-5*max(1e-12, abs(w)), "row %d %s: folder %.9g, Pillow's CIFAR file %.9g", i, fa.Detectors[d], v, w)
		}
	}
	t.Logf("%d images of %s, every detector: the folder's scores equal those of Pillow's resize", len(fa.Rows), spec)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
