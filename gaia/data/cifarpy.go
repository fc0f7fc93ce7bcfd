package data

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// cifarPy is CIFAR-10 or CIFAR-100 in the python version torchvision
// downloads (cifar-10-batches-py, cifar-100-python): pickled dicts whose
// "data" is an N x 3072 uint8 array (R, G and B planes of 32 x 32) and whose
// labels are a list ("labels"; CIFAR-100's "fine_labels"), read by the
// restricted unpickler (pickle.go), held in memory.
type cifarPy struct {
	desc   string
	files  []string
	pix    [][]byte // per file: N x 3072
	labels []int
	starts []int // index of each file's first sample
	n      int
}

// openCIFARPy opens DIR of the python version: the test split by default
// (cifar-10: test_batch; cifar-100: test), split=train for the training
// split (data_batch_1..5; train). DIR may be the folder torchvision's root
// holds it in, or the batches folder itself.
func openCIFARPy(dir string, hundred bool, split string) (Source, error) {
	kind, sub := "cifar10-py", "cifar-10-batches-py"
	names := map[string][]string{"test": {"test_batch"}, "train": {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"}}
	labelKey := "labels"
	if hundred {
		kind, sub = "cifar100-py", "cifar-100-python"
		names = map[string][]string{"test": {"test"}, "train": {"train"}}
		labelKey = "fine_labels"
	}
	if split == "" {
		split = "test"
	}
	files, ok := names[split]
	if !ok {
		return nil, fmt.Errorf("%s: split=%q: want test or train", kind, split)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: %s is not a folder: give the folder holding %s (or %s itself), as torchvision downloads it", kind, dir, sub, sub)
	}
	if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
		dir = filepath.Join(dir, sub)
	}
	c := &cifarPy{desc: fmt.Sprintf("%s %s (%s split", kind, dir, split)}
	for _, name := range files {
		p := filepath.Join(dir, name)
		pix, labels, err := readCIFARBatch(p, labelKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		c.files = append(c.files, p)
		c.pix = append(c.pix, pix)
		c.starts = append(c.starts, c.n)
		c.labels = append(c.labels, labels...)
		c.n += len(labels)
	}
	c.desc += fmt.Sprintf(", %d images)", c.n)
	return c, nil
}

// readCIFARBatch reads one pickled batch: its pixels and labels.
func readCIFARBatch(path, labelKey string) ([]byte, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	v, err := unpickle(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a CIFAR python batch: %w", path, err)
	}
	d, ok := v.(*pyDict)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a CIFAR python batch: a pickled %T, not a dict", path, v)
	}
	arr, ok := d.vals["data"].(*pyArray)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a CIFAR python batch: no uint8 array under \"data\" (keys %s)", path, keyList(d))
	}
	if len(arr.shape) != 2 || arr.shape[1] != 3072 || arr.fortran {
		return nil, nil, fmt.Errorf("%s: \"data\" has shape %v, want N x 3072 (C order)", path, arr.shape)
	}
	raw, ok := d.vals[labelKey]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no %q list (keys %s)", path, labelKey, keyList(d))
	}
	var items []any
	switch l := raw.(type) {
	case *[]any:
		items = *l
	case []any:
		items = l
	default:
		return nil, nil, fmt.Errorf("%s: %q is a %T, not a list", path, labelKey, raw)
	}
	if len(items) != arr.shape[0] {
		return nil, nil, fmt.Errorf("%s: %d labels for %d images", path, len(items), arr.shape[0])
	}
	labels := make([]int, len(items))
	for i, it := range items {
		v, ok := it.(int64)
		if !ok || v < 0 || v > 1000 {
			return nil, nil, fmt.Errorf("%s: label %d is %v", path, i, it)
		}
		labels[i] = int(v)
	}
	return arr.data, labels, nil
}

func keyList(d *pyDict) string {
	var ks []string
	for _, k := range d.keys {
		ks = append(ks, fmt.Sprint(k))
	}
	return strings.Join(ks, ", ")
}

func (c *cifarPy) Len() int         { return c.n }
func (c *cifarPy) Describe() string { return c.desc }

func (c *cifarPy) Load(i int) (Image, string, int, error) {
	f := len(c.starts) - 1
	for f > 0 && c.starts[f] > i {
		f--
	}
	j := i - c.starts[f]
	src := fmt.Sprintf("%s#%d", c.files[f], j)
	rec := c.pix[f][j*3072 : (j+1)*3072]
	img := Image{C: 3, H: 32, W: 32, Pix8: make([]uint8, 3072)}
	for k, b := range rec {
		img.Pix8[(k%1024)*3+k/1024] = b
	}
	return img, src, c.labels[i], nil
}

// fingerprint hashes what was read: pixels and labels.
func (c *cifarPy) fingerprint(w io.Writer) {
	h := sha256.New()
	for _, p := range c.pix {
		h.Write(p)
	}
	for _, l := range c.labels {
		fmt.Fprintf(h, "%d,", l)
	}
	fmt.Fprintf(w, "content=%x\n", h.Sum(nil))
}
