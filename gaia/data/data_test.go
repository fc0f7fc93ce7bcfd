package data

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
)

func writePNG(t *testing.T, path string, w, h int, f func(x, y int) color.Color) {
	t.Helper()
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.Set(x, y, f(x, y))
		}
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, im))
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

func identity(c, h, w int) *Transform {
	mean, std := make([]float64, c), make([]float64, c)
	for i := range std {
		std[i] = 1
	}
	sp, _ := ParseSpec("x:y")
	t, _ := NewTransform(sp, c, h, w, mean, std)
	return t
}

func collect(t *testing.T, l *Loader) []*Batch {
	t.Helper()
	var out []*Batch
	require.NoError(t, l.Run(context.Background(), func(b *Batch) error { out = append(out, b); return nil }))
	return out
}

func TestCIFARBinary(t *testing.T) {
	dir := t.TempDir()
	// Three records: label i, pixel bytes (i + j) % 256.
	var raw []byte
	for i := 0; i < 3; i++ {
		raw = append(raw, byte(i))
		for j := 0; j < 3072; j++ {
			raw = append(raw, byte(i+j))
		}
	}
	p := filepath.Join(dir, "test.bin")
	require.NoError(t, os.WriteFile(p, raw, 0o644))
	sp, err := ParseSpec("cifar-bin:" + p)
	require.NoError(t, err)
	src, err := Open(sp)
	require.NoError(t, err)
	require.Equal(t, 3, src.Len())
	img, s, label, err := src.Load(2)
	require.NoError(t, err)
	assert.Equal(t, 2, label)
	assert.Equal(t, p+"#2", s)
	assert.Equal(t, uint8((2+1024)%256), img.Pix8[1], "pixel 0's green: the G plane starts at 1024")
	assert.Equal(t, uint8((2+1024+5)%256), img.Pix8[3*5+1])
	assert.Equal(t, uint8((2+2048+5)%256), img.Pix8[3*5+2])

	require.NoError(t, os.WriteFile(p, raw[:5000], 0o644))
	_, err = Open(sp)
	assert.ErrorContains(t, err, "whole number of 3073-byte records")
	_, err = Open(&Spec{Kind: "cifar-bin", Arg: filepath.Join(dir, "none.bin"), Options: map[string]string{}})
	assert.ErrorContains(t, err, "none.bin")
	_, err = Open(&Spec{Kind: "cifar-bin", Arg: dir, Options: map[string]string{}})
	assert.ErrorContains(t, err, "is a folder or special file: cifar-bin: and cifar100-bin: read one CIFAR binary file")
}

func TestCIFAR100Binary(t *testing.T) {
	// Two records: coarse label, fine label, pixels.
	raw := append([]byte{4, 77}, make([]byte, 3072)...)
	raw = append(raw, append([]byte{9, 12}, bytes.Repeat([]byte{255}, 3072)...)...)
	p := filepath.Join(t.TempDir(), "test.bin")
	require.NoError(t, os.WriteFile(p, raw, 0o644))
	src, err := Open(&Spec{Kind: "cifar100-bin", Arg: p, Options: map[string]string{}})
	require.NoError(t, err)
	require.Equal(t, 2, src.Len())
	img, _, label, err := src.Load(1)
	require.NoError(t, err)
	assert.Equal(t, 12, label, "the fine label")
	assert.Equal(t, uint8(255), img.Pix8[3071])
	_, err = Open(&Spec{Kind: "cifar-bin", Arg: p, Options: map[string]string{}})
	assert.ErrorContains(t, err, "3073-byte records", "CIFAR-10 layout refuses a CIFAR-100 file")
}

func TestCIFARShared(t *testing.T) {
	dir := testenv.SharedData(t)
	sp, _ := ParseSpec("cifar-bin:" + filepath.Join(dir, "cifar10", "test_batch_first1000.bin"))
	src, err := Open(sp)
	require.NoError(t, err)
	assert.Equal(t, 1000, src.Len())
	_, _, label, err := src.Load(0)
	require.NoError(t, err)
	assert.Equal(t, 3, label) // the first CIFAR-10 test image is a cat
}

