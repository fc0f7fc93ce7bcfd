package data

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPreprocess: decode + the ImageNet protocol's two transforms on
// full-size JPEGs (GAIA_BENCH_IMAGENET names a folder of them, such as
// scripts/make_fake_imagenet.py's val/; make bench makes one), one image at
// a time on one goroutine, from bytes in memory: gaia's Pillow-identical
// path, its opt-in draft path, and the path before it (Go's image/jpeg and
// an unfiltered float bilinear resize). scripts/bench_preprocess.sh runs
// this beside Pillow and torchvision on the same files.
func BenchmarkPreprocess(b *testing.B) {
	dir := os.Getenv("GAIA_BENCH_IMAGENET")
	if dir == "" {
		b.Skip("GAIA_BENCH_IMAGENET is not set (a folder of full-size JPEGs): run make bench")
	}
	var raws [][]byte
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isImageFile(p) && len(raws) < 200 {
			if raw, err := os.ReadFile(p); err == nil {
				raws = append(raws, raw)
			}
		}
		return nil
	})
	if len(raws) == 0 {
		b.Skip("no JPEGs in " + dir)
	}
	for _, c := range []struct {
		name, opts string
		hw         int
	}{
		{"imagenet224", "resize=256,center-crop=224", 224},
		{"bit480", "resize=480x480", 480},
	} {
		for _, impl := range []string{"gaia", "gaia-draft", "before"} {
			b.Run(c.name+"/"+impl, func(b *testing.B) {
				opts := c.opts
				if impl == "gaia-draft" {
					opts += ",draft"
				}
				sp, err := ParseSpec("folder:x," + opts)
				if err != nil {
					b.Fatal(err)
				}
				tf, err := NewTransform(sp, 3, c.hw, c.hw, []float64{0.5, 0.5, 0.5}, []float64{0.5, 0.5, 0.5})
				if err != nil {
					b.Fatal(err)
				}
				dst := make([]float32, 3*c.hw*c.hw)
				one := func(raw []byte) {
					var img Image
					var err error
					switch impl {
					case "before":
						if err := legacyPreprocess(raw, tf, dst); err != nil {
							b.Fatal(err)
						}
						return
					case "gaia-draft":
						scale := 1
						if cfg, err := jpeg.DecodeConfig(bytes.NewReader(raw)); err == nil {
							scale = tf.draftScale(cfg.Width, cfg.Height)
						}
						img, err = decodeScaled(context.Background(), raw, DefaultLimits(), scale)
					default:
						img, err = Decode(raw)
					}
					if err == nil {
						err = tf.Apply(img, 0, dst)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, raw := range raws {
						one(raw)
					}
				}
				b.ReportMetric(1000*b.Elapsed().Seconds()/float64(b.N*len(raws)), "ms/image")
			})
		}
	}
}

// legacyPreprocess is gaia's path before the Pillow-identical one, kept
// here to measure against: Go's image/jpeg to floats, then bilinear
// interpolation in float32 without antialiasing, a center crop, normalize.
func legacyPreprocess(raw []byte, tf *Transform, dst []float32) error {
	im, err := jpeg.Decode(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	img := legacyFloats(im)
	w, h := tf.resizeSize(img.W, img.H)
	img = legacyResize(img, h, w)
	if tf.cropH > 0 {
		img = crop(img, window{(img.W - tf.cropW) / 2, (img.H - tf.cropH) / 2, tf.cropW, tf.cropH})
	}
	hw := tf.H * tf.W
	for c := 0; c < tf.C; c++ {
		m, s := float32(tf.Mean[c]), float32(tf.Std[c])
		for i, v := range img.Pix[c*hw : (c+1)*hw] {
			dst[c*hw+i] = (v - m) / s
		}
	}
	return nil
}

func legacyFloats(im image.Image) Image {
	b := im.Bounds()
	w, h := b.Dx(), b.Dy()
	out := Image{C: 3, H: h, W: w, Pix: make([]float32, 3*w*h)}
	if g, ok := im.(*image.YCbCr); ok {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := g.YOffset(b.Min.X+x, b.Min.Y+y), g.COffset(b.Min.X+x, b.Min.Y+y)
				r, gg, bb := ycbcrRGB(g.Y[yi], g.Cb[ci], g.Cr[ci])
				out.Pix[y*w+x], out.Pix[w*h+y*w+x], out.Pix[2*w*h+y*w+x] = float32(r)/255, float32(gg)/255, float32(bb)/255
			}
		}
		return out
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bb, _ := im.At(b.Min.X+x, b.Min.Y+y).RGBA()
			out.Pix[y*w+x], out.Pix[w*h+y*w+x], out.Pix[2*w*h+y*w+x] = float32(r>>8)/255, float32(g>>8)/255, float32(bb>>8)/255
		}
	}
	return out
}

func ycbcrRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy := int32(y) * 0x10101
	cb1, cr1 := int32(cb)-128, int32(cr)-128
	clamp := func(v int32) uint8 {
		if uint32(v)&0xff000000 == 0 {
			return uint8(v >> 16)
		}
		if v < 0 {
			return 0
		}
		return 255
	}
	return clamp(yy + 91881*cr1), clamp(yy - 22554*cb1 - 46802*cr1), clamp(yy + 116130*cb1)
}

// legacyResize: bilinear with half-pixel centers, no antialiasing.
func legacyResize(img Image, h, w int) Image {
	out := Image{C: img.C, H: h, W: w, Pix: make([]float32, img.C*h*w)}
	type tap struct {
		i0, i1 int
		f      float32
	}
	coords := func(n, src int) []tap {
		scale := float64(src) / float64(n)
		t := make([]tap, n)
		for i := range t {
			p := max(0, (float64(i)+0.5)*scale-0.5)
			i0 := min(int(p), src-1)
			t[i] = tap{i0, min(i0+1, src-1), float32(p - float64(i0))}
		}
		return t
	}
	ys, xs := coords(h, img.H), coords(w, img.W)
	for c := 0; c < img.C; c++ {
		plane := img.Pix[c*img.H*img.W : (c+1)*img.H*img.W]
		dst := out.Pix[c*h*w : (c+1)*h*w]
		for y, ty := range ys {
			r0, r1 := plane[ty.i0*img.W:(ty.i0+1)*img.W], plane[ty.i1*img.W:(ty.i1+1)*img.W]
			for x, tx := range xs {
				a := r0[tx.i0] + (r0[tx.i1]-r0[tx.i0])*tx.f
				bb := r1[tx.i0] + (r1[tx.i1]-r1[tx.i0])*tx.f
				dst[y*w+x] = a + (bb-a)*ty.f
			}
		}
	}
	return out
}
