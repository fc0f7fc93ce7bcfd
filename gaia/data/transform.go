package data

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
)

// Transform turns a decoded image into the model's input: channel
// conversion, resize, crop, then normalization.
type Transform struct {
	C, H, W     int       // the model's input size
	Mean, Std   []float64 // per channel
	resizeShort int       // resize the shorter side to this (0: no)
	resizeH     int       // resize to resizeH x resizeW (0: no)
	resizeW     int
	cropH       int // center or random crop (0: no)
	cropW       int
	randomCrop  bool
	seed        int64
	gray, rgb   bool
}

// NewTransform reads the transform options of a spec for a model input of
// C x H x W with the given mean and std.
func NewTransform(sp *Spec, c, h, w int, mean, std []float64) (*Transform, error) {
	if len(mean) != c || len(std) != c {
		return nil, fmt.Errorf("transform: mean and std need %d entries", c)
	}
	t := &Transform{C: c, H: h, W: w, Mean: mean, Std: std}
	var err error
	if v, ok := sp.Options["resize"]; ok {
		if strings.Contains(v, "x") {
			if t.resizeH, t.resizeW, err = parseHW(v); err != nil {
				return nil, fmt.Errorf("data spec %q: resize=%w", sp.Raw, err)
			}
		} else if t.resizeShort, _, err = parseHW(v); err != nil {
			return nil, fmt.Errorf("data spec %q: resize=%w", sp.Raw, err)
		}
	}
	_, center := sp.Options["center-crop"]
	_, random := sp.Options["random-crop"]
	if center && random {
		return nil, fmt.Errorf("data spec %q: center-crop and random-crop exclude each other", sp.Raw)
	}
	if center || random {
		key := "center-crop"
		if random {
			key = "random-crop"
		}
		if t.cropH, t.cropW, err = parseHW(sp.Options[key]); err != nil {
			return nil, fmt.Errorf("data spec %q: %s=%w", sp.Raw, key, err)
		}
		t.randomCrop = random
	}
	seed, err := sp.intOption("seed", 1)
	if err != nil {
		return nil, err
	}
	t.seed = int64(seed)
	_, t.gray = sp.Options["gray"]
	_, t.rgb = sp.Options["rgb"]
	if t.gray && t.rgb {
		return nil, fmt.Errorf("data spec %q: gray and rgb exclude each other", sp.Raw)
	}
	return t, nil
}

// Describe lists the transforms in the order they apply.
func (t *Transform) Describe() string {
	var s []string
	if t.gray {
		s = append(s, "gray")
	}
	if t.rgb {
		s = append(s, "rgb")
	}
	if t.resizeShort > 0 {
		s = append(s, fmt.Sprintf("resize shorter side to %d (bilinear)", t.resizeShort))
	}
	if t.resizeH > 0 {
		s = append(s, fmt.Sprintf("resize to %dx%d (bilinear)", t.resizeH, t.resizeW))
	}
	if t.cropH > 0 {
		kind := "center"
		if t.randomCrop {
			kind = fmt.Sprintf("random (seed %d)", t.seed)
		}
		s = append(s, fmt.Sprintf("%s crop %dx%d", kind, t.cropH, t.cropW))
	}
	s = append(s, fmt.Sprintf("normalize mean %v std %v", t.Mean, t.Std))
	return strings.Join(s, ", ")
}

// Apply transforms sample index's image into dst (C*H*W floats).
func (t *Transform) Apply(img Image, index int, dst []float32) error {
	if t.gray {
		img = toGray(img)
	}
	if t.rgb {
		img = toRGB(img)
	}
	// Match the model's channels: gray to RGB by repetition, RGB to gray by luma.
	if img.C != t.C {
		switch {
		case img.C == 1 && t.C == 3:
			img = toRGB(img)
		case img.C == 3 && t.C == 1:
			img = toGray(img)
		default:
			return fmt.Errorf("image has %d channels, the model takes %d", img.C, t.C)
		}
	}
	if t.resizeShort > 0 {
		h, w := img.H, img.W
		if h <= w {
			img = resize(img, t.resizeShort, max(1, (w*t.resizeShort+h/2)/h))
		} else {
			img = resize(img, max(1, (h*t.resizeShort+w/2)/w), t.resizeShort)
		}
	}
	if t.resizeH > 0 {
		img = resize(img, t.resizeH, t.resizeW)
	}
	if t.cropH > 0 {
		if img.H < t.cropH || img.W < t.cropW {
			return fmt.Errorf("image %dx%d is smaller than the %dx%d crop", img.H, img.W, t.cropH, t.cropW)
		}
		y0, x0 := (img.H-t.cropH)/2, (img.W-t.cropW)/2
		if t.randomCrop {
			rng := rand.New(rand.NewSource(t.seed*1_000_003 + int64(index)))
			y0, x0 = rng.Intn(img.H-t.cropH+1), rng.Intn(img.W-t.cropW+1)
		}
		img = crop(img, y0, x0, t.cropH, t.cropW)
	}
	if img.H != t.H || img.W != t.W {
		return fmt.Errorf("image is %dx%d after transforms, the model takes %dx%d: add resize=%dx%d or center-crop=%dx%d to the data spec",
			img.H, img.W, t.H, t.W, t.H, t.W, t.H, t.W)
	}
	hw := t.H * t.W
	for c := 0; c < t.C; c++ {
		m, s := float32(t.Mean[c]), float32(t.Std[c])
		src := img.Pix[c*hw : (c+1)*hw]
		out := dst[c*hw : (c+1)*hw]
		for i, v := range src {
			out[i] = (v - m) / s
		}
	}
	return nil
}

