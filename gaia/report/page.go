package report

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/metrics"
)

// Set is one scored set as a report reads it: its score file and the
// provenance that says how it was scored (nil when there is none).
type Set struct {
	Name   string
	Scores *gaia.ScoreFile
	Meta   *gaia.ScoreMeta
}

// Phase is a timed step of the run that made the scores.
type Phase struct {
	Name    string
	Seconds float64
	Images  int
	Reused  bool
}

// Input is everything a report page is made of.
type Input struct {
	Title    string
	Protocol string
	ID       Set
	OOD      []Set
	// Detectors are the columns of the score files to show (nil: every
	// detector the ID file has).
	Detectors []string
	// Setup is what the run knows beyond the provenance (label, value).
	Setup  [][2]string
	Phases []Phase
	// Gallery is how many images each gallery shows (0: 16; < 0: none).
	Gallery int
	// Images makes the thumbnails (nil: a new Images).
	Images *Images
	// Date is when the page was made (as the caller formats it).
	Date string
	// Eval is how the table is evaluated: with intervals, the table shows
	// them and shades, per column, every detector not significantly worse
	// than the best. Table, if set, is the evaluation already made of the
	// same scores with Eval (bench's), used as it is.
	Eval  gaia.EvalOptions
	Table *gaia.EvalTable
}

// DefaultGallery is the images per gallery when Input.Gallery is 0.
const DefaultGallery = 16

// Page is a built report: the table, figures and galleries.
type Page struct {
	Title, Protocol, Date string
	IDName                string
	Table                 *gaia.EvalTable
	Setup                 [][2]string
	Taps                  []DetectorTaps
	Phases                []Phase
	ROC, Hist             []Figure
	Detectors             []DetectorGalleries
	Gallery               int
	Notes                 []string // on the images (decoder, downscaling, problems)
}

// DetectorTaps are the taps one detector used.
type DetectorTaps struct {
	Detector string
	Taps     []string
}

// Figure is one plot, as PNG, with the file name it is also saved under.
type Figure struct {
	File, Title string
	PNG         []byte
}

// DetectorGalleries are one detector's galleries: the ID images it flags as
// most OOD (the same whichever OOD set) and, per OOD set, the OOD images it
// takes as most in-distribution.
type DetectorGalleries struct {
	Detector  string
	Threshold float64 // the FPR95 threshold: accepted when score <= it
	// FlaggedID is the share of ID samples above the threshold (about 5%).
	FlaggedID float64
	ID        Gallery
	OOD       []Gallery
}

// Gallery is one row of thumbnails.
type Gallery struct {
	Set   string
	Title string
	Note  string
	Items []Thumb
}

// Thumb is one sample of a gallery.
type Thumb struct {
	Rank, Of int
	Index    int
	Score    float64
	Source   string
	Pred     string
	Label    string
	// Wrong: a false alarm (ID above the threshold) or a missed detection
	// (OOD at or below it).
	Wrong bool
	// Misclassified: an ID sample whose predicted class is not its label.
	Misclassified bool
	// Image is a data: URL ("" with Problem saying why there is none).
	Image   string
	W, H    int
	Problem string
}

// Build computes the table, the plots and the galleries.
func Build(in Input) (*Page, error) {
	if in.ID.Scores == nil {
		return nil, fmt.Errorf("report: no in-distribution scores")
	}
	if len(in.OOD) == 0 {
		return nil, fmt.Errorf("report: no OOD set")
	}
	dets := in.Detectors
	if dets == nil {
		dets = in.ID.Scores.Detectors
	}
	var oods []gaia.OODSet
	for _, s := range append([]Set{in.ID}, in.OOD...) {
		if len(s.Scores.Rows) == 0 {
			return nil, fmt.Errorf("report: set %s (%s) has no scores", s.Name, s.Scores.Path)
		}
		for _, d := range dets {
			if !slices.Contains(s.Scores.Detectors, d) {
				return nil, fmt.Errorf("report: set %s (%s) has no scores of %s (it has %s)", s.Name, s.Scores.Path, d, strings.Join(s.Scores.Detectors, ", "))
			}
		}
		if s.Name != in.ID.Name {
			oods = append(oods, gaia.OODSet{Name: s.Name, Scores: subset(s.Scores, dets)})
		}
	}
	table := in.Table
	if table == nil {
		var err error
		if table, err = gaia.Evaluate(subset(in.ID.Scores, dets), oods, in.Eval); err != nil {
			return nil, err
		}
	}
	k := in.Gallery
	if k == 0 {
		k = DefaultGallery
	}
	p := &Page{Title: in.Title, Protocol: in.Protocol, Date: in.Date, IDName: in.ID.Name, Table: table,
		Setup: in.Setup, Phases: in.Phases, Gallery: max(k, 0)}
	if p.Title == "" {
		p.Title = fmt.Sprintf("%s vs %d OOD sets", in.ID.Name, len(in.OOD))
	}
	if m := in.ID.Meta; m != nil {
		for _, d := range dets {
			if t := m.Taps[d]; len(t) > 0 {
				p.Taps = append(p.Taps, DetectorTaps{d, t})
			}
		}
	}
	if err := p.plots(in, dets); err != nil {
		return nil, err
	}
	if k < 0 {
		return p, nil
	}
	im := in.Images
	if im == nil {
		im = NewImages()
	}
	for _, d := range dets {
		g, err := galleries(in, d, k, im)
		if err != nil {
			return nil, err
		}
		p.Detectors = append(p.Detectors, g)
	}
	p.Notes = im.Notes()
	return p, nil
}