func TestMNISTIdx(t *testing.T) {
	dir := t.TempDir()
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint32(hdr, 0x803)
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], 3)
	binary.BigEndian.PutUint32(hdr[12:], 4)
	pix := make([]byte, 24)
	for i := range pix {
		pix[i] = byte(10 * i)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(append(hdr, pix...))
	zw.Close()
	ip := filepath.Join(dir, "t10k-images-idx3-ubyte.gz")
	require.NoError(t, os.WriteFile(ip, gz.Bytes(), 0o644))
	lab := make([]byte, 8)
	binary.BigEndian.PutUint32(lab, 0x801)
	binary.BigEndian.PutUint32(lab[4:], 2)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte"), append(lab, 7, 9), 0o644))
	src, err := Open(&Spec{Kind: "mnist", Arg: ip, Options: map[string]string{}})
	require.NoError(t, err)
	assert.Equal(t, 2, src.Len())
	img, _, label, err := src.Load(1)
	require.NoError(t, err)
	assert.Equal(t, 9, label)
	assert.Equal(t, []int{1, 3, 4}, []int{img.C, img.H, img.W})
	assert.Equal(t, uint8(120), img.Pix8[0])
	// Not gzipped works too; a corrupt header is an error naming the file.
	pp := filepath.Join(dir, "plain-images-idx3-ubyte")
	require.NoError(t, os.WriteFile(pp, append(hdr, pix...), 0o644))
	_, err = Open(&Spec{Kind: "mnist", Arg: pp, Options: map[string]string{}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pp, append(hdr, pix[:5]...), 0o644))
	_, err = Open(&Spec{Kind: "mnist", Arg: pp, Options: map[string]string{}})
	assert.ErrorContains(t, err, "plain-images-idx3-ubyte")
}

func TestFolderListAndBadFiles(t *testing.T) {
	dir := t.TempDir()
	red := func(x, y int) color.Color { return color.NRGBA{255, 0, 0, 255} }
	writePNG(t, filepath.Join(dir, "cls", "b_dog", "1.png"), 4, 4, red)
	writePNG(t, filepath.Join(dir, "cls", "a_cat", "1.png"), 4, 4, red)
	writePNG(t, filepath.Join(dir, "cls", "a_cat", "2.png"), 4, 4, red)
	src, err := Open(&Spec{Kind: "folder", Arg: filepath.Join(dir, "cls"), Options: map[string]string{}})
	require.NoError(t, err)
	require.Equal(t, 3, src.Len())
	_, s, label, err := src.Load(2)
	require.NoError(t, err)
	assert.Contains(t, s, "b_dog")
	assert.Equal(t, 1, label)
	img, _, _, err := src.Load(0)
	require.NoError(t, err)
	assert.Equal(t, []uint8{255, 0, 0}, img.Pix8[:3])

	// A JPEG decodes to RGB.
	var buf bytes.Buffer
	im := image.NewRGBA(image.Rect(0, 0, 8, 8))
	require.NoError(t, jpeg.Encode(&buf, im, nil))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flat.jpg"), buf.Bytes(), 0o644))
	// A corrupt file and a decompression bomb.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.png"), []byte("\x89PNG\r\n\x1a\nnope"), 0o644))
	bomb := bytes.Buffer{}
	require.NoError(t, png.Encode(&bomb, image.NewGray(image.Rect(0, 0, 1, 1))))
	b := bomb.Bytes()
	binary.BigEndian.PutUint32(b[16:], 100000) // IHDR width
	binary.BigEndian.PutUint32(b[20:], 100000) // IHDR height
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bomb.png"), b, 0o644))
	list := filepath.Join(dir, "list.txt")
	require.NoError(t, os.WriteFile(list, []byte("# comment\nflat.jpg 3\nbad.png 1\nbomb.png 2\ncls/a_cat/1.png 0\n"), 0o644))
	src, err = Open(&Spec{Kind: "list", Arg: list, Options: map[string]string{}})
	require.NoError(t, err)
	require.Equal(t, 4, src.Len())
	_, _, _, err = src.Load(1)
	assert.ErrorContains(t, err, "bad.png")
	_, _, _, err = src.Load(2)
	assert.ErrorContains(t, err, "over the limit")

	tf := identity(3, 8, 8)
	l := &Loader{Src: src, Transform: tf, BatchSize: 3}
	err = l.Run(context.Background(), func(*Batch) error { return nil })
	assert.ErrorContains(t, err, "bad.png")
	var se *SampleError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 1, se.Index)
	assert.ErrorContains(t, err, "sample 1: ")
	l.SkipBad = true
	// cls/a_cat/1.png is 4x4: it does not fit 8x8 either.
	batches := collect(t, l)
	var n, skipped int
	for _, b := range batches {
		n += b.N
		skipped += len(b.Skipped)
	}
	assert.Equal(t, 1, n)
	assert.Equal(t, 3, skipped)
	assert.Equal(t, 3, batches[0].Label[0])

	_, err = Open(&Spec{Kind: "folder", Arg: t.TempDir(), Options: map[string]string{}})
	assert.ErrorContains(t, err, "no PNG or JPEG")
}

