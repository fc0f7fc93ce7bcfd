package data

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// cifar reads the CIFAR binary version from one file, record by record.
type cifar struct {
	f          *os.File
	path       string
	labelBytes int
	n          int
}

func openCIFAR(path string, labelBytes int) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cifar: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cifar: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("cifar: %s is a folder or special file: cifar-bin: and cifar100-bin: read one CIFAR binary file (data_batch_1.bin, test_batch.bin); for a folder of images use folder:", path)
	}
	rec := int64(labelBytes + 3072)
	if st.Size() == 0 || st.Size()%rec != 0 {
		f.Close()
		return nil, fmt.Errorf("cifar: %s: %d bytes is not a whole number of %d-byte records", path, st.Size(), rec)
	}
	return &cifar{f: f, path: path, labelBytes: labelBytes, n: int(st.Size() / rec)}, nil
}

func (c *cifar) Len() int { return c.n }

func (c *cifar) Describe() string {
	return fmt.Sprintf("CIFAR binary %s (%d images)", c.path, c.n)
}

func (c *cifar) Load(i int) (Image, string, int, error) {
	rec := c.labelBytes + 3072
	buf := make([]byte, rec)
	src := fmt.Sprintf("%s#%d", c.path, i)
	if _, err := c.f.ReadAt(buf, int64(i)*int64(rec)); err != nil {
		return Image{}, src, -1, fmt.Errorf("%s: %w", src, err)
	}
	// Planar R, G, B planes of 32 x 32 bytes, to interleaved pixels.
	img := Image{C: 3, H: 32, W: 32, Pix8: make([]uint8, 3072)}
	for j, b := range buf[c.labelBytes:] {
		img.Pix8[(j%1024)*3+j/1024] = b
	}
	return img, src, int(buf[c.labelBytes-1]), nil
}

// idx reads MNIST-style idx files (magic 0x00000803 images, 0x00000801 labels).
type idx struct {
	path   string
	n      int
	h, w   int
	pix    []byte
	labels []byte
}

// maxIdxBytes bounds what an idx file's header may declare.
const maxIdxBytes = 8 << 30

// readIdx reads an idx file (gzip or not) whose header of dims 32-bit
// dimensions follows its magic: no further than the size its header
// declares plus one byte, so a small file that inflates to gigabytes (a
// gzip bomb) is refused after reading what it declares, not all it holds.
func readIdx(path string, magic uint32, dims int, what string) ([]byte, []int, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	head := make([]byte, 4+4*dims)
	peek, _ := r.(*bufio.Reader).Peek(2)
	gz := len(peek) == 2 && peek[0] == 0x1f && peek[1] == 0x8b
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, nil, fmt.Errorf("%s is not an idx %s file: %d-byte header: %w", path, what, len(head), err)
	}
	if got := binary.BigEndian.Uint32(head); got != magic {
		return nil, nil, fmt.Errorf("%s is not an idx %s file: magic 0x%08x, want 0x%08x", path, what, got, magic)
	}
	shape := make([]int, dims)
	size := int64(1)
	for i := range shape {
		shape[i] = int(binary.BigEndian.Uint32(head[4+4*i:]))
		size *= int64(shape[i])
		if shape[i] <= 0 || size > maxIdxBytes {
			return nil, nil, fmt.Errorf("%s: header declares %v: %s", path, shape[:i+1], "not a size an idx file can have")
		}
	}
	body, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: corrupt %s: %w", path, map[bool]string{true: "gzip", false: "file"}[gz], err)
	}
	if int64(len(body)) != size {
		more := ""
		if int64(len(body)) > size {
			more = " or more"
		}
		return nil, nil, fmt.Errorf("%s: header says %v, the file holds %d%s bytes after it", path, shape, len(body), more)
	}
	return body, shape, nil
}

// openRegular opens a file for reading, refusing anything but a regular
// file (a FIFO would block the read forever) before reading from it.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	return f, nil
}

