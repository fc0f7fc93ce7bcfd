package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testJPEG is a small textured JPEG encoded by Go (baseline 4:2:0).
func testJPEG(t testing.TB, w, h int) []byte {
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 5), uint8((x ^ y) * 3), 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, jpeg.Encode(&b, im, &jpeg.Options{Quality: 90}))
	return b.Bytes()
}

// setJPEGSize rewrites the size a JPEG's SOF0 marker declares.
func setJPEGSize(t testing.TB, raw []byte, w, h uint16) []byte {
	out := append([]byte(nil), raw...)
	for i := 2; i+9 < len(out); {
		if out[i] != 0xff {
			t.Fatal("no marker")
		}
		m, n := out[i+1], int(binary.BigEndian.Uint16(out[i+2:]))
		if m == 0xc0 {
			binary.BigEndian.PutUint16(out[i+5:], h)
			binary.BigEndian.PutUint16(out[i+7:], w)
			return out
		}
		i += 2 + n
	}
	t.Fatal("no SOF0")
	return nil
}

func TestDecodeBadJPEGs(t *testing.T) {
	good := testJPEG(t, 48, 40)
	img, err := Decode(good)
	require.NoError(t, err)
	assert.Equal(t, []int{3, 40, 48}, []int{img.C, img.H, img.W})
	assert.Len(t, img.Pix8, 48*40*3)

	dir := t.TempDir()
	// Truncated: an error naming the file, not an image padded with grey.
	for _, cut := range []int{len(good) / 2, len(good) - 2, 200} {
		p := filepath.Join(dir, "cut.jpg")
		require.NoError(t, os.WriteFile(p, good[:cut], 0o644))
		_, err := DecodeFile(p)
		require.Error(t, err, "cut at %d", cut)
		assert.Contains(t, err.Error(), p)
		assert.Contains(t, err.Error(), "corrupt JPEG")
	}
	// A bomb: the header declares 60000 x 60000; refused before decoding.
	_, err = DecodeLimit(setJPEGSize(t, good, 60000, 60000), Limits{Pixels: 64 << 20})
	assert.True(t, errors.Is(err, ErrTooLarge), "%v", err)
	_, err = DecodeLimit(good, Limits{Pixels: 100})
	assert.True(t, errors.Is(err, ErrTooLarge), "a limit below the real size: %v", err)
	// Bytes held while decoding: a 48 x 40 RGB JPEG holds about 2 x 5760
	// bytes (libjpeg-turbo's output and its copy; Go's decoder, 7 a pixel).
	_, err = DecodeLimit(good, Limits{Bytes: 5000})
	assert.ErrorContains(t, err, "48x40 JPEG takes 0 MiB to decode")
	_, err = DecodeLimit(good, Limits{Bytes: 14000})
	assert.NoError(t, err)
	// Garbage after a valid start, an empty file, an unknown format.
	junk := append(append([]byte(nil), good[:30]...), bytes.Repeat([]byte{0x55}, 500)...)
	_, err = Decode(junk)
	assert.ErrorContains(t, err, "corrupt JPEG")
	_, err = Decode(nil)
	assert.ErrorContains(t, err, "empty file")
	_, err = Decode([]byte("GIF89a...."))
	assert.ErrorContains(t, err, "unknown format")
}

func TestDecodePNGKinds(t *testing.T) {
	enc := func(im image.Image) []byte {
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, im))
		return b.Bytes()
	}
	g16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	g16.SetGray16(0, 0, color.Gray16{200})
	g16.SetGray16(1, 0, color.Gray16{1000}) // Pillow clips 16-bit gray to 255
	img, err := Decode(enc(g16))
	require.NoError(t, err)
	assert.Equal(t, []uint8{200, 255}, img.Pix8)
	c16 := image.NewNRGBA64(image.Rect(0, 0, 1, 1))
	c16.SetNRGBA64(0, 0, color.NRGBA64{0x1234, 0xabcd, 0xff00, 0x8000}) // the high bytes; alpha dropped
	img, err = Decode(enc(c16))
	require.NoError(t, err)
	assert.Equal(t, []uint8{0x12, 0xab, 0xff}, img.Pix8)
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{10, 20, 30, 0}, color.RGBA{200, 100, 50, 255}})
	pal.Pix = []uint8{0, 1}
	img, err = Decode(enc(pal))
	require.NoError(t, err)
	assert.Equal(t, []uint8{10, 20, 30, 200, 100, 50}, img.Pix8, "a palette's colours, transparency ignored")
}

// FuzzDecode: no input crashes the decoders (libjpeg-turbo behind cgo
// included) or yields an image whose size disagrees with its pixels.
func FuzzDecode(f *testing.F) {
	good := testJPEG(f, 24, 16)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(setJPEGSize(f, good, 9000, 9000))
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, 5, 3)))
	f.Add(b.Bytes())
	f.Add([]byte{0xff, 0xd8, 0xff})
	// Progressive files, and scan bombs past the bound.
	prog := progressive(f, "progressive-64.jpg")
	f.Add(prog)
	f.Add(scanBomb(f, prog, 40))
	f.Add(scanBomb(f, prog, 150))
	f.Fuzz(func(t *testing.T, raw []byte) {
		img, err := DecodeLimit(raw, Limits{Pixels: 1 << 20, Bytes: 64 << 20, Scans: 30})
		if err != nil {
			return
		}
		if img.C != 1 && img.C != 3 || img.H <= 0 || img.W <= 0 || len(img.Pix8) != img.C*img.H*img.W {
			t.Fatalf("decoded %dx%dx%d with %d bytes", img.C, img.H, img.W, len(img.Pix8))
		}
	})
}

// PNGs are bounded by the bytes they take decoded, counting bit depth and
// channels as Go's decoder holds them: a 512 x 512 16-bit RGBA PNG (a few KB
// of file) takes 512*512*(8+3) bytes, an 8-bit gray one 512*512*(1+3).
func TestDecodeBytesLimit(t *testing.T) {
	enc := func(im image.Image) []byte {
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, im))
		return b.Bytes()
	}
	deep := enc(image.NewRGBA64(image.Rect(0, 0, 512, 512)))
	gray := enc(image.NewGray(image.Rect(0, 0, 512, 512)))
	assert.Less(t, len(deep), 20000)
	_, err := DecodeLimit(deep, Limits{Bytes: 512*512*11 - 1})
	assert.True(t, errors.Is(err, ErrTooLarge))
	assert.ErrorContains(t, err, "512x512 16-bit color PNG takes 2 MiB to decode")
	_, err = DecodeLimit(deep, Limits{Bytes: 512 * 512 * 11})
	assert.NoError(t, err)
	_, err = DecodeLimit(gray, Limits{Bytes: 512*512*4 - 1})
	assert.ErrorContains(t, err, "8-bit PNG")
	img, err := DecodeLimit(gray, Limits{Bytes: 512 * 512 * 4})
	require.NoError(t, err)
	assert.Equal(t, 1, img.C)
}