func toGray(img Image) Image {
	if img.C == 1 {
		return img
	}
	hw := img.H * img.W
	out := Image{C: 1, H: img.H, W: img.W, Pix: make([]float32, hw)}
	for i := 0; i < hw; i++ {
		// ITU-R 601-2 luma, as PIL's convert("L").
		out.Pix[i] = 0.299*img.Pix[i] + 0.587*img.Pix[hw+i] + 0.114*img.Pix[2*hw+i]
	}
	return out
}

func toRGB(img Image) Image {
	if img.C == 3 {
		return img
	}
	hw := img.H * img.W
	out := Image{C: 3, H: img.H, W: img.W, Pix: make([]float32, 3*hw)}
	for c := 0; c < 3; c++ {
		copy(out.Pix[c*hw:], img.Pix[:hw])
	}
	return out
}

func crop(img Image, y0, x0, h, w int) Image {
	out := Image{C: img.C, H: h, W: w, Pix: make([]float32, img.C*h*w)}
	for c := 0; c < img.C; c++ {
		for y := 0; y < h; y++ {
			src := img.Pix[c*img.H*img.W+(y0+y)*img.W+x0:]
			copy(out.Pix[c*h*w+y*w:c*h*w+(y+1)*w], src[:w])
		}
	}
	return out
}

// resize is bilinear interpolation with half-pixel centers (align_corners
// false, no antialiasing): halving a size averages 2 x 2 blocks exactly.
func resize(img Image, h, w int) Image {
	if img.H == h && img.W == w {
		return img
	}
	out := Image{C: img.C, H: h, W: w, Pix: make([]float32, img.C*h*w)}
	sy := float64(img.H) / float64(h)
	sx := float64(img.W) / float64(w)
	type tap struct {
		i0, i1 int
		f      float32
	}
	coords := func(n, src int, scale float64) []tap {
		out := make([]tap, n)
		for i := range out {
			p := (float64(i)+0.5)*scale - 0.5
			if p < 0 {
				p = 0
			}
			i0 := int(p)
			if i0 > src-1 {
				i0 = src - 1
			}
			i1 := i0 + 1
			if i1 > src-1 {
				i1 = src - 1
			}
			out[i] = tap{i0, i1, float32(p - float64(i0))}
		}
		return out
	}
	ys, xs := coords(h, img.H, sy), coords(w, img.W, sx)
	for c := 0; c < img.C; c++ {
		plane := img.Pix[c*img.H*img.W : (c+1)*img.H*img.W]
		dst := out.Pix[c*h*w : (c+1)*h*w]
		for y, ty := range ys {
			r0 := plane[ty.i0*img.W : (ty.i0+1)*img.W]
			r1 := plane[ty.i1*img.W : (ty.i1+1)*img.W]
			for x, tx := range xs {
				a := r0[tx.i0] + (r0[tx.i1]-r0[tx.i0])*tx.f
				b := r1[tx.i0] + (r1[tx.i1]-r1[tx.i0])*tx.f
				dst[y*w+x] = a + (b-a)*ty.f
			}
		}
	}
	return out
}

// transformKeys are the spec options that are transforms rather than part of
// the source.
var transformKeys = []string{"gray", "rgb", "resize", "center-crop", "random-crop", "seed"}

// TransformOptions returns the transform options of a dataset spec, in a
// fixed order, as ParseTransform reads them ("resize=32x32,center-crop=28").
func TransformOptions(spec string) (string, error) {
	sp, err := ParseSpec(spec)
	if err != nil {
		return "", err
	}
	var out []string
	for _, k := range transformKeys {
		v, ok := sp.Options[k]
		switch {
		case !ok:
		case v == "":
			out = append(out, k)
		default:
			out = append(out, k+"="+v)
		}
	}
	return strings.Join(out, ","), nil
}

// ParseTransform reads transform options alone ("resize=256,center-crop=224";
// "" for none) for a model input of C x H x W.
func ParseTransform(opts string, c, h, w int, mean, std []float64) (*Transform, error) {
	sp, err := ParseSpec("transform:-," + opts)
	if err != nil {
		return nil, err
	}
	sp.Raw = opts
	for k := range sp.Options {
		if !slices.Contains(transformKeys, k) {
			return nil, fmt.Errorf("transform %q: unknown option %q (known: %s)", opts, k, strings.Join(transformKeys, ", "))
		}
	}
	return NewTransform(sp, c, h, w, mean, std)
}

// WithTransform adds the transform options def to spec when spec names no
// transform option of its own (a spec that does is returned as it is).
func WithTransform(spec, def string) string {
	if def == "" {
		return spec
	}
	sp, err := ParseSpec(spec)
	if err != nil {
		return spec
	}
	for _, k := range transformKeys {
		if _, ok := sp.Options[k]; ok && k != "seed" { // seed is also a noise source's option
			return spec
		}
	}
	return spec + "," + def
}
