package data

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
)

// Transform turns a decoded image into the model's input as torchvision's
// ImageFolder pipeline does: channel conversion (Pillow's convert), Resize,
// CenterCrop or a seeded random crop, then ToTensor (v / 255) and
// Normalize. On 8-bit images every step up to normalization works on bytes
// with Pillow's and torchvision's arithmetic, so the model sees the same
// float32 inputs a PyTorch user's pipeline makes (docs/imagenet.md).
type Transform struct {
	C, H, W     int       // the model's input size
	Mean, Std   []float64 // per channel
	resizeShort int       // resize the shorter side to this (0: no)
	resizeH     int       // resize to resizeH x resizeW (0: no)
	resizeW     int
	filter      Filter
	cropH       int // center or random crop (0: no)
	cropW       int
	randomCrop  bool
	seed        int64
	gray, rgb   bool
	draft       bool // decode JPEGs scaled down in the DCT domain first (not Pillow-identical)
	lut         [][256]float32
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
	if v, ok := sp.Options["resize-filter"]; ok {
		if t.filter, err = ParseFilter(v); err != nil {
			return nil, fmt.Errorf("data spec %q: %w", sp.Raw, err)
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
	if v, ok := sp.Options["draft"]; ok {
		if v != "" {
			return nil, fmt.Errorf("data spec %q: draft takes no value", sp.Raw)
		}
		if t.resizeShort == 0 && t.resizeH == 0 {
			return nil, fmt.Errorf("data spec %q: draft scales JPEGs down for a resize: give resize=", sp.Raw)
		}
		t.draft = true
	}
	// ToTensor then Normalize, in float32 as torchvision: (v / 255 - mean) / std.
	t.lut = make([][256]float32, c)
	for ch := 0; ch < c; ch++ {
		m, s := float32(mean[ch]), float32(std[ch])
		for v := 0; v < 256; v++ {
			t.lut[ch][v] = (float32(v)/255 - m) / s
		}
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
	if t.draft {
		s = append(s, "JPEG draft decoding (DCT-scaled, not Pillow-identical)")
	}
	if t.resizeShort > 0 {
		s = append(s, fmt.Sprintf("resize shorter side to %d (%s, Pillow's)", t.resizeShort, t.filter))
	}
	if t.resizeH > 0 {
		s = append(s, fmt.Sprintf("resize to %dx%d (%s, Pillow's)", t.resizeH, t.resizeW, t.filter))
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

// draftScale is the DCT scale a JPEG of w x h may be decoded at for the
// resize that follows, as Pillow's draft picks it: the largest of 8, 4, 2
// whose reduced image is still at least the resize's size (1: none).
func (t *Transform) draftScale(w, h int) int {
	if !t.draft {
		return 1
	}
	rw, rh := t.resizeSize(w, h)
	scale := min(w/rw, h/rh)
	for _, s := range []int{8, 4, 2} {
		if scale >= s {
			return s
		}
	}
	return 1
}

// resizeSize is the size (width, height) an image of w x h is resized to:
// torchvision's Resize(S) keeps the aspect ratio with the longer side
// int(S * long / short), truncated; Resize((H, W)) is exact.
func (t *Transform) resizeSize(w, h int) (int, int) {
	switch {
	case t.resizeH > 0:
		return t.resizeW, t.resizeH
	case t.resizeShort > 0:
		s := t.resizeShort
		if w <= h {
			return s, int(float64(s*h) / float64(w))
		}
		return int(float64(s*w) / float64(h)), s
	}
	return w, h
}

// cropAt is where a crop of the transform's size starts in an image of w x
// h: torchvision's CenterCrop offset int(round((w - cw) / 2)) (Python's
// round, halves to even), or a seeded random offset.
func (t *Transform) cropAt(w, h, index int) (x0, y0 int) {
	if t.randomCrop {
		rng := rand.New(rand.NewSource(t.seed*1_000_003 + int64(index)))
		y0, x0 = rng.Intn(h-t.cropH+1), rng.Intn(w-t.cropW+1)
		return x0, y0
	}
	return int(math.RoundToEven(float64(w-t.cropW) / 2)), int(math.RoundToEven(float64(h-t.cropH) / 2))
}

// Apply transforms sample index's image into dst (C*H*W floats).
func (t *Transform) Apply(img Image, index int, dst []float32) error {
	img, err := t.Pixels(img, index)
	if err != nil {
		return err
	}
	if len(dst) < t.C*t.H*t.W {
		return fmt.Errorf("transform: %d floats for a %dx%dx%d input", len(dst), t.C, t.H, t.W)
	}
	hw := t.H * t.W
	if img.Is8Bit() && t.C == 3 {
		// One pass over the interleaved bytes into the three planes.
		l0, l1, l2 := &t.lut[0], &t.lut[1], &t.lut[2]
		p := img.Pix8[:3*hw]
		o0, o1, o2 := dst[:hw], dst[hw:2*hw], dst[2*hw:3*hw]
		for i := range o0 {
			o0[i], o1[i], o2[i] = l0[p[3*i]], l1[p[3*i+1]], l2[p[3*i+2]]
		}
		return nil
	}
	if img.Is8Bit() {
		for c := 0; c < t.C; c++ {
			lut := &t.lut[c]
			out := dst[c*hw : (c+1)*hw]
			for i := range out {
				out[i] = lut[img.Pix8[i*t.C+c]]
			}
		}
		return nil
	}
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

// Pixels is Apply before normalization: the image at the model's size and
// channels (8-bit for 8-bit sources), what `gaia data dump --raw` writes.
func (t *Transform) Pixels(img Image, index int) (Image, error) {
	if t.gray {
		img = grayOf(img)
	}
	if t.rgb {
		img = rgbOf(img)
	}
	// Match the model's channels: gray to RGB by repetition, RGB to gray by luma.
	if img.C != t.C {
		switch {
		case img.C == 1 && t.C == 3:
			img = rgbOf(img)
		case img.C == 3 && t.C == 1:
			img = grayOf(img)
		default:
			return Image{}, fmt.Errorf("image has %d channels, the model takes %d", img.C, t.C)
		}
	}
	rw, rh := t.resizeSize(img.W, img.H)
	if rw <= 0 || rh <= 0 {
		return Image{}, fmt.Errorf("image %dx%d resizes to nothing", img.H, img.W)
	}
	// The window of the resized image the crop keeps: only it is computed.
	win := window{0, 0, rw, rh}
	padded := false
	if t.cropH > 0 {
		if rw < t.cropW || rh < t.cropH {
			if t.randomCrop {
				return Image{}, fmt.Errorf("image %dx%d is smaller than the %dx%d crop", rh, rw, t.cropH, t.cropW)
			}
			padded = true // torchvision pads with zeros, then crops
		} else {
			x0, y0 := t.cropAt(rw, rh, index)
			win = window{x0, y0, t.cropW, t.cropH}
		}
	}
	if rw != img.W || rh != img.H || win != (window{0, 0, img.W, img.H}) {
		img = t.resize(img, rw, rh, win)
	}
	if padded {
		img = t.padCrop(img, index)
	}
	if img.H != t.H || img.W != t.W {
		return Image{}, &SizeError{H: img.H, W: img.W, WantH: t.H, WantW: t.W, Transform: t.options()}
	}
	return img, nil
}

// SizeError is an image whose size after the transform is not the model's.
type SizeError struct {
	H, W         int    // after the transform
	WantH, WantW int    // the model's input
	Transform    string // the transform's options ("" for none)
}

func (e *SizeError) Error() string {
	tf := e.Transform
	if tf == "" {
		tf = "none"
	}
	return fmt.Sprintf("image is %dx%d after the transform (%s), the model takes %dx%d", e.H, e.W, tf, e.WantH, e.WantW)
}

// options is the transform as data spec options, as TransformOptions
// writes them.
func (t *Transform) options() string {
	var out []string
	if t.gray {
		out = append(out, "gray")
	}
	if t.rgb {
		out = append(out, "rgb")
	}
	if t.draft {
		out = append(out, "draft")
	}
	if t.resizeShort > 0 {
		out = append(out, fmt.Sprintf("resize=%d", t.resizeShort))
	}
	if t.resizeH > 0 {
		out = append(out, fmt.Sprintf("resize=%dx%d", t.resizeH, t.resizeW))
	}
	if t.filter != FilterBilinear {
		out = append(out, "resize-filter="+t.filter.String())
	}
	if t.cropH > 0 {
		kind := "center-crop"
		if t.randomCrop {
			kind = "random-crop"
		}
		out = append(out, fmt.Sprintf("%s=%dx%d", kind, t.cropH, t.cropW))
	}
	return strings.Join(out, ",")
}

// Cost is the bytes Pixels allocates for an image of c x h x w values of
// bpv bytes each (1 for 8-bit images, 4 for float ones), beside the image
// itself, computed as Pixels makes its steps and before any is made: the
// channel conversions, the resize's coefficients (for the crop's window
// alone), its passes and its result, the padding of a crop larger than the
// image. It is also the error Pixels would return for that size.
func (t *Transform) Cost(c, h, w, bpv int) (int64, error) {
	var total int64
	px := func(c, h, w int) int64 { return int64(c) * int64(h) * int64(w) * int64(bpv) }
	if t.gray && c != 1 {
		total, c = total+px(1, h, w), 1
	}
	if t.rgb && c != 3 {
		total, c = total+px(3, h, w), 3
	}
	if c != t.C {
		if !(c == 1 && t.C == 3 || c == 3 && t.C == 1) {
			return 0, fmt.Errorf("image has %d channels, the model takes %d", c, t.C)
		}
		total, c = total+px(t.C, h, w), t.C
	}
	rw, rh := t.resizeSize(w, h)
	if rw <= 0 || rh <= 0 {
		return 0, fmt.Errorf("image %dx%d resizes to nothing", h, w)
	}
	win := window{0, 0, rw, rh}
	padded := false
	if t.cropH > 0 {
		if rw < t.cropW || rh < t.cropH {
			if t.randomCrop {
				return 0, fmt.Errorf("image %dx%d is smaller than the %dx%d crop", rh, rw, t.cropH, t.cropW)
			}
			padded = true
		} else {
			win = window{0, 0, t.cropW, t.cropH}
		}
	}
	oh, ow := win.H, win.W
	switch {
	case rw == w && rh == h && win == (window{0, 0, w, h}):
	case rw == w && rh == h: // a crop
		total += px(c, win.H, win.W)
	case t.filter == FilterNearest:
		total += 8*int64(win.W+win.H) + px(c, win.H, win.W)
	default:
		k := t.filter.kernel()
		rows := int64(win.H)
		if rw != w {
			_, ks := axisSupport(w, rw, k)
			total += int64(win.W) * (8 + 12*int64(ks))
		}
		if rh != h {
			_, ks := axisSupport(h, rh, k)
			total += int64(win.H) * (8 + 12*int64(ks))
			// The rows the window reads, wherever the crop puts it: at most
			// those of its widest stretch.
			lo, hi := axisRows(h, rh, k, 0, win.H-1)
			lo2, hi2 := axisRows(h, rh, k, rh-win.H, rh-1)
			rows = int64(max(hi-lo, hi2-lo2)) + 1
		}
		total += rows*int64(win.W)*int64(c)*int64(bpv) + px(c, win.H, win.W) + 4*int64(win.W)*int64(c)
	}
	if padded {
		ph, pw := max(rh, t.cropH), max(rw, t.cropW)
		total += px(c, ph, pw) + px(c, t.cropH, t.cropW)
		oh, ow = t.cropH, t.cropW
	}
	if oh != t.H || ow != t.W {
		return 0, &SizeError{H: oh, W: ow, WantH: t.H, WantW: t.W, Transform: t.options()}
	}
	return total, nil
}

// Check refuses an image the transform cannot make a model input of, or
// whose decoded bytes and the transform's (Cost) would pass budget (zero
// or negative: no bound), before the transform allocates anything.
func (t *Transform) Check(img Image, budget int64) error {
	bpv, held := 1, int64(len(img.Pix8))
	if !img.Is8Bit() {
		bpv, held = 4, 4*int64(len(img.Pix))
	}
	cost, err := t.Cost(img.C, img.H, img.W, bpv)
	if err != nil {
		return err
	}
	if budget > 0 && held+cost > budget {
		return fmt.Errorf("%w: a %dx%d image takes %d MiB through the transform (%s), at most %d MiB",
			ErrTooLarge, img.W, img.H, (held+cost)>>20, t.Describe(), budget>>20)
	}
	return nil
}

// Feasible refuses, before any image is read, a transform that can make
// no model input (its output size is fixed and not the model's) or that
// passes budget even for the smallest image (a resize to 100000 x 100000).
func (t *Transform) Feasible(budget int64) error {
	fixedH, fixedW := 0, 0
	switch {
	case t.cropH > 0:
		fixedH, fixedW = t.cropH, t.cropW
	case t.resizeH > 0:
		fixedH, fixedW = t.resizeH, t.resizeW
	}
	if fixedH > 0 && (fixedH != t.H || fixedW != t.W) {
		return &SizeError{H: fixedH, W: fixedW, WantH: t.H, WantW: t.W, Transform: t.options()}
	}
	// The cheapest image the transform takes: of the model's size (or one
	// pixel, for a transform that resizes everything).
	h, w := t.H, t.W
	if t.resizeH > 0 || t.resizeShort > 0 {
		h, w = 1, 1
	}
	cost, err := t.Cost(t.C, h, w, 1)
	if err != nil {
		return nil // not every size works (a crop of a resize to the shorter side); images are checked one by one
	}
	if budget > 0 && cost > budget {
		return fmt.Errorf("%w: the transform (%s) takes %d MiB for even the smallest image, at most %d MiB", ErrTooLarge, t.Describe(), cost>>20, budget>>20)
	}
	return nil
}

// resize makes the window win of the image resized to w x h (a window of
// the image itself when the size does not change: a crop).
func (t *Transform) resize(img Image, w, h int, win window) Image {
	if w == img.W && h == img.H {
		return crop(img, win)
	}
	if img.Is8Bit() {
		return resize8(img, w, h, t.filter, win)
	}
	return resizeFloat(img, w, h, t.filter, win)
}

// padCrop is torchvision's CenterCrop of an image smaller than the crop:
// zeros around it ((crop - size) // 2 before, the rest after), then the
// crop of the padded image.
func (t *Transform) padCrop(img Image, index int) Image {
	pw, ph := max(img.W, t.cropW), max(img.H, t.cropH)
	left, top := 0, 0
	if t.cropW > img.W {
		left = (t.cropW - img.W) / 2
	}
	if t.cropH > img.H {
		top = (t.cropH - img.H) / 2
	}
	out := Image{C: img.C, H: ph, W: pw}
	if img.Is8Bit() {
		out.Pix8 = make([]uint8, ph*pw*img.C)
		for y := 0; y < img.H; y++ {
			copy(out.Pix8[((top+y)*pw+left)*img.C:], img.Pix8[y*img.W*img.C:(y+1)*img.W*img.C])
		}
	} else {
		out.Pix = make([]float32, img.C*ph*pw)
		for c := 0; c < img.C; c++ {
			for y := 0; y < img.H; y++ {
				copy(out.Pix[(c*ph+top+y)*pw+left:], img.Pix[(c*img.H+y)*img.W:(c*img.H+y+1)*img.W])
			}
		}
	}
	x0, y0 := t.cropAt(pw, ph, index)
	return crop(out, window{x0, y0, t.cropW, t.cropH})
}

// crop returns a window of an image.
func crop(img Image, win window) Image {
	if win == (window{0, 0, img.W, img.H}) {
		return img
	}
	out := Image{C: img.C, H: win.H, W: win.W}
	c := img.C
	if img.Is8Bit() {
		out.Pix8 = make([]uint8, win.H*win.W*c)
		for y := 0; y < win.H; y++ {
			row := ((win.Y0+y)*img.W + win.X0) * c
			copy(out.Pix8[y*win.W*c:(y+1)*win.W*c], img.Pix8[row:row+win.W*c])
		}
		return out
	}
	out.Pix = make([]float32, c*win.H*win.W)
	for ch := 0; ch < c; ch++ {
		for y := 0; y < win.H; y++ {
			row := (ch*img.H+win.Y0+y)*img.W + win.X0
			copy(out.Pix[(ch*win.H+y)*win.W:(ch*win.H+y+1)*win.W], img.Pix[row:row+win.W])
		}
	}
	return out
}

// grayOf converts to one channel: Pillow's convert("L") for bytes, the
// same luma weights for floats.
func grayOf(img Image) Image {
	if img.C == 1 {
		return img
	}
	if img.Is8Bit() {
		return toGray8(img)
	}
	hw := img.H * img.W
	out := Image{C: 1, H: img.H, W: img.W, Pix: make([]float32, hw)}
	for i := 0; i < hw; i++ {
		out.Pix[i] = 0.299*img.Pix[i] + 0.587*img.Pix[hw+i] + 0.114*img.Pix[2*hw+i]
	}
	return out
}

// rgbOf converts one channel to three by repetition (Pillow's
// convert("RGB") of an L image).
func rgbOf(img Image) Image {
	if img.C == 3 {
		return img
	}
	if img.Is8Bit() {
		return toRGB8(img)
	}
	hw := img.H * img.W
	out := Image{C: 3, H: img.H, W: img.W, Pix: make([]float32, 3*hw)}
	for c := 0; c < 3; c++ {
		copy(out.Pix[c*hw:], img.Pix[:hw])
	}
	return out
}

// transformKeys are the spec options that are transforms rather than part of
// the source, in the order TransformOptions lists them.
var transformKeys = []string{"gray", "rgb", "draft", "resize", "resize-filter", "center-crop", "random-crop", "seed"}

// TransformOptions returns the transform options of a dataset spec, in a
// fixed order, as ParseTransform reads them ("resize=32x32,center-crop=28").
func TransformOptions(spec string) (string, error) {
	sp, err := ParseSpec(spec)
	if err != nil {
		return "", err
	}
	var out []string
	_, random := sp.Options["random-crop"]
	for _, k := range transformKeys {
		v, ok := sp.Options[k]
		switch {
		case k == "seed" && !random: // a noise source's seed, not a transform's
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