// readRegular is os.ReadFile for regular files alone (openRegular).
func readRegular(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func openMNIST(path string) (Source, error) {
	pix, shape, err := readIdx(path, 0x803, 3, "images")
	if err != nil {
		return nil, fmt.Errorf("mnist: %w", err)
	}
	n, h, w := shape[0], shape[1], shape[2]
	s := &idx{path: path, n: n, h: h, w: w, pix: pix}
	// The labels file beside it, if present: ...-images-idx3-ubyte -> ...-labels-idx1-ubyte.
	// Gzipped or not, whichever is there.
	if lp := strings.Replace(strings.TrimSuffix(path, ".gz"), "images-idx3", "labels-idx1", 1); lp != strings.TrimSuffix(path, ".gz") {
		for _, cand := range []string{lp, lp + ".gz"} {
			if _, err := os.Stat(cand); err != nil {
				continue
			}
			labels, lshape, err := readIdx(cand, 0x801, 1, "labels")
			if err != nil {
				return nil, fmt.Errorf("mnist: labels: %w", err)
			}
			if lshape[0] != n {
				return nil, fmt.Errorf("mnist: labels %s are for %d images, %s holds %d", cand, lshape[0], path, n)
			}
			s.labels = labels
			break
		}
	}
	return s, nil
}

func (s *idx) Len() int { return s.n }

func (s *idx) Describe() string {
	return fmt.Sprintf("idx %s (%d images %dx%d)", s.path, s.n, s.h, s.w)
}

func (s *idx) Load(i int) (Image, string, int, error) {
	sz := s.h * s.w
	img := Image{C: 1, H: s.h, W: s.w, Pix8: append([]uint8(nil), s.pix[i*sz:(i+1)*sz]...)}
	label := -1
	if s.labels != nil {
		label = int(s.labels[i])
	}
	return img, fmt.Sprintf("%s#%d", s.path, i), label, nil
}

// files is a list of image files with labels: folders and list files.
type files struct {
	desc   string
	paths  []string
	labels []int
}

func (f *files) Len() int { return len(f.paths) }

// Describe names the files; a build whose JPEG decoder is not Pillow's
// says so.
func (f *files) Describe() string {
	if !JPEGPillowExact() {
		return f.desc + " [JPEGs: " + JPEGDecoder() + "]"
	}
	return f.desc
}

func (f *files) Load(i int) (Image, string, int, error) {
	img, err := DecodeFile(f.paths[i])
	return img, f.paths[i], f.labels[i], err
}

// LoadWith loads sample i for a transform within limits (DecodeFor).
func (f *files) LoadWith(ctx context.Context, i int, t *Transform, lim Limits) (Image, string, int, error) {
	p := f.paths[i]
	raw, err := readRegular(p)
	if err != nil {
		return Image{}, p, f.labels[i], err
	}
	img, err := DecodeFor(ctx, raw, t, lim)
	if err != nil {
		return Image{}, p, f.labels[i], fmt.Errorf("%s: %w", p, err)
	}
	return img, p, f.labels[i], nil
}

func isImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

func openFolder(dir string) (Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("folder: %w", err)
	}
	f := &files{}
	var classes []string
	special := 0 // image names that are FIFOs, devices or sockets: reading one would block or never end
	regular := func(p string, d os.DirEntry) bool {
		if d.Type().IsRegular() {
			return true
		}
		if d.Type()&os.ModeSymlink != 0 {
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return true
			}
		}
		special++
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			classes = append(classes, e.Name())
		} else if p := filepath.Join(dir, e.Name()); isImageFile(e.Name()) && regular(p, e) {
			f.paths = append(f.paths, p)
			f.labels = append(f.labels, -1)
		}
	}
	sort.Strings(classes)
	for label, c := range classes {
		sub := filepath.Join(dir, c)
		err := filepath.WalkDir(sub, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && isImageFile(p) && regular(p, d) {
				f.paths = append(f.paths, p)
				f.labels = append(f.labels, label)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("folder: %w", err)
		}
	}
	skipped := ""
	if special > 0 {
		skipped = fmt.Sprintf("; %d image names that are not regular files (FIFOs, devices) skipped", special)
	}
	if len(f.paths) == 0 {
		return nil, fmt.Errorf("folder: %s holds no PNG or JPEG image%s", dir, skipped)
	}
	if len(classes) > 0 {
		f.desc = fmt.Sprintf("folder %s (%d images, %d classes%s)", dir, len(f.paths), len(classes), skipped)
	} else {
		f.desc = fmt.Sprintf("folder %s (%d images%s)", dir, len(f.paths), skipped)
	}
	return f, nil
}

