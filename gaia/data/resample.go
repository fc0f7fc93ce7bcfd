package data

import (
	"fmt"
	"math"
)

// Filter is a resampling filter, as Pillow's Image.resize takes it.
type Filter int

// Filters. Bilinear is torchvision's default for Resize.
const (
	FilterBilinear Filter = iota
	FilterBicubic
	FilterNearest
)

func (f Filter) String() string {
	switch f {
	case FilterBicubic:
		return "bicubic"
	case FilterNearest:
		return "nearest"
	}
	return "bilinear"
}

// ParseFilter reads bilinear, bicubic or nearest.
func ParseFilter(s string) (Filter, error) {
	switch s {
	case "bilinear", "":
		return FilterBilinear, nil
	case "bicubic":
		return FilterBicubic, nil
	case "nearest":
		return FilterNearest, nil
	}
	return 0, fmt.Errorf("resize-filter=%s: want bilinear, bicubic or nearest", s)
}

// The resampling below is Pillow's (libImaging/Resample.c), written anew:
// a separable filter whose support widens with the downscale factor (so it
// antialiases), coefficients computed in double, normalized, then for 8-bit
// pixels turned into 22-bit fixed point; a horizontal pass, then a vertical
// one, each rounding to 8 bits; a pass is skipped when its size does not
// change. It gives Pillow's bytes exactly (tested against Pillow itself).
// One departure, which does not change a single value: only the window of
// the result that a crop keeps is computed.

// kernel is a filter function and its support at scale 1.
type kernel struct {
	fn      func(float64) float64
	support float64
}

