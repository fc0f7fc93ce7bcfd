package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/jpeg"
	"image/png"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
)

// Thumbnails up to ExactSide pixels a side are the model's input pixels
// themselves (PNG, scaled up by the page without smoothing); larger inputs
// are resized down to ThumbSide (Pillow's bilinear) and stored as JPEG.
const (
	ExactSide = 64
	ThumbSide = 96
)

// Images makes gallery thumbnails: each sample decoded again from its
// source by the index its score file gives, through the transform it was
// scored with (the data spec of its provenance, which carries the
// transform, and the model's input size), up to normalization. So a
// gallery shows what the model saw.
type Images struct {
	mu    sync.Mutex
	sets  map[string]*opened
	notes map[string]bool
	made  map[thumbKey]thumb
}

type thumbKey struct {
	set   string
	index int
}

type thumb struct {
	url, problem string
	w, h         int
}

type opened struct {
	src data.Source
	tf  *data.Transform
	err string
}

// NewImages is an empty thumbnail maker.
func NewImages() *Images {
	return &Images{sets: map[string]*opened{}, notes: map[string]bool{}, made: map[thumbKey]thumb{}}
}

func (im *Images) note(format string, args ...any) { im.notes[fmt.Sprintf(format, args...)] = true }

// Notes say how the thumbnails were made and which could not be.
func (im *Images) Notes() []string {
	im.mu.Lock()
	defer im.mu.Unlock()
	var out []string
	for n := range im.notes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (im *Images) open(s Set) *opened {
	if o, ok := im.sets[s.Name]; ok {
		return o
	}
	o := &opened{}
	im.sets[s.Name] = o
	m := s.Meta
	switch {
	case m == nil:
		o.err = fmt.Sprintf("%s: no provenance beside %s (%s), so the data it was scored on is unknown", s.Name, s.Scores.Path, gaia.ScoreMetaPath(s.Scores.Path))
	case len(m.Input) != 3:
		o.err = fmt.Sprintf("%s: the provenance of %s does not give the model's input size (scored by an earlier gaia: score it again to see its images)", s.Name, s.Scores.Path)
	}
	if o.err != "" {
		im.note("no images for %s", o.err)
		return o
	}
	sp, err := data.ParseSpec(m.Data)
	if err == nil {
		o.src, err = data.Open(sp)
	}
	if err == nil {
		c := m.Input[0]
		mean, std := make([]float64, c), make([]float64, c)
		for i := range std {
			std[i] = 1
		}
		o.tf, err = data.NewTransform(sp, c, m.Input[1], m.Input[2], mean, std)
	}
	if err != nil {
		o.err = fmt.Sprintf("%s: %v", s.Name, err)
		im.note("no images for %s", o.err)
		return o
	}
	if m.Input[1] > ExactSide || m.Input[2] > ExactSide {
		im.note("%s: the model's %dx%d inputs are shown resized to %d pixels (Pillow's bilinear, JPEG); smaller inputs are shown pixel for pixel", s.Name, m.Input[1], m.Input[2], ThumbSide)
	}
	return o
}

// Thumb is the data: URL of sample row of set s with its size, or why
// there is none.
func (im *Images) Thumb(s Set, row gaia.ScoreRow) (url string, w, h int, problem string) {
	key := thumbKey{s.Name, row.Index}
	im.mu.Lock()
	t, ok := im.made[key]
	im.mu.Unlock()
	if !ok {
		t.url, t.w, t.h, t.problem = im.thumb(s, row)
		im.mu.Lock()
		im.made[key] = t
		im.mu.Unlock()
	}
	return t.url, t.w, t.h, t.problem
}

func (im *Images) thumb(s Set, row gaia.ScoreRow) (url string, w, h int, problem string) {
	im.mu.Lock()
	o := im.open(s)
	im.mu.Unlock()
	if o.err != "" {
		return "", 0, 0, "no image: " + o.err
	}
	if row.Index < 0 || row.Index >= o.src.Len() {
		return "", 0, 0, fmt.Sprintf("no image: sample %d, but %s has %d now", row.Index, o.src.Describe(), o.src.Len())
	}
	img, src, _, err := o.src.Load(row.Index)
	if err != nil {
		return "", 0, 0, fmt.Sprintf("no image: %s: %v", src, err)
	}
	if src != row.Source {
		im.mu.Lock()
		im.note("%s: the data changed since it was scored (sample %d was %s, now %s)", s.Name, row.Index, row.Source, src)
		im.mu.Unlock()
		return "", 0, 0, fmt.Sprintf("no image: sample %d is now %s, not %s: the data changed since scoring", row.Index, src, row.Source)
	}
	if ext := strings.ToLower(filepath.Ext(src)); (ext == ".jpg" || ext == ".jpeg") && !data.JPEGPillowExact() {
		im.mu.Lock()
		im.note("JPEGs decoded with %s", data.JPEGDecoder())
		im.mu.Unlock()
	}
	px, err := o.tf.Pixels(img, row.Index)
	if err != nil {
		return "", 0, 0, fmt.Sprintf("no image: %s: %v", src, err)
	}
	side := 0
	if px.W > ExactSide || px.H > ExactSide {
		side = ThumbSide
	}
	t := data.Thumbnail(px, side)
	var b bytes.Buffer
	mime := "image/png"
	if side > 0 {
		mime = "image/jpeg"
		err = jpeg.Encode(&b, t, &jpeg.Options{Quality: 85})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, t)
	}
	if err != nil {
		return "", 0, 0, fmt.Sprintf("no image: %s: %v", src, err)
	}
	r := t.Bounds()
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b.Bytes()), r.Dx(), r.Dy(), ""
}