func openList(path, root string, outside bool) (Source, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	defer fh.Close()
	if root == "" {
		root = filepath.Dir(path)
	}
	f := &files{}
	sc := bufio.NewScanner(fh)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		fields := strings.Fields(t)
		label := -1
		if len(fields) > 1 {
			l, err := strconv.Atoi(fields[len(fields)-1])
			if err != nil {
				return nil, fmt.Errorf("list: %s:%d: label %q is not a number", path, line, fields[len(fields)-1])
			}
			label = l
			fields = fields[:len(fields)-1]
		}
		p := strings.Join(fields, " ")
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		if rel, err := filepath.Rel(root, p); !outside && (err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator))) {
			return nil, fmt.Errorf("list: %s:%d: %q is outside the list's root %s (add outside-root to the data spec to allow it)", path, line, strings.Join(fields, " "), root)
		}
		f.paths = append(f.paths, p)
		f.labels = append(f.labels, label)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list: %s: %w", path, err)
	}
	if len(f.paths) == 0 {
		return nil, fmt.Errorf("list: %s names no image", path)
	}
	f.desc = fmt.Sprintf("list %s (%d images)", path, len(f.paths))
	return f, nil
}

// noise is a seeded set of uniform or Gaussian images; sample i is drawn from
// its own generator (seed, i), so it does not depend on decoding order.
type noise struct {
	kind    string
	n       int
	c, h, w int
	seed    int64
}

func openNoise(sp *Spec) (Source, error) {
	if sp.Arg != "uniform" && sp.Arg != "gaussian" {
		return nil, fmt.Errorf("data spec %q: noise is uniform or gaussian, not %q", sp.Raw, sp.Arg)
	}
	n, err := sp.intOption("n", 1000)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("data spec %q: n must be positive", sp.Raw)
	}
	seed, err := sp.intOption("seed", 1)
	if err != nil {
		return nil, err
	}
	shape, ok := sp.Options["shape"]
	if !ok {
		return nil, fmt.Errorf("data spec %q: noise needs shape=CxHxW", sp.Raw)
	}
	f := strings.Split(shape, "x")
	if len(f) != 3 {
		return nil, fmt.Errorf("data spec %q: shape=%q: want CxHxW", sp.Raw, shape)
	}
	var d [3]int
	for i, v := range f {
		if d[i], err = strconv.Atoi(v); err != nil || d[i] <= 0 {
			return nil, fmt.Errorf("data spec %q: shape=%q: want CxHxW with positive numbers", sp.Raw, shape)
		}
	}
	return &noise{kind: sp.Arg, n: n, c: d[0], h: d[1], w: d[2], seed: int64(seed)}, nil
}

func (s *noise) Len() int { return s.n }

func (s *noise) Describe() string {
	return fmt.Sprintf("%s noise (%d images %dx%dx%d, seed %d)", s.kind, s.n, s.c, s.h, s.w, s.seed)
}

func (s *noise) Load(i int) (Image, string, int, error) {
	rng := rand.New(rand.NewSource(s.seed*1_000_003 + int64(i)))
	img := Image{C: s.c, H: s.h, W: s.w, Pix: make([]float32, s.c*s.h*s.w)}
	for j := range img.Pix {
		if s.kind == "uniform" {
			img.Pix[j] = rng.Float32()
		} else {
			img.Pix[j] = float32(math.Min(1, math.Max(0, 0.5+0.25*rng.NormFloat64())))
		}
	}
	return img, fmt.Sprintf("%s-noise#%d", s.kind, i), -1, nil
}
