// Package data reads image datasets for scoring: CIFAR binary files, MNIST idx
// files, image folders, image-list files and seeded noise, with the transforms
// a model needs (resize, crops, channel conversion, normalization), decoded in
// parallel and streamed in batches in bounded memory.
//
// A dataset is named by a spec, KIND:ARG[,option...]:
//
//	cifar-bin:PATH           CIFAR-10 binary version (1 label byte + 3072 pixel bytes a record)
//	cifar100-bin:PATH        CIFAR-100 binary version (coarse and fine label bytes; the fine label is used)
//	cifar10-py:DIR           CIFAR-10 python version, as torchvision downloads it (cifar-10-batches-py): test_batch, or split=train
//	cifar100-py:DIR          CIFAR-100 python version (cifar-100-python): test, or split=train; fine labels
//	svhn:FILE.mat            SVHN cropped digits (test_32x32.mat, train_32x32.mat), label 10 read as 0 as torchvision does
//	mnist:PATH               MNIST-style idx images file (gzip or not); labels from the matching labels file if present
//	folder:PATH              PNG and JPEG files; one subfolder per class gives labels (sorted names), a flat folder none
//	list:PATH                lines "relative/path label" (OpenOOD style), relative to the list's folder or root=DIR;
//	                         a path outside that root (../x, /abs) is refused unless the spec says outside-root
//	noise:uniform|gaussian   options n=COUNT, shape=CxHxW, seed=S (gaussian: mean 0.5, std 0.25, clipped to [0, 1])
//
// Options, after the first comma: resize=HxW or resize=S (S the shorter
// side, torchvision's Resize(S)), resize-filter=bilinear|bicubic|nearest
// (Pillow's filters; bilinear by default), center-crop=HxW (torchvision's
// CenterCrop, zero padding included), random-crop=HxW (seeded by seed=S and
// the sample's index), gray, rgb, draft (JPEGs decoded scaled down in the
// DCT domain before a resize: faster, not Pillow-identical), root=DIR
// (list). 8-bit images stay bytes through every transform, with Pillow's
// arithmetic; pixels are then scaled to [0, 1] and the model's mean and std
// applied, in float32, as torchvision's ToTensor and Normalize.
package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Source is a dataset with random access, so that samples decode in parallel.
type Source interface {
	Len() int
	// Load decodes sample i. Its source names it (a file, or file#record) and
	// label is -1 when unknown.
	Load(i int) (img Image, source string, label int, err error)
	// Describe names the dataset in one line for reports.
	Describe() string
}

// Spec is a parsed dataset spec.
type Spec struct {
	Kind    string
	Arg     string
	Options map[string]string
	Raw     string
}

// ParseSpec splits KIND:ARG[,key=value|flag...].
func ParseSpec(s string) (*Spec, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || kind == "" || rest == "" {
		return nil, fmt.Errorf("data spec %q: want KIND:PATH[,option...] with KIND one of %s", s, kindList)
	}
	parts := strings.Split(rest, ",")
	sp := &Spec{Kind: kind, Arg: parts[0], Options: map[string]string{}, Raw: s}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		if _, dup := sp.Options[k]; dup {
			return nil, fmt.Errorf("data spec %q: option %q given twice", s, k)
		}
		sp.Options[k] = v
	}
	return sp, nil
}

func (sp *Spec) intOption(key string, def int) (int, error) {
	v, ok := sp.Options[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("data spec %q: %s=%q is not a number", sp.Raw, key, v)
	}
	return n, nil
}

// Open opens the source a spec names. Options that are transforms are left
// for NewTransform.
func Open(sp *Spec) (Source, error) {
	known := map[string]bool{}
	for _, k := range transformKeys {
		known[k] = true
	}
	switch sp.Kind {
	case "noise":
		known["n"], known["shape"] = true, true
	case "list":
		known["root"], known["outside-root"] = true, true
	case "cifar10-py", "cifar100-py":
		known["split"] = true
	}
	for k := range sp.Options {
		if !known[k] {
			return nil, fmt.Errorf("data spec %q: unknown option %q for %s", sp.Raw, k, sp.Kind)
		}
	}
	switch sp.Kind {
	case "cifar-bin":
		return openCIFAR(sp.Arg, 1)
	case "cifar100-bin":
		return openCIFAR(sp.Arg, 2)
	case "cifar10-py":
		return openCIFARPy(sp.Arg, false, sp.Options["split"])
	case "cifar100-py":
		return openCIFARPy(sp.Arg, true, sp.Options["split"])
	case "svhn":
		return openSVHN(sp.Arg)
	case "mnist":
		return openMNIST(sp.Arg)
	case "folder":
		return openFolder(sp.Arg)
	case "list":
		_, outside := sp.Options["outside-root"]
		return openList(sp.Arg, sp.Options["root"], outside)
	case "noise":
		return openNoise(sp)
	}
	return nil, fmt.Errorf("data spec %q: unknown kind %q (want %s)", sp.Raw, sp.Kind, kindList)
}

const kindList = "cifar-bin, cifar100-bin, cifar10-py, cifar100-py, svhn, mnist, folder, list or noise"

// fingerprinter is a source that hashes its own content (the in-memory
// formats, whose path is a folder or whose size says little).
type fingerprinter interface{ fingerprint(w io.Writer) }

// parseHW reads "HxW" or a single number S (S x S).
func parseHW(v string) (int, int, error) {
	if h, w, ok := strings.Cut(v, "x"); ok {
		hh, err1 := strconv.Atoi(h)
		ww, err2 := strconv.Atoi(w)
		if err1 != nil || err2 != nil || hh <= 0 || ww <= 0 {
			return 0, 0, fmt.Errorf("%q: want HxW with positive numbers", v)
		}
		return hh, ww, nil
	}
	s, err := strconv.Atoi(v)
	if err != nil || s <= 0 {
		return 0, 0, fmt.Errorf("%q: want HxW or a positive number", v)
	}
	return s, s, nil
}

// Fingerprint identifies a dataset as a spec opens it, the same on every
// machine that sees the same data: a SHA-256 over the kind, the transform
// options, the number of samples and, for folders and lists, every file's
// path relative to the root with its label (for CIFAR and MNIST files, their
// size; noise is its spec). Shards of one job must agree on it.
func Fingerprint(sp *Spec, src Source) (string, error) {
	h := sha256.New()
	opts, err := TransformOptions(sp.Raw)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "kind=%s\ntransform=%s\nn=%d\n", sp.Kind, opts, src.Len())
	switch s := src.(type) {
	case *files:
		root := sp.Arg
		if sp.Kind == "list" {
			root = sp.Options["root"]
			if root == "" {
				root = filepath.Dir(sp.Arg)
			}
		}
		for i, p := range s.paths {
			if rel, err := filepath.Rel(root, p); err == nil {
				p = rel
			}
			fmt.Fprintf(h, "%s\t%d\n", filepath.ToSlash(p), s.labels[i])
		}
	case *noise:
		fmt.Fprintf(h, "noise=%s\n", sp.Raw)
	case fingerprinter:
		s.fingerprint(h)
	default:
		fi, err := os.Stat(sp.Arg)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "size=%d\n", fi.Size())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