func TestTransforms(t *testing.T) {
	// A 4 x 4 gray image, bytes 0..15 (x10).
	img := Image{C: 1, H: 4, W: 4, Pix8: make([]uint8, 16)}
	for i := range img.Pix8 {
		img.Pix8[i] = uint8(10 * i)
	}
	c := crop(img, window{1, 1, 2, 2})
	assert.Equal(t, []uint8{50, 60, 90, 100}, c.Pix8)

	sp, err := ParseSpec("folder:x,center-crop=2x2")
	require.NoError(t, err)
	tf, err := NewTransform(sp, 3, 2, 2, []float64{0.5, 0, 1}, []float64{2, 0.5, 0.25})
	require.NoError(t, err)
	dst := make([]float32, 12)
	require.NoError(t, tf.Apply(img, 0, dst)) // gray to RGB, crop, (v/255 - mean)/std in float32
	for i, v := range []uint8{50, 60, 90, 100} {
		assert.Equal(t, (float32(v)/255-0.5)/2, dst[i])
		assert.Equal(t, (float32(v)/255-0)/0.5, dst[4+i])
		assert.Equal(t, (float32(v)/255-1)/0.25, dst[8+i])
	}
	px, err := tf.Pixels(img, 0)
	require.NoError(t, err)
	assert.Equal(t, []uint8{50, 50, 50, 60, 60, 60, 90, 90, 90, 100, 100, 100}, px.Pix8, "interleaved RGB bytes")

	sp, _ = ParseSpec("folder:x,random-crop=2x2,seed=5")
	tf, err = NewTransform(sp, 1, 2, 2, []float64{0}, []float64{1})
	require.NoError(t, err)
	a, b := make([]float32, 4), make([]float32, 4)
	require.NoError(t, tf.Apply(img, 7, a))
	require.NoError(t, tf.Apply(img, 7, b))
	assert.Equal(t, a, b, "a random crop is seeded by the sample index")

	tf = identity(1, 3, 3)
	err = tf.Apply(img, 0, make([]float32, 9))
	var se *SizeError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, SizeError{H: 4, W: 4, WantH: 3, WantW: 3}, *se)
	assert.EqualError(t, err, "image is 4x4 after the transform (none), the model takes 3x3")

	// RGB to gray is Pillow's L24 in integers.
	rgb := Image{C: 3, H: 1, W: 2, Pix8: []uint8{255, 0, 0, 10, 200, 30}}
	assert.Equal(t, []uint8{76, 124}, toGray8(rgb).Pix8) // Pillow: 76, 124

	// A constant image stays constant through every filter, up and down.
	flat := Image{C: 3, H: 37, W: 53, Pix8: make([]uint8, 37*53*3)}
	for i := range flat.Pix8 {
		flat.Pix8[i] = 77
	}
	for _, f := range []Filter{FilterBilinear, FilterBicubic, FilterNearest} {
		for _, size := range [][2]int{{11, 7}, {120, 90}, {53, 20}} {
			out := resize8(flat, size[0], size[1], f, window{0, 0, size[0], size[1]})
			require.Len(t, out.Pix8, size[0]*size[1]*3)
			for _, v := range out.Pix8 {
				require.Equal(t, uint8(77), v, "%s to %v", f, size)
			}
		}
	}
	// A window of a resize is that part of the whole resize.
	for i := range flat.Pix8 {
		flat.Pix8[i] = uint8(i * 7)
	}
	whole := resize8(flat, 40, 30, FilterBicubic, window{0, 0, 40, 30})
	part := resize8(flat, 40, 30, FilterBicubic, window{5, 7, 20, 11})
	assert.Equal(t, crop(whole, window{5, 7, 20, 11}).Pix8, part.Pix8)

	_, err = NewTransform(&Spec{Raw: "s", Options: map[string]string{"center-crop": "2", "random-crop": "2"}}, 1, 2, 2, []float64{0}, []float64{1})
	assert.Error(t, err)
	_, err = NewTransform(&Spec{Raw: "s", Options: map[string]string{"resize-filter": "lanczos"}}, 1, 2, 2, []float64{0}, []float64{1})
	assert.ErrorContains(t, err, "want bilinear, bicubic or nearest")
	_, err = NewTransform(&Spec{Raw: "s", Options: map[string]string{"draft": ""}}, 1, 2, 2, []float64{0}, []float64{1})
	assert.ErrorContains(t, err, "give resize=")
	_, err = ParseSpec("nokind")
	assert.Error(t, err)
	_, err = Open(&Spec{Kind: "folder", Arg: "x", Raw: "folder:x,zoom=2", Options: map[string]string{"zoom": "2"}})
	assert.ErrorContains(t, err, `unknown option "zoom"`)
}

