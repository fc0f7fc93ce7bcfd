package data

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeGrayPNG(t *testing.T, path string) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8))))
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// A FIFO named like an image in a folder is skipped and counted (reading it
// would block forever), and one named by a list is refused at once, not
// waited on.
func TestFIFOsAreNotRead(t *testing.T) {
	dir := t.TempDir()
	writeGrayPNG(t, filepath.Join(dir, "a.png"))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "b.png"), 0o644))
	src, err := Open(&Spec{Kind: "folder", Arg: dir, Options: map[string]string{}, Raw: "folder:" + dir})
	require.NoError(t, err)
	assert.Equal(t, 1, src.Len())
	assert.Contains(t, src.Describe(), "1 image names that are not regular files (FIFOs, devices) skipped")

	list := filepath.Join(dir, "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("a.png 0\nb.png 1\n"), 0o644))
	sp, err := ParseSpec("list:" + list)
	require.NoError(t, err)
	src, err = Open(sp)
	require.NoError(t, err)
	tf := identity(1, 8, 8)
	done := make(chan error, 1)
	go func() {
		l := &Loader{Src: src, Transform: tf, BatchSize: 2}
		done <- l.Run(context.Background(), func(*Batch) error { return nil })
	}()
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "b.png is not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO of a list blocked")
	}
}

// A list's paths stay inside its root unless the spec says outside-root.
func TestListConfinedToRoot(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	writeGrayPNG(t, filepath.Join(dir, "out.png"))
	for _, line := range []string{"../out.png 0", filepath.Join(dir, "out.png") + " 0", "x/../../out.png 1"} {
		list := filepath.Join(sub, "list.txt")
		require.NoError(t, os.WriteFile(list, []byte(line+"\n"), 0o644))
		sp, err := ParseSpec("list:" + list)
		require.NoError(t, err)
		_, err = Open(sp)
		assert.ErrorContains(t, err, "is outside the list's root", line)
		sp, err = ParseSpec("list:" + list + ",outside-root")
		require.NoError(t, err)
		src, err := Open(sp)
		require.NoError(t, err, line)
		_, _, _, err = src.Load(0)
		assert.NoError(t, err, line)
	}
}

// idxFile is an MNIST idx image file whose header declares n images of
// h x w, followed by body.
func idxFile(n, h, w int, body []byte) []byte {
	head := make([]byte, 16)
	binary.BigEndian.PutUint32(head, 0x803)
	binary.BigEndian.PutUint32(head[4:], uint32(n))
	binary.BigEndian.PutUint32(head[8:], uint32(h))
	binary.BigEndian.PutUint32(head[12:], uint32(w))
	return append(head, body...)
}

// A gzip bomb: an idx.gz whose header says 5 images and which inflates to
// 256 MB is refused after reading what the header declares (before: the
// whole file inflated, 2.86 GB of RSS for a 1 GB one).
func TestMNISTGzipBomb(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bomb-images-idx3-ubyte.gz")
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zw.Write(idxFile(5, 28, 28, nil))
	zeros := make([]byte, 1<<20)
	for i := 0; i < 256; i++ {
		zw.Write(zeros)
	}
	zw.Close()
	require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
	assert.Less(t, b.Len(), 1<<20, "a small file")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := openMNIST(p)
	runtime.ReadMemStats(&after)
	assert.ErrorContains(t, err, "header says [5 28 28], the file holds 3921 or more bytes after it")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "read no further than declared")

	// The right size reads; a wrong magic says which it found.
	good := filepath.Join(dir, "good-images-idx3-ubyte")
	require.NoError(t, os.WriteFile(good, idxFile(2, 2, 2, make([]byte, 8)), 0o644))
	src, err := openMNIST(good)
	require.NoError(t, err)
	assert.Equal(t, 2, src.Len())
	bad := idxFile(2, 2, 2, make([]byte, 8))
	binary.BigEndian.PutUint32(bad, 0x801)
	require.NoError(t, os.WriteFile(good, bad, 0o644))
	_, err = openMNIST(good)
	assert.ErrorContains(t, err, "magic 0x00000801, want 0x00000803")
	// A header that declares more than any idx file holds.
	require.NoError(t, os.WriteFile(good, idxFile(1<<30, 1<<10, 1<<10, nil), 0o644))
	_, err = openMNIST(good)
	assert.ErrorContains(t, err, "not a size an idx file can have")
}
