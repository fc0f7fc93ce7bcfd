package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/gaia/report"
	"github.com/gaia-ood/gaia/internal/outfile"
)

// runReport makes report.html (and its plots) from score files and their
// provenance, without a model: it needs no LibTorch.
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	id := fs.String("id", "", "the in-distribution score `file`, or NAME=FILE")
	var oods multiFlag
	fs.Var(&oods, "ood", "an OOD score file as `NAME=FILE` (repeat for several sets)")
	out := fs.String("out", "", "the report `folder`: report.html, roc-*.png, hist-*.png")
	gallery := fs.Int("gallery", report.DefaultGallery, "images per gallery (`K`; 0: no galleries)")
	dets := fs.String("detectors", "", "the detectors to show, comma-separated (default: every one of the score files)")
	title := fs.String("title", "", "the page's title (default: the sets' names)")
	protocol := fs.String("protocol", "", "a line on the protocol the scores follow")
	quiet := fs.Bool("quiet", false, "print nothing but errors")
	var ef evalFlags
	ef.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || len(oods) == 0 || *out == "" {
		return usagef("report: -id, at least one -ood NAME=FILE and -out DIR are required")
	}
	evalOpt, err := ef.options("report")
	if err != nil {
		return err
	}
	if *gallery < 0 {
		return usagef("report: -gallery %d: want 0 or more", *gallery)
	}
	idName, idPath, ok := strings.Cut(*id, "=")
	if !ok {
		idName, idPath = strings.TrimSuffix(filepath.Base(*id), ".csv"), *id
	}
	in := report.Input{Title: *title, Protocol: *protocol, Gallery: *gallery, Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Eval: evalOpt}
	if *gallery == 0 {
		in.Gallery = -1
	}
	if in.ID, err = readReportSet(idName, idPath, stderr); err != nil {
		return err
	}
	named, err := namedFiles("report", oods, idName)
	if err != nil {
		return err
	}
	for _, o := range named {
		s, err := readReportSet(o.name, o.path, stderr)
		if err != nil {
			return err
		}
		in.OOD = append(in.OOD, s)
	}
	if *dets != "" {
		in.Detectors = strings.Split(*dets, ",")
	}
	in.Setup = provenanceSetup(in)
	page, err := report.Build(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("report folder: %w", err)
	}
	for _, f := range append(page.ROC, page.Hist...) {
		if err := outfile.WriteFile(filepath.Join(*out, f.File), f.PNG); err != nil {
			return err
		}
	}
	html, err := report.HTML(page)
	if err != nil {
		return err
	}
	path := filepath.Join(*out, "report.html")
	if err := outfile.WriteFile(path, html); err != nil {
		return err
	}
	if !*quiet {
		for _, n := range page.Notes {
			fmt.Fprintf(stderr, "note: %s\n", n)
		}
		fmt.Fprintf(stderr, "report: %s\n", path)
	}
	return nil
}

// readReportSet reads a score file and its provenance (FILE.json); without
// one the page has the scores but not the images, and says so.
func readReportSet(name, path string, stderr io.Writer) (report.Set, error) {
	sf, err := gaia.ReadScoreFile(path)
	if err != nil {
		return report.Set{}, err
	}
	s := report.Set{Name: name, Scores: sf}
	if meta, err := gaia.ReadScoreMeta(path); err == nil {
		s.Meta = meta
	} else if !errors.Is(err, fs.ErrNotExist) {
		return report.Set{}, fmt.Errorf("set %s: %w", name, err)
	} else {
		fmt.Fprintf(stderr, "warning: set %s: no provenance %s: its images and setup are not shown\n", name, gaia.ScoreMetaPath(path))
	}
	return s, nil
}

// provenanceSetup is the setup a report can tell from the score files'
// provenance: model, data, detectors, settings, fit, device, versions.
func provenanceSetup(in report.Input) [][2]string {
	var items [][2]string
	m := in.ID.Meta
	if m != nil {
		arch := ""
		if m.Arch != "" {
			arch = fmt.Sprintf(" (%s, input %s)", m.Arch, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(m.Input)), "x"), "[]"))
		}
		items = append(items, [2]string{"Model", m.Model + arch}, [2]string{"Model SHA-256", m.ModelSHA256})
	}
	for _, s := range append([]report.Set{in.ID}, in.OOD...) {
		v := fmt.Sprintf("%s (%d samples; no provenance)", s.Scores.Path, len(s.Scores.Rows))
		if s.Meta != nil {
			v = fmt.Sprintf("%s: %d samples, scored %s on %s", s.Meta.Data, len(s.Scores.Rows), s.Meta.Created, s.Meta.Device)
			if m != nil && s.Meta.ModelSHA256 != m.ModelSHA256 {
				v += fmt.Sprintf("; NOT by the model of %s (sha256 %.12s)", in.ID.Name, s.Meta.ModelSHA256)
			}
		}
		items = append(items, [2]string{s.Name, v})
	}
	if acc, n, ok := in.ID.Scores.Accuracy(); ok {
		items = append(items, [2]string{"Accuracy on " + in.ID.Name, fmt.Sprintf("%.2f%% (%d labelled images)", 100*acc, n)})
	}
	if m != nil {
		items = append(items, [2]string{"Detectors", fmt.Sprintf("%s; settings: %s", strings.Join(m.Detectors, ", "), m.Settings.Canonical())})
		if m.Fit != nil {
			items = append(items, [2]string{"Fit of the feature-based detectors", fmt.Sprintf("%s (sha256 %s)", m.Fit.Path, m.Fit.SHA256)})
		}
		items = append(items, [2]string{"LibTorch", fmt.Sprintf("%s on %s", m.LibTorch, m.Device)})
	}
	items = append(items, [2]string{"Report", fmt.Sprintf("gaia report (gaia %s, %s, %s/%s); thumbnails' JPEG decoding: %s", gaia.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, data.JPEGDecoder())})
	return items
}
