package serve

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

var fuzzTypes = []string{"image/png", "image/jpeg", "application/json", "multipart/form-data; boundary=B", "text/plain"}

func fuzzDecoder(t testing.TB) *decoder {
	return &decoder{shape: shape{3, 8, 8}, maxInputs: 4}
}

// FuzzDecode feeds arbitrary bodies to the request decoder: it must never
// panic, and it either fails with a client error or returns exactly n inputs:
// non-empty encoded images (which the library decodes, fuzzed in package
// data) or tensors of the model's size with finite values.
func FuzzDecode(f *testing.F) {
	im := image.NewRGBA(image.Rect(0, 0, 5, 7))
	for i := range im.Pix {
		im.Pix[i] = uint8(i * 37)
	}
	var p, j bytes.Buffer
	_ = png.Encode(&p, im)
	_ = jpeg.Encode(&j, im, nil)
	gray := image.NewGray(image.Rect(0, 0, 3, 3))
	gray.SetGray(1, 1, color.Gray{200})
	var g bytes.Buffer
	_ = png.Encode(&g, gray)
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.SetBoundary("B")
	w, _ := mw.CreateFormFile("a", "a.png")
	_, _ = w.Write(p.Bytes())
	w, _ = mw.CreateFormFile("b", "b.jpg")
	_, _ = w.Write(j.Bytes())
	_ = mw.Close()
	f.Add(uint8(0), p.Bytes())
	f.Add(uint8(0), g.Bytes())
	f.Add(uint8(1), j.Bytes())
	f.Add(uint8(3), mp.Bytes())
	f.Add(uint8(2), []byte(`{"inputs": [[`+strings.TrimSuffix(strings.Repeat("0.5,", 192), ",")+`]]}`))
	f.Add(uint8(2), []byte(`{"inputs": [[[[1]]]]}`))
	f.Add(uint8(4), []byte("hello"))
	d := fuzzDecoder(f)
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		ctype := fuzzTypes[int(kind)%len(fuzzTypes)]
		in, err := d.decode(ctype, body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status >= 500 {
				t.Fatalf("error %v is not a client error", err)
			}
			return
		}
		if in.n <= 0 || in.n > d.maxInputs || len(in.names) != in.n {
			t.Fatalf("%d inputs, %d names", in.n, len(in.names))
		}
		if in.images != nil {
			if len(in.images) != in.n {
				t.Fatalf("%d inputs, %d images", in.n, len(in.images))
			}
			for i, im := range in.images {
				if len(im) == 0 {
					t.Fatalf("image %d is empty", i)
				}
			}
			return
		}
		if len(in.x) != in.n*d.shape.size() {
			t.Fatalf("%d inputs, %d values", in.n, len(in.x))
		}
		for i, v := range in.x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("value %d is %v", i, v)
			}
		}
	})
}

func TestDecodeErrorsAreClientErrors(t *testing.T) {
	d := fuzzDecoder(t)
	_, err := d.decode("multipart/form-data", []byte("x"))
	var re *requestError
	if !errors.As(err, &re) || re.status != http.StatusBadRequest || !strings.Contains(err.Error(), "boundary") {
		t.Fatalf("got %v", err)
	}
}