// TestTorchvisionGeometry: Resize(S)'s long side and CenterCrop's offset as
// torchvision computes them (truncation; Python's round, halves to even).
func TestTorchvisionGeometry(t *testing.T) {
	tf := func(opts string) *Transform {
		sp, err := ParseSpec("folder:x," + opts)
		require.NoError(t, err)
		tr, err := NewTransform(sp, 3, 1, 1, []float64{0, 0, 0}, []float64{1, 1, 1})
		require.NoError(t, err)
		return tr
	}
	for _, c := range []struct {
		w, h, short, ow, oh int
	}{
		{500, 375, 256, 341, 256}, // 341.33 truncated
		{375, 500, 256, 256, 341},
		{333, 500, 256, 256, 384}, // 384.38
		{64, 64, 32, 32, 32},
		{299, 300, 480, 480, 481}, // 481.6: truncated, not rounded
	} {
		w, h := tf(fmt.Sprintf("resize=%d", c.short)).resizeSize(c.w, c.h)
		assert.Equal(t, [2]int{c.ow, c.oh}, [2]int{w, h}, "%dx%d to %d", c.w, c.h, c.short)
	}
	for _, c := range []struct{ w, h, cw, ch, x0, y0 int }{
		{64, 64, 32, 32, 16, 16},
		{33, 35, 32, 32, 0, 2}, // 0.5 rounds to 0, 1.5 to 2
		{37, 39, 32, 32, 2, 4}, // 2.5 to 2, 3.5 to 4
	} {
		x0, y0 := tf(fmt.Sprintf("center-crop=%dx%d", c.ch, c.cw)).cropAt(c.w, c.h, 0)
		assert.Equal(t, [2]int{c.x0, c.y0}, [2]int{x0, y0}, "%dx%d", c.w, c.h)
	}
}

func TestNoiseAndLoaderOrder(t *testing.T) {
	sp, err := ParseSpec("noise:gaussian,n=50,shape=3x4x4,seed=9")
	require.NoError(t, err)
	src, err := Open(sp)
	require.NoError(t, err)
	tf := identity(3, 4, 4)
	one := collect(t, &Loader{Src: src, Transform: tf, BatchSize: 50, Workers: 1})
	many := collect(t, &Loader{Src: src, Transform: tf, BatchSize: 7, Workers: 8})
	var cat []float32
	var idx []int
	for _, b := range many {
		cat = append(cat, b.X...)
		idx = append(idx, b.Index...)
	}
	assert.Equal(t, one[0].X, cat, "same samples whatever the batch size and workers")
	for i, v := range idx {
		require.Equal(t, i, v)
	}
	for _, v := range cat {
		require.True(t, v >= 0 && v <= 1)
	}
	sp2, _ := ParseSpec("noise:uniform,n=50,shape=3x4x4,seed=10")
	src2, _ := Open(sp2)
	other := collect(t, &Loader{Src: src2, Transform: tf, BatchSize: 50})
	assert.NotEqual(t, one[0].X, other[0].X)
	_, err = Open(&Spec{Kind: "noise", Arg: "pink", Raw: "noise:pink", Options: map[string]string{}})
	assert.Error(t, err)

	// Cancelling stops the run.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err = (&Loader{Src: src, Transform: tf, BatchSize: 5}).Run(ctx, func(*Batch) error { n++; cancel(); return nil })
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, n)
}

func TestWithTransform(t *testing.T) {
	assert.Equal(t, "folder:/x,resize=480x480", WithTransform("folder:/x", "resize=480x480"))
	assert.Equal(t, "folder:/x,center-crop=32", WithTransform("folder:/x,center-crop=32", "resize=480x480"))
	assert.Equal(t, "list:/l.txt,root=/r,resize=256,center-crop=224", WithTransform("list:/l.txt,root=/r", "resize=256,center-crop=224"))
	assert.Equal(t, "folder:/x", WithTransform("folder:/x", ""))
	opts, err := TransformOptions("folder:/x,center-crop=224,resize=256,root=/y")
	require.NoError(t, err)
	assert.Equal(t, "resize=256,center-crop=224", opts) // in the order they apply
}

func TestWithTransformSeed(t *testing.T) {
	assert.Equal(t, "noise:uniform,n=6,seed=2,resize=28x28", WithTransform("noise:uniform,n=6,seed=2", "resize=28x28"))
}
