// Package scorefile writes score files whole or not at all, with their
// provenance sidecar (gaia.ScoreFile reads them).
package scorefile

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/outfile"
)

// Writer writes a score file whole or not at all (an Output: see its
// rules), with its provenance sidecar when WithSidecar is asked for: both go
// to temporary files, which Commit syncs and renames, the sidecar first and
// the score file last, so that a score file is never without its sidecar.
type Writer struct {
	path    string
	out     *outfile.Output
	sidecar *outfile.Output
	w       *csv.Writer
	bw      *bufio.Writer
	n       int
	dets    int
	nan     []int // NaN scores per detector
}

// Create starts a score file at path ("-" writes to out instead,
// not atomically). The path is checked, and its temporary created, now:
// before any scoring.
func Create(path string, detectors []string, out io.Writer) (*Writer, error) {
	return CreateContext(context.Background(), path, detectors, out)
}

// CreateContext is Create whose waits on a FIFO end with ctx (outfile.CreateContext).
func CreateContext(ctx context.Context, path string, detectors []string, out io.Writer) (*Writer, error) {
	sw := &Writer{path: path, dets: len(detectors)}
	if path == "-" {
		sw.bw = bufio.NewWriter(out)
	} else {
		o, err := outfile.CreateContext(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("score file %w", err)
		}
		sw.out = o
		sw.bw = bufio.NewWriterSize(o, 1<<16)
	}
	sw.w = csv.NewWriter(sw.bw)
	if err := sw.w.Write(gaia.ScoreHeader(detectors)); err != nil {
		sw.Abort()
		return nil, fmt.Errorf("score file %s: %w", path, err)
	}
	return sw, nil
}

// WithSidecar creates the temporary of the score file's provenance sidecar
// (ScoreMetaPath) now, so that its folder and path are checked before
// scoring; Commit then needs its contents. Without a file (path "-", a
// device or a FIFO) it does nothing.
func (sw *Writer) WithSidecar() error {
	if sw.out == nil || sw.out.Direct() {
		return nil
	}
	o, err := outfile.Create(gaia.ScoreMetaPath(sw.out.Final()))
	if err != nil {
		sw.Abort()
		return fmt.Errorf("provenance of score file %s: %w", sw.path, err)
	}
	sw.sidecar = o
	return nil
}

func formatScore(v float64) string {
	return strconv.FormatFloat(v, 'g', 9, 64)
}

// Append writes rows.
func (sw *Writer) Append(rows []gaia.ScoreRow) error {
	rec := make([]string, 4+sw.dets)
	for _, r := range rows {
		if len(r.Scores) != sw.dets {
			return fmt.Errorf("score file %s: row %d has %d scores for %d detectors", sw.path, r.Index, len(r.Scores), sw.dets)
		}
		rec[0] = strconv.Itoa(r.Index)
		rec[1] = r.Source
		rec[2] = ""
		if r.Label >= 0 {
			rec[2] = strconv.Itoa(r.Label)
		}
		rec[3] = strconv.Itoa(r.Pred)
		for i, v := range r.Scores {
			rec[4+i] = formatScore(v)
			if math.IsNaN(v) {
				if sw.nan == nil {
					sw.nan = make([]int, sw.dets)
				}
				sw.nan[i]++
			}
		}
		if err := sw.w.Write(rec); err != nil {
			return fmt.Errorf("score file %s: %w", sw.path, err)
		}
		sw.n++
	}
	return nil
}

// NaNs is the number of NaN scores written per detector (nil: none).
func (sw *Writer) NaNs() []int { return sw.nan }

// Rows is the number of rows written so far.
func (sw *Writer) Rows() int { return sw.n }

// Commit finishes the file and moves it into place (with its sidecar's
// contents when WithSidecar was asked for: the sidecar lands first).
func (sw *Writer) Commit() error { return sw.CommitWith(nil) }

// CommitWith is Commit with the sidecar's contents.
func (sw *Writer) CommitWith(sidecar []byte) error {
	fail := func(err error) error {
		sw.Abort()
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	sw.w.Flush()
	if err := sw.w.Error(); err != nil {
		return fail(err)
	}
	if err := sw.bw.Flush(); err != nil {
		return fail(err)
	}
	if sw.out == nil {
		return nil
	}
	outs := []*outfile.Output{sw.out}
	if sw.sidecar != nil {
		if sidecar == nil {
			return fail(errors.New("its provenance sidecar has no contents"))
		}
		if _, err := sw.sidecar.Write(sidecar); err != nil {
			return fail(fmt.Errorf("provenance %s: %w", sw.sidecar.Path, err))
		}
		outs = []*outfile.Output{sw.sidecar, sw.out}
	}
	if err := outfile.Commit(outs...); err != nil {
		sw.out, sw.sidecar = nil, nil
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	sw.out, sw.sidecar = nil, nil
	return nil
}

// Abort drops the temporary files; the final paths are untouched.
func (sw *Writer) Abort() {
	sw.out.Abort()
	sw.sidecar.Abort()
	sw.out, sw.sidecar = nil, nil
}
