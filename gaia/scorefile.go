package gaia

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
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

// ScoreHeader is a score file's header for detectors.
func ScoreHeader(detectors []string) []string {
	return append(append([]string(nil), scoreHeader...), detectors...)
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

// ReadScoreFile reads a score file, checking its header and every row.
func ReadScoreFile(path string) (*ScoreFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("score file: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(&lineLimit{r: bufio.NewReader(f), max: MaxScoreLine})
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("score file %s: no header: %w", path, err)
	}
	if len(header) < 5 || strings.Join(header[:4], ",") != strings.Join(scoreHeader, ",") {
		return nil, fmt.Errorf("score file %s: header %q: want index,source,label,pred,<detector>...", path, strings.Join(header, ","))
	}
	sf := &ScoreFile{Path: path, Detectors: append([]string(nil), header[4:]...)}
	line := 1
	seen := map[int]int{} // index -> line
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
		if first, dup := seen[row.Index]; dup {
			return nil, fmt.Errorf("score file %s:%d: sample %d again (first on line %d): a sample counted twice would weigh twice in every metric", path, line, row.Index, first)
		}
		seen[row.Index] = line
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

// MaxScoreLine bounds a score file's line (a row has a few numbers and a
// source path): a longer one is refused when it passes the bound, before
// it is held whole.
const MaxScoreLine = 1 << 20

// lineLimit is a reader that fails once a line passes max bytes.
type lineLimit struct {
	r   io.Reader
	max int
	run int // bytes since the last newline
}

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			l.run = 0
			continue
		}
		if l.run++; l.run > l.max {
			return i, fmt.Errorf("a line of more than %d bytes", l.max)
		}
	}
	return n, err
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

// JoinScoreFiles joins score files of the same samples made by different
// runs (other detectors) into one, column by column: their rows must be the
// same samples in the same order (index and source), so that detectors from
// different runs can be compared sample for sample; a detector in two of
// them is refused.
func JoinScoreFiles(files ...*ScoreFile) (*ScoreFile, error) {
	if len(files) == 0 {
		return nil, errors.New("join: no score file")
	}
	if len(files) == 1 {
		return files[0], nil
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	out := &ScoreFile{Path: strings.Join(paths, "+")}
	seen := map[string]string{}
	for _, f := range files {
		if len(f.Rows) != len(files[0].Rows) {
			return nil, fmt.Errorf("join: %s has %d rows, %s %d: not the same samples", f.Path, len(f.Rows), files[0].Path, len(files[0].Rows))
		}
		for _, d := range f.Detectors {
			if p, dup := seen[d]; dup {
				return nil, fmt.Errorf("join: %s is in both %s and %s", d, p, f.Path)
			}
			seen[d] = f.Path
		}
		out.Detectors = append(out.Detectors, f.Detectors...)
	}
	for i, r := range files[0].Rows {
		row := r
		row.Scores = nil
		for _, f := range files {
			fr := f.Rows[i]
			if fr.Index != r.Index || fr.Source != r.Source {
				return nil, fmt.Errorf("join: row %d is sample %d (%s) in %s and %d (%s) in %s: the files' samples differ",
					i+1, r.Index, r.Source, files[0].Path, fr.Index, fr.Source, f.Path)
			}
			row.Scores = append(row.Scores, fr.Scores...)
		}
		out.Rows = append(out.Rows, row)
	}
	return out, nil
}
