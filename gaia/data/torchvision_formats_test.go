package data

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/npy"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// fixtures makes small files in torchvision's download formats with
// scripts/dataset_fixtures.py, with what torchvision's own dataset classes
// read from them.
func fixtures(t *testing.T) (string, map[string]*npy.Array) {
	t.Helper()
	py := os.Getenv("GAIA_PILLOW_PYTHON")
	if py == "" {
		t.Skip("GAIA_PILLOW_PYTHON is not set (make test sets it): these tests compare with torchvision's dataset classes")
	}
	dir := t.TempDir()
	cmd := exec.Command(py, filepath.Join(testenv.Root(), "scripts", "dataset_fixtures.py"), "--out", dir)
	cmd.Dir = dir // not the repository root, whose torch/ folder would shadow the torch package
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	want, err := npy.ReadNPZ(filepath.Join(dir, "expected.npz"))
	require.NoError(t, err)
	return dir, want
}

// CIFAR-10/100 python batches and SVHN .mat files read as torchvision reads
// them: every pixel and label, test and train splits, the released files'
// Python 2 pickles and Python 3's protocols 2 and 4, compressed and
// uncompressed MAT files, SVHN's 10 as the digit 0.
func TestTorchvisionFormats(t *testing.T) {
	dir, want := fixtures(t)
	cases := []struct{ spec, key string }{
		{"cifar10-py:" + dir, "cifar10_test"},
		{"cifar10-py:" + filepath.Join(dir, "cifar-10-batches-py") + ",split=train", "cifar10_train"},
		{"cifar100-py:" + dir, "cifar100_test"},
		{"cifar100-py:" + dir + ",split=train", "cifar100_train"},
		{"svhn:" + filepath.Join(dir, "test_32x32.mat"), "svhn_test"},
		{"svhn:" + filepath.Join(dir, "train_32x32.mat"), "svhn_train"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			sp, err := ParseSpec(c.spec)
			require.NoError(t, err)
			src, err := Open(sp)
			require.NoError(t, err)
			x, y := want[c.key+"_x"], want[c.key+"_y"]
			n := x.Shape[0]
			require.Equal(t, n, src.Len(), src.Describe())
			for i := 0; i < n; i++ {
				img, _, label, err := src.Load(i)
				require.NoError(t, err)
				require.Equal(t, []int{3, 32, 32}, []int{img.C, img.H, img.W})
				assert.Equal(t, int(y.Data[i]), label, "label of %d", i)
				for k, v := range img.Pix8 {
					if float32(v) != x.Data[i*3072+k] {
						t.Fatalf("image %d: byte %d (row %d, column %d, channel %d) is %d, torchvision's %v",
							i, k, k/96, (k/3)%32, k%3, v, x.Data[i*3072+k])
					}
				}
			}
			fp, err := Fingerprint(sp, src)
			require.NoError(t, err)
			assert.Len(t, fp, 64)
		})
	}
}

// Anything but the plain structures is refused, and nothing is ever run: a
// pickle whose data would call os.system is an error naming the global, and
// the command it held did not run. Truncated and foreign files are errors
// naming the file.
func TestTorchvisionFormatsRefuse(t *testing.T) {
	dir, _ := fixtures(t)
	evil := filepath.Join(t.TempDir(), "cifar-10-batches-py")
	require.NoError(t, os.MkdirAll(evil, 0o755))
	raw, err := os.ReadFile(filepath.Join(dir, "evil.pickle"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(evil, "test_batch"), raw, 0o644))
	_, err = Open(&Spec{Kind: "cifar10-py", Arg: evil, Options: map[string]string{}, Raw: "cifar10-py:" + evil})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "system, which gaia does not read")
	_, statErr := os.Stat(filepath.Join(dir, "pwned"))
	assert.True(t, os.IsNotExist(statErr), "the pickled command ran")

	good, err := os.ReadFile(filepath.Join(dir, "cifar-10-batches-py", "test_batch"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(evil, "test_batch"), good[:len(good)/2], 0o644))
	_, err = Open(&Spec{Kind: "cifar10-py", Arg: evil, Options: map[string]string{}})
	assert.ErrorContains(t, err, "test_batch: not a CIFAR python batch")
	_, err = Open(&Spec{Kind: "cifar10-py", Arg: evil, Options: map[string]string{"split": "val"}})
	assert.ErrorContains(t, err, `split="val": want test or train`)
	_, err = Open(&Spec{Kind: "cifar100-py", Arg: evil, Options: map[string]string{}})
	assert.ErrorContains(t, err, "no such file")

	mat, err := os.ReadFile(filepath.Join(dir, "train_32x32.mat"))
	require.NoError(t, err)
	cut := filepath.Join(t.TempDir(), "cut.mat")
	require.NoError(t, os.WriteFile(cut, mat[:len(mat)-100], 0o644))
	_, err = Open(&Spec{Kind: "svhn", Arg: cut, Options: map[string]string{}})
	assert.ErrorContains(t, err, "cut.mat")
	_, err = Open(&Spec{Kind: "svhn", Arg: filepath.Join(evil, "test_batch"), Options: map[string]string{}})
	assert.ErrorContains(t, err, "not a MATLAB 5 file")
	hdf := filepath.Join(t.TempDir(), "v73.mat")
	require.NoError(t, os.WriteFile(hdf, append([]byte("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: x HDF5 schema 1.00 ."), make([]byte, 200)...), 0o644))
	_, err = Open(&Spec{Kind: "svhn", Arg: hdf, Options: map[string]string{}})
	assert.ErrorContains(t, err, "MATLAB 7.3 (HDF5)")
}

// The unpickler and the MAT reader never panic, whatever the bytes:
// `go test -fuzz FuzzUnpickle ./gaia/data` (and FuzzMAT).
func FuzzUnpickle(f *testing.F) {
	f.Add([]byte("\x80\x02}q\x00(U\x04dataq\x01]q\x02K\x01aU\x06labelsq\x03]q\x04K\x02au."))
	f.Add([]byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."))
	f.Add([]byte("cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85U\x01b\x87R."))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = unpickle(bytesReader(b))
	})
}

func FuzzMAT(f *testing.F) {
	head := make([]byte, 128)
	copy(head, "MATLAB 5.0 MAT-file, fuzz")
	head[126], head[127] = 'I', 'M'
	el := []byte{14, 0, 0, 0, 48, 0, 0, 0, 6, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
		5, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 'X', 0, 0, 0, 2, 0, 2, 0, 7, 9, 0, 0}
	f.Add(append(append([]byte(nil), head...), el...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.mat")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = readMAT(p, "X", "y")
	})
}
