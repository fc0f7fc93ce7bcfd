package gaia

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// ScoreRow is one sample's line of a score file.
type ScoreRow struct {
	Index  int
	Source string
	Label  int // -1 when unknown
	Pred   int
	Scores []float64 // one per detector, higher = more OOD
}

// ScoreFile is a whole score file: header `index,source,label,pred,<detector>...`.
type ScoreFile struct {
	Path      string
	Detectors []string
	Rows      []ScoreRow
}

var scoreHeader = []string{"index", "source", "label", "pred"}

// ScoreWriter writes a score file whole or not at all (an Output: see its
// rules), with its provenance sidecar when WithSidecar is asked for: both go
// to temporary files, which Commit syncs and renames, the sidecar first and
// the score file last, so that a score file is never without its sidecar.
type ScoreWriter struct {
	path    string
	out     *Output
	sidecar *Output
	w       *csv.Writer
	bw      *bufio.Writer
	n       int
	dets    int
	nan     []int // NaN scores per detector
}

// CreateScoreWriter starts a score file at path ("-" writes to out instead,
// not atomically). The path is checked, and its temporary created, now:
// before any scoring.
func CreateScoreWriter(path string, detectors []string, out io.Writer) (*ScoreWriter, error) {
	sw := &ScoreWriter{path: path, dets: len(detectors)}
	if path == "-" {
		sw.bw = bufio.NewWriter(out)
	} else {
		o, err := CreateOutput(path)
		if err != nil {
			return nil, fmt.Errorf("score file %w", err)
		}
		sw.out = o
		sw.bw = bufio.NewWriterSize(o.File(), 1<<16)
	}
	sw.w = csv.NewWriter(sw.bw)
	if err := sw.w.Write(append(append([]string(nil), scoreHeader...), detectors...)); err != nil {
		sw.Abort()
		return nil, fmt.Errorf("score file %s: %w", path, err)
	}
	return sw, nil
}

// WithSidecar creates the temporary of the score file's provenance sidecar
// (ScoreMetaPath) now, so that its folder and path are checked before
// scoring; Commit then needs its contents. Without a file (path "-", a
// device or a FIFO) it does nothing.
func (sw *ScoreWriter) WithSidecar() error {
	if sw.out == nil || sw.out.Direct() {
		return nil
	}
	o, err := CreateOutput(ScoreMetaPath(sw.out.final))
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

// NonFinite is what non-finite scores mean, wherever gaia reads or writes
// them. Score files write them as NaN, +Inf and -Inf (strconv's spelling;
// the reader takes any ParseFloat does), and gaia serve's JSON as the
// strings "NaN", "+Inf" and "-Inf".
//
//   - +Inf: as OOD as a score can be (GAIA-A when the output gradient o
//     vanishes: x/0, and 0/0 too).
//   - -Inf: as in-distribution as a score can be.
//   - NaN: the score could not be computed, because the model's outputs for
//     the sample were not finite (an input overflowed, a broken model).
//     eval ranks NaN as the most OOD (tied with +Inf) and counts it in the
//     table's notes and in the metrics' nan_id/nan_ood; calibrate places
//     the threshold as if NaN were +Inf; a gate never accepts NaN (serve
//     answers ood: true); score warns of them at the end of the run.
const NonFinite = "NaN is ranked as most OOD; +Inf is most OOD; -Inf is least OOD"

// Append writes rows.
func (sw *ScoreWriter) Append(rows []ScoreRow) error {
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
func (sw *ScoreWriter) NaNs() []int { return sw.nan }

// Rows is the number of rows written so far.
func (sw *ScoreWriter) Rows() int { return sw.n }

// Commit finishes the file and moves it into place (with its sidecar's
// contents when WithSidecar was asked for: the sidecar lands first).
func (sw *ScoreWriter) Commit() error { return sw.CommitWith(nil) }

// CommitWith is Commit with the sidecar's contents.
func (sw *ScoreWriter) CommitWith(sidecar []byte) error {
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
	outs := []*Output{sw.out}
	if sw.sidecar != nil {
		if sidecar == nil {
			return fail(errors.New("its provenance sidecar has no contents"))
		}
		if _, err := sw.sidecar.Write(sidecar); err != nil {
			return fail(fmt.Errorf("provenance %s: %w", sw.sidecar.Path, err))
		}
		outs = []*Output{sw.sidecar, sw.out}
	}
	if err := CommitOutputs(outs...); err != nil {
		sw.out, sw.sidecar = nil, nil
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	sw.out, sw.sidecar = nil, nil
	return nil
}

// Abort drops the temporary files; the final paths are untouched.
func (sw *ScoreWriter) Abort() {
	sw.out.Abort()
	sw.sidecar.Abort()
	sw.out, sw.sidecar = nil, nil
}

// ReadScoreFile reads a score file, checking its header and every row.
func ReadScoreFile(path string) (*ScoreFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("score file: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("score file %s: no header: %w", path, err)
	}
	if len(header) < 5 || strings.Join(header[:4], ",") != strings.Join(scoreHeader, ",") {
		return nil, fmt.Errorf("score file %s: header %q: want index,source,label,pred,<detector>...", path, strings.Join(header, ","))
	}
	sf := &ScoreFile{Path: path, Detectors: append([]string(nil), header[4:]...)}
	line := 1
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		line++
		if err != nil {
			return nil, fmt.Errorf("score file %s: %w", path, err)
		}
		row := ScoreRow{Label: -1, Scores: make([]float64, len(sf.Detectors))}
		if row.Index, err = strconv.Atoi(rec[0]); err != nil {
			return nil, fmt.Errorf("score file %s:%d: index %q", path, line, rec[0])
		}
		row.Source = rec[1]
		if rec[2] != "" {
			if row.Label, err = strconv.Atoi(rec[2]); err != nil {
				return nil, fmt.Errorf("score file %s:%d: label %q", path, line, rec[2])
			}
		}
		if row.Pred, err = strconv.Atoi(rec[3]); err != nil {
			return nil, fmt.Errorf("score file %s:%d: pred %q", path, line, rec[3])
		}
		for i, v := range rec[4:] {
			// NaN, +Inf and -Inf are scores too (NonFinite says what they mean).
			if row.Scores[i], err = strconv.ParseFloat(v, 64); err != nil {
				return nil, fmt.Errorf("score file %s:%d: %s score %q is not a number", path, line, sf.Detectors[i], v)
			}
		}
		sf.Rows = append(sf.Rows, row)
	}
	if len(sf.Rows) == 0 {
		return nil, fmt.Errorf("score file %s: no rows", path)
	}
	return sf, nil
}

// Column returns one detector's scores, or an error naming the file.
func (sf *ScoreFile) Column(detector string) ([]float64, error) {
	for i, d := range sf.Detectors {
		if d == detector {
			out := make([]float64, len(sf.Rows))
			for j, r := range sf.Rows {
				out[j] = r.Scores[i]
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("score file %s has no %s column (it has %s)", sf.Path, detector, strings.Join(sf.Detectors, ", "))
}

// Accuracy is the fraction of labelled rows whose prediction is the label;
// ok is false when no row has a label.
func (sf *ScoreFile) Accuracy() (acc float64, labelled int, ok bool) {
	right := 0
	for _, r := range sf.Rows {
		if r.Label >= 0 {
			labelled++
			if r.Pred == r.Label {
				right++
			}
		}
	}
	if labelled == 0 {
		return 0, 0, false
	}
	return float64(right) / float64(labelled), labelled, true
}
