package gaia

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
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

// ScoreWriter writes a score file atomically: rows go to a temporary file in
// the same folder, which Commit flushes, syncs and renames into place, so an
// interrupted run never leaves a partial file under the final name.
type ScoreWriter struct {
	path string
	tmp  *os.File
	w    *csv.Writer
	bw   *bufio.Writer
	n    int
	dets int
}

// CreateScoreWriter starts a score file at path ("-" writes to out instead,
// not atomically).
func CreateScoreWriter(path string, detectors []string, out io.Writer) (*ScoreWriter, error) {
	sw := &ScoreWriter{path: path, dets: len(detectors)}
	if path == "-" {
		sw.bw = bufio.NewWriter(out)
	} else {
		dir := filepath.Dir(path)
		f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
		if err != nil {
			return nil, fmt.Errorf("score file %s: %w", path, err)
		}
		sw.tmp = f
		sw.bw = bufio.NewWriterSize(f, 1<<16)
	}
	sw.w = csv.NewWriter(sw.bw)
	if err := sw.w.Write(append(append([]string(nil), scoreHeader...), detectors...)); err != nil {
		sw.Abort()
		return nil, fmt.Errorf("score file %s: %w", path, err)
	}
	return sw, nil
}

func formatScore(v float64) string {
	return strconv.FormatFloat(v, 'g', 9, 64)
}

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
		}
		if err := sw.w.Write(rec); err != nil {
			return fmt.Errorf("score file %s: %w", sw.path, err)
		}
		sw.n++
	}
	return nil
}

// Rows is the number of rows written so far.
func (sw *ScoreWriter) Rows() int { return sw.n }

// Commit finishes the file and moves it into place.
func (sw *ScoreWriter) Commit() error {
	sw.w.Flush()
	if err := sw.w.Error(); err != nil {
		sw.Abort()
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	if err := sw.bw.Flush(); err != nil {
		sw.Abort()
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	if sw.tmp == nil {
		return nil
	}
	if err := sw.tmp.Sync(); err != nil {
		sw.Abort()
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	if err := sw.tmp.Close(); err != nil {
		os.Remove(sw.tmp.Name())
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	if err := os.Rename(sw.tmp.Name(), sw.path); err != nil {
		os.Remove(sw.tmp.Name())
		return fmt.Errorf("score file %s: %w", sw.path, err)
	}
	sw.tmp = nil
	return nil
}

// Abort drops the temporary file; the final path is untouched.
func (sw *ScoreWriter) Abort() {
	if sw.tmp != nil {
		sw.tmp.Close()
		os.Remove(sw.tmp.Name())
		sw.tmp = nil
	}
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
			if row.Scores[i], err = strconv.ParseFloat(v, 64); err != nil || math.IsNaN(row.Scores[i]) {
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