// subset is sf with the columns dets alone (each checked to be there).
func subset(sf *gaia.ScoreFile, dets []string) *gaia.ScoreFile {
	out := &gaia.ScoreFile{Path: sf.Path, Detectors: dets}
	cols := make([]int, len(dets))
	for i, d := range dets {
		cols[i] = slices.Index(sf.Detectors, d)
	}
	for _, r := range sf.Rows {
		nr := r
		nr.Scores = make([]float64, len(dets))
		for i, j := range cols {
			nr.Scores[i] = r.Scores[j]
		}
		out.Rows = append(out.Rows, nr)
	}
	return out
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// FileName is a set or detector name made safe for a file name.
func FileName(name string) string { return unsafeName.ReplaceAllString(name, "_") }

func (p *Page) plots(in Input, dets []string) error {
	for _, o := range in.OOD {
		var curves []Curve
		for _, d := range dets {
			a, err := in.ID.Scores.Column(d)
			if err != nil {
				return err
			}
			b, err := o.Scores.Column(d)
			if err != nil {
				return fmt.Errorf("%s: %w", o.Name, err)
			}
			curves = append(curves, Curve{Name: d, Points: ROCPoints(metrics.ROCCurve(a, b))})
		}
		title := fmt.Sprintf("ROC: %s (ID) vs %s (OOD)", in.ID.Name, o.Name)
		png, err := ROCPNG(title, curves)
		if err != nil {
			return err
		}
		p.ROC = append(p.ROC, Figure{File: "roc-" + FileName(o.Name) + ".png", Title: title, PNG: png})
	}
	for _, d := range dets {
		var series []Series
		for _, s := range append([]Set{in.ID}, in.OOD...) {
			v, err := s.Scores.Column(d)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			series = append(series, Series{Name: s.Name, Scores: v})
		}
		png, err := HistogramPNG(d+" scores", series)
		if err != nil {
			return err
		}
		p.Hist = append(p.Hist, Figure{File: "hist-" + FileName(d) + ".png", Title: d + " scores", PNG: png})
	}
	return nil
}

// galleries ranks each set's samples by the detector's score: the ID set
// from the most OOD down, each OOD set from the most in-distribution up.
func galleries(in Input, det string, k int, im *Images) (DetectorGalleries, error) {
	idScores, err := in.ID.Scores.Column(det)
	if err != nil {
		return DetectorGalleries{}, err
	}
	th := metrics.Threshold95(idScores)
	g := DetectorGalleries{Detector: det, Threshold: th}
	flagged := 0
	for _, v := range idScores {
		if above(v, th) {
			flagged++
		}
	}
	g.FlaggedID = float64(flagged) / float64(len(idScores))
	g.ID = gallery(in.ID, idScores, k, true, th, im)
	g.ID.Title = fmt.Sprintf("%s: the %d images %s flags as most out-of-distribution", in.ID.Name, len(g.ID.Items), det)
	g.ID.Note = fmt.Sprintf("False alarms (red): %d of %d (%.1f%%) are above the FPR95 threshold %s, whichever the OOD set", flagged, len(idScores), 100*g.FlaggedID, FormatScore(th))
	for _, o := range in.OOD {
		v, err := o.Scores.Column(det)
		if err != nil {
			return DetectorGalleries{}, err
		}
		missed := 0
		for _, s := range v {
			if !above(s, th) {
				missed++
			}
		}
		og := gallery(o, v, k, false, th, im)
		og.Title = fmt.Sprintf("%s: the %d images %s takes as most in-distribution", o.Name, len(og.Items), det)
		og.Note = fmt.Sprintf("Missed (red): %d of %d (%.1f%%, the FPR95) are at or below the threshold, accepted as in-distribution", missed, len(v), 100*float64(missed)/float64(len(v)))
		g.OOD = append(g.OOD, og)
	}
	return g, nil
}

// above reports whether a score is flagged at threshold th (NaN: the most OOD).
func above(v, th float64) bool { return math.IsNaN(v) || v > th }

func gallery(s Set, scores []float64, k int, descending bool, th float64, im *Images) Gallery {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	key := func(i int) float64 {
		if math.IsNaN(scores[i]) {
			return math.Inf(1)
		}
		return scores[i]
	}
	sort.SliceStable(order, func(a, b int) bool {
		if descending {
			return key(order[a]) > key(order[b])
		}
		return key(order[a]) < key(order[b])
	})
	g := Gallery{Set: s.Name}
	for r, i := range order[:min(k, len(order))] {
		row := s.Scores.Rows[i]
		t := Thumb{Rank: r + 1, Of: len(scores), Index: row.Index, Score: scores[i], Source: row.Source,
			Pred: className(s.Meta, row.Pred), Wrong: above(scores[i], th) == descending}
		if row.Label >= 0 && descending { // an OOD set's labels are not the model's classes
			t.Label = className(s.Meta, row.Label)
			t.Misclassified = row.Label != row.Pred
		}
		t.Image, t.W, t.H, t.Problem = im.Thumb(s, row)
		g.Items = append(g.Items, t)
	}
	return g
}

func className(m *gaia.ScoreMeta, c int) string {
	if m != nil && c >= 0 && c < len(m.ClassNames) && m.ClassNames[c] != "" {
		return m.ClassNames[c]
	}
	return strconv.Itoa(c)
}

// FormatScore prints a score in 5 significant digits.
func FormatScore(v float64) string { return formatScore(v, 5) }

func formatScore(v float64, digits int) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.*g", digits, v), ".")
}

// ShortSource is a sample's source as a gallery prints it: a file's name,
// a record's number ("#123"); the page gives the whole in a tooltip.
func ShortSource(s string) string {
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		return s[i:]
	}
	return filepath.Base(s)
}
