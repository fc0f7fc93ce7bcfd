package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// requestError is a client's mistake: its status and a message naming the
// input at fault.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// shape is the model input a request must fill.
type shape struct{ c, h, w int }

func (s shape) size() int { return s.c * s.h * s.w }

// decoder turns request bodies into the library's inputs: encoded images
// (which gaia.Model.ScoreImages decodes) or tensors.
type decoder struct {
	shape     shape
	maxInputs int
}

// inputs are a request's inputs: images, or n tensors in x.
type inputs struct {
	images    [][]byte
	x         []float32
	n         int
	names     []string // multipart file names ("" where none)
	multipart bool
}

// what names input i in an error message.
func (in *inputs) what(i int) string {
	if !in.multipart {
		return "the image"
	}
	return fmt.Sprintf("part %d (%q)", i, in.names[i])
}

// decode reads a request body according to its Content-Type: one PNG or
// JPEG image, several as multipart/form-data, or a JSON batch of tensors.
func (d *decoder) decode(contentType string, raw []byte) (*inputs, error) {
	body := bytes.NewReader(raw)
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, &requestError{http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q: want image/png, image/jpeg, multipart/form-data or application/json", contentType)}
	}
	switch {
	case mt == "image/png" || mt == "image/jpeg" || mt == "application/octet-stream":
		if len(raw) == 0 {
			return nil, badRequest("the image is empty")
		}
		return &inputs{images: [][]byte{raw}, n: 1, names: []string{""}}, nil
	case mt == "multipart/form-data":
		return d.multipart(body, params["boundary"])
	case mt == "application/json":
		return d.json(body)
	}
	return nil, &requestError{http.StatusUnsupportedMediaType,
		fmt.Sprintf("Content-Type %q: want image/png, image/jpeg, multipart/form-data or application/json", mt)}
}

func (d *decoder) multipart(body io.Reader, boundary string) (*inputs, error) {
	if boundary == "" {
		return nil, badRequest("multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	in := &inputs{multipart: true}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, passThrough(err, "multipart body: %v", err)
		}
		name := p.FileName()
		if name == "" {
			name = p.FormName()
		}
		if in.n == d.maxInputs {
			return nil, &requestError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("more than %d inputs in one request", d.maxInputs)}
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			return nil, passThrough(err, "part %d (%q): %v", in.n, name, err)
		}
		if len(raw) == 0 {
			return nil, badRequest("part %d (%q) is empty", in.n, name)
		}
		in.images = append(in.images, raw)
		in.names = append(in.names, name)
		in.n++
	}
	if in.n == 0 {
		return nil, badRequest("multipart body has no parts")
	}
	return in, nil
}

// jsonBatch is the JSON request: {"inputs": [x0, x1, ...]}, each x the
// model's input tensor (already normalized) as C x H x W nested arrays or
// one flat array of C*H*W numbers.
type jsonBatch struct {
	Inputs []json.RawMessage `json:"inputs"`
}

func (d *decoder) json(body io.Reader) (*inputs, error) {
	var b jsonBatch
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, passThrough(err, `JSON body: %v (want {"inputs": [[...], ...]})`, err)
	}
	if dec.More() {
		return nil, badRequest("JSON body: more than one value")
	}
	if len(b.Inputs) == 0 {
		return nil, badRequest(`JSON body: "inputs" is missing or empty`)
	}
	if len(b.Inputs) > d.maxInputs {
		return nil, &requestError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%d inputs in one request, at most %d", len(b.Inputs), d.maxInputs)}
	}
	size := d.shape.size()
	in := &inputs{x: make([]float32, 0, len(b.Inputs)*size), n: len(b.Inputs), names: make([]string, len(b.Inputs))}
	want := []int{d.shape.c, d.shape.h, d.shape.w}
	for i, raw := range b.Inputs {
		var v any
		dc := json.NewDecoder(bytes.NewReader(raw))
		dc.UseNumber()
		if err := dc.Decode(&v); err != nil {
			return nil, badRequest("inputs[%d]: %v", i, err)
		}
		before := len(in.x)
		var err error
		if flat, ok := v.([]any); ok && len(flat) > 0 && !isArray(flat[0]) {
			if len(flat) != size {
				return nil, badRequest("inputs[%d] has %d numbers, the model takes %dx%dx%d = %d", i, len(flat), want[0], want[1], want[2], size)
			}
			in.x, err = appendNumbers(in.x, flat, fmt.Sprintf("inputs[%d]", i))
		} else {
			in.x, err = appendNested(in.x, v, want, fmt.Sprintf("inputs[%d]", i))
		}
		if err != nil {
			return nil, err
		}
		if len(in.x)-before != size {
			return nil, badRequest("inputs[%d] has %d numbers, the model takes %d", i, len(in.x)-before, size)
		}
	}
	return in, nil
}

func isArray(v any) bool { _, ok := v.([]any); return ok }

func appendNumbers(dst []float32, vs []any, path string) ([]float32, error) {
	for k, e := range vs {
		num, ok := e.(json.Number)
		if !ok {
			return nil, badRequest("%s[%d] is not a number", path, k)
		}
		f, err := num.Float64()
		if err != nil || f > 3.4e38 || f < -3.4e38 {
			return nil, badRequest("%s[%d] = %s is not a float32", path, k, num)
		}
		dst = append(dst, float32(f))
	}
	return dst, nil
}

// appendNested flattens v, which must be nested arrays of exactly the dims want.
func appendNested(dst []float32, v any, want []int, path string) ([]float32, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, badRequest("%s: want an array of %d", path, want[0])
	}
	if len(arr) != want[0] {
		return nil, badRequest("%s has %d entries, want %d (the model takes %s)", path, len(arr), want[0], dimsString(want))
	}
	if len(want) == 1 {
		return appendNumbers(dst, arr, path)
	}
	var err error
	for k, e := range arr {
		if dst, err = appendNested(dst, e, want[1:], fmt.Sprintf("%s[%d]", path, k)); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func dimsString(d []int) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, "x")
}

// passThrough keeps a body-size error as it is (it becomes a 413) and makes
// anything else a 400.
func passThrough(err error, format string, args ...any) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return err
	}
	return badRequest(format, args...)
}