func bilinear(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// bicubic is Keys' cubic convolution with a = -0.5, as Pillow's.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		// float64() around each product keeps the compiler from fusing a
		// multiply-add, which would round differently from Pillow's C.
		return float64(float64(float64((a+2)*x)-(a+3))*x*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

func (f Filter) kernel() kernel {
	if f == FilterBicubic {
		return kernel{bicubic, 2}
	}
	return kernel{bilinear, 1}
}

// precisionBits is Pillow's PRECISION_BITS for 8-bit pixels.
const precisionBits = 32 - 8 - 2

// axis holds one axis' resampling coefficients: for output index i, taps
// start at input bounds[2i] and there are bounds[2i+1] of them, weights
// kk[i*ksize:] (normalized to sum 1) and k8 (the same in fixed point).
type axis struct {
	ksize  int
	bounds []int32
	kk     []float64
	k8     []int32
}

// newAxis is Pillow's precompute_coeffs (box [0, inSize)) followed by
// normalize_coeffs_8bpc.
func newAxis(inSize, outSize int, k kernel) axis {
	return newAxisWindow(inSize, outSize, k, 0, outSize)
}

// axisSupport is the half-width of an axis' taps and their count.
func axisSupport(inSize, outSize int, k kernel) (support float64, ksize int) {
	filterscale := float64(float32(inSize)) / float64(outSize)
	if filterscale < 1 {
		filterscale = 1
	}
	support = k.support * filterscale
	return support, int(math.Ceil(support))*2 + 1
}

// newAxisWindow is newAxis for the output indices [lo, lo+n) alone, at
// positions 0..n-1: each index's coefficients depend on it alone, so they
// are those newAxis computes, in memory of the window's size rather than
// the whole resized axis' (a 1 x 200,000 image resized to a shorter side of
// 28 is 5.6 million rows long; a 28-row crop of it needs 28).
func newAxisWindow(inSize, outSize int, k kernel, lo, n int) axis {
	in0, in1 := float32(0), float32(inSize)
	scale := float64(in1-in0) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support, ksize := axisSupport(inSize, outSize, k)
	ax := axis{ksize: ksize, bounds: make([]int32, 2*n)}
	ax.kk = make([]float64, n*ax.ksize)
	ax.k8 = make([]int32, n*ax.ksize)
	ss := 1 / filterscale
	for i := 0; i < n; i++ {
		xx := lo + i
		center := float64(in0) + float64((float64(xx)+0.5)*scale)
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		w := ax.kk[i*ax.ksize : (i+1)*ax.ksize]
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w[x] = k.fn((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		for x := 0; x < xmax; x++ {
			if ww != 0 {
				w[x] /= ww
			}
		}
		for x, v := range w {
			if v < 0 {
				ax.k8[i*ax.ksize+x] = int32(-0.5 + float64(v*(1<<precisionBits)))
			} else {
				ax.k8[i*ax.ksize+x] = int32(0.5 + float64(v*(1<<precisionBits)))
			}
		}
		ax.bounds[2*i], ax.bounds[2*i+1] = int32(xmin), int32(xmax)
	}
	return ax
}

// axisRows is the input range [lo, hi) the output indices [first, last]
// of an axis read: what newAxisWindow's bounds give, without the weights.
func axisRows(inSize, outSize int, k kernel, first, last int) (lo, hi int) {
	scale := float64(float32(inSize)) / float64(outSize)
	support, _ := axisSupport(inSize, outSize, k)
	at := func(xx int) (int, int) {
		center := (float64(xx) + 0.5) * scale
		xmin := max(0, int(center-support+0.5))
		xmax := min(inSize, int(center+support+0.5))
		return xmin, xmax
	}
	lo, _ = at(first)
	_, hi = at(last)
	return lo, hi
}

// clip8fixed is Pillow's clip8: a fixed-point sum to a byte.
func clip8fixed(ss int32) uint8 {
	v := ss >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// window is the part [X0, X0+W) x [Y0, Y0+H) of a resize's result.
type window struct{ X0, Y0, W, H int }

// resize8 resizes an 8-bit image to outW x outH as Pillow's Image.resize
// does, and returns the window win of the result.
func resize8(im Image, outW, outH int, f Filter, win window) Image {
	if f == FilterNearest {
		return nearest(im, outW, outH, win)
	}
	k := f.kernel()
	c := im.C
	needH, needV := outW != im.W, outH != im.H
	// The source rows the window's vertical taps read.
	rowLo, rowHi := win.Y0, win.Y0+win.H
	var vert axis
	if needV {
		vert = newAxisWindow(im.H, outH, k, win.Y0, win.H)
		last := win.H - 1
		rowLo, rowHi = int(vert.bounds[0]), int(vert.bounds[2*last]+vert.bounds[2*last+1])
	}
	// Horizontal pass: rows [rowLo, rowHi) of the source, the window's columns.
	rows, cols := rowHi-rowLo, win.W
	tmp := make([]uint8, rows*cols*c)
	if needH {
		hor := newAxisWindow(im.W, outW, k, win.X0, cols)
		hpass8(im.Pix8[rowLo*im.W*c:rowHi*im.W*c], im.W, c, rows, hor.bounds, hor.k8, hor.ksize, cols, tmp)
	} else {
		for y := 0; y < rows; y++ {
			copy(tmp[y*cols*c:(y+1)*cols*c], im.Pix8[((rowLo+y)*im.W+win.X0)*c:((rowLo+y)*im.W+win.X0+cols)*c])
		}
	}
	if !needV {
		return Image{C: c, H: rows, W: cols, Pix8: tmp}
	}
	// Vertical pass over the horizontal pass's rows (bounds shifted to them).
	bounds := vert.bounds
	for i := 0; i < len(bounds); i += 2 {
		bounds[i] -= int32(rowLo)
	}
	out := make([]uint8, win.H*cols*c)
	vpass8(tmp, cols*c, bounds, vert.k8, vert.ksize, win.H, out)
	return Image{C: c, H: win.H, W: cols, Pix8: out}
}

// hpass8Go is the horizontal pass: rows rows of src (srcW pixels of c
// bytes), outCols output pixels each, output pixel x from taps bounds[2x]
// .. bounds[2x]+bounds[2x+1]-1 with weights k[x*ksize:], to dst. The cgo
// build runs its C twin (resample.c).
func hpass8Go(src []uint8, srcW, c, rows int, bounds, k []int32, ksize, outCols int, dst []uint8) {
	for y := 0; y < rows; y++ {
		row := src[y*srcW*c : (y+1)*srcW*c]
		out := dst[y*outCols*c : (y+1)*outCols*c]
		for x := 0; x < outCols; x++ {
			xmin, n := int(bounds[2*x]), int(bounds[2*x+1])
			w := k[x*ksize : x*ksize+n]
			in := row[xmin*c : (xmin+n)*c]
			if c == 3 {
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				for t, kw := range w {
					p := in[3*t : 3*t+3]
					s0 += int32(p[0]) * kw
					s1 += int32(p[1]) * kw
					s2 += int32(p[2]) * kw
				}
				out[3*x], out[3*x+1], out[3*x+2] = clip8fixed(s0), clip8fixed(s1), clip8fixed(s2)
				continue
			}
			for ch := 0; ch < c; ch++ {
				ss := int32(1 << (precisionBits - 1))
				for t, kw := range w {
					ss += int32(in[t*c+ch]) * kw
				}
				out[x*c+ch] = clip8fixed(ss)
			}
		}
	}
}

// vpass8Go is the vertical pass: outRows rows of width bytes, output row y
// from src rows bounds[2y] .. bounds[2y]+bounds[2y+1]-1 with weights
// k[y*ksize:], to dst. The cgo build runs its C twin.
func vpass8Go(src []uint8, width int, bounds, k []int32, ksize, outRows int, dst []uint8) {
	acc := make([]int32, width)
	for y := 0; y < outRows; y++ {
		ymin, n := int(bounds[2*y]), int(bounds[2*y+1])
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		for t, kw := range k[y*ksize : y*ksize+n] {
			row := src[(ymin+t)*width : (ymin+t+1)*width]
			for i, v := range row {
				acc[i] += int32(v) * kw
			}
		}
		out := dst[y*width : (y+1)*width]
		for i, ss := range acc {
			out[i] = clip8fixed(ss)
		}
	}
}

// resizeFloat is resize8 for float images (C x H x W), as Pillow resamples
// its 32-bit float mode "F": the same coefficients, sums in double, no
// rounding.
func resizeFloat(im Image, outW, outH int, f Filter, win window) Image {
	if f == FilterNearest {
		return nearest(im, outW, outH, win)
	}
	k := f.kernel()
	out := Image{C: im.C, H: win.H, W: win.W, Pix: make([]float32, im.C*win.H*win.W)}
	needH, needV := outW != im.W, outH != im.H
	var hor, vert axis
	if needH {
		hor = newAxisWindow(im.W, outW, k, win.X0, win.W)
	}
	// Only the source rows the window's vertical taps read go through the
	// horizontal pass.
	rowLo, rowHi := win.Y0, win.Y0+win.H
	if needV {
		vert = newAxisWindow(im.H, outH, k, win.Y0, win.H)
		last := win.H - 1
		rowLo, rowHi = int(vert.bounds[0]), int(vert.bounds[2*last]+vert.bounds[2*last+1])
	}
	tmp := make([]float32, (rowHi-rowLo)*win.W)
	for c := 0; c < im.C; c++ {
		plane := im.Pix[c*im.H*im.W : (c+1)*im.H*im.W]
		for y := rowLo; y < rowHi; y++ {
			trow := tmp[(y-rowLo)*win.W : (y-rowLo+1)*win.W]
			for xx := range trow {
				if !needH {
					trow[xx] = plane[y*im.W+win.X0+xx]
					continue
				}
				xmin, n := int(hor.bounds[2*xx]), int(hor.bounds[2*xx+1])
				var ss float64
				for x := 0; x < n; x++ {
					ss += float64(plane[y*im.W+xmin+x]) * hor.kk[xx*hor.ksize+x]
				}
				trow[xx] = float32(ss)
			}
		}
		dst := out.Pix[c*win.H*win.W : (c+1)*win.H*win.W]
		for yy := 0; yy < win.H; yy++ {
			for xx := 0; xx < win.W; xx++ {
				if !needV {
					dst[yy*win.W+xx] = tmp[yy*win.W+xx]
					continue
				}
				ymin, n := int(vert.bounds[2*yy])-rowLo, int(vert.bounds[2*yy+1])
				var ss float64
				for y := 0; y < n; y++ {
					ss += float64(tmp[(ymin+y)*win.W+xx]) * vert.kk[yy*vert.ksize+y]
				}
				dst[yy*win.W+xx] = float32(ss)
			}
		}
	}
	return out
}

// nearest is Pillow's NEAREST resize (an affine scale, Geometry.c's
// ImagingScaleAffine): source index COORD(x0 + (i + 0.5) s), the position
// accumulated step by step in double as Pillow does.
func nearest(im Image, outW, outH int, win window) Image {
	// Source indices of the window's outputs [lo, lo+n) alone; the position
	// is still accumulated from 0, as Pillow does.
	index := func(inSize, outSize, lo, n int) []int {
		a := float64(float32(inSize)) / float64(outSize)
		idx := make([]int, n)
		xo := 0 + a*0.5
		for x := 0; x < lo+n; x++ {
			if x >= lo {
				if xo < 0 {
					idx[x-lo] = -1
				} else {
					idx[x-lo] = int(xo)
				}
			}
			xo += a
		}
		return idx
	}
	xs, ys := index(im.W, outW, win.X0, win.W), index(im.H, outH, win.Y0, win.H)
	c := im.C
	if im.Is8Bit() {
		out := Image{C: c, H: win.H, W: win.W, Pix8: make([]uint8, win.H*win.W*c)}
		for yy := 0; yy < win.H; yy++ {
			sy := ys[yy]
			for xx := 0; xx < win.W; xx++ {
				sx := xs[xx]
				if sx < 0 || sx >= im.W || sy < 0 || sy >= im.H {
					continue
				}
				copy(out.Pix8[(yy*win.W+xx)*c:(yy*win.W+xx+1)*c], im.Pix8[(sy*im.W+sx)*c:(sy*im.W+sx+1)*c])
			}
		}
		return out
	}
	out := Image{C: c, H: win.H, W: win.W, Pix: make([]float32, c*win.H*win.W)}
	for ch := 0; ch < c; ch++ {
		for yy := 0; yy < win.H; yy++ {
			sy := ys[yy]
			for xx := 0; xx < win.W; xx++ {
				sx := xs[xx]
				if sx < 0 || sx >= im.W || sy < 0 || sy >= im.H {
					continue
				}
				out.Pix[(ch*win.H+yy)*win.W+xx] = im.Pix[(ch*im.H+sy)*im.W+sx]
			}
		}
	}
	return out
}
