package gaia

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/gaia-ood/gaia/gaia/metrics"
)

// OODSet is a named OOD score file.
type OODSet struct {
	Name   string
	Scores *ScoreFile
}

// Group is a named group of OOD sets whose metrics are averaged (OpenOOD
// v1.5 reports near-OOD and far-OOD this way).
type Group struct {
	Name string   `json:"name"`
	Sets []string `json:"sets"`
}

// EvalOptions say what Evaluate adds to the point estimates. The zero value
// gives point estimates alone.
type EvalOptions struct {
	// Intervals adds to every metric its interval: AUROC's by DeLong's
	// variance, the others' (and every mean's) by a percentile bootstrap
	// that resamples the ID and each OOD set separately.
	Intervals bool
	Level     float64 // the intervals' confidence (default 0.95)
	Bootstrap int     // resamples (default 2000)
	Seed      uint64  // the resamples' seed (default 1); the same seed, the same intervals
	// Paired compares detector A with B on the same samples ("all" as B:
	// every other detector): DeLong's test for correlated AUCs and a paired
	// bootstrap of the FPR95 difference. It implies Intervals.
	Paired [][2]string
	Groups []Group
}

// EvalRow is one detector's metrics on every OOD set, their mean, and the
// means of the groups.
type EvalRow struct {
	Detector string                     `json:"detector"`
	Sets     map[string]metrics.Metrics `json:"sets"`
	Mean     metrics.Metrics            `json:"mean"`
	Groups   map[string]metrics.Metrics `json:"groups,omitempty"`
}

// Paired is one comparison of two detectors on one set (or on the mean, or
// a group's mean): differences are A minus B.
type Paired struct {
	A   string `json:"a"`
	B   string `json:"b"`
	Set string `json:"set"`
	// AUROC: on a set, DeLong's test for correlated AUCs (the interval diff
	// +- z SE, p two-sided normal); on a mean, the paired bootstrap (the
	// percentile interval, p = twice the smaller tail at 0).
	AUROCDiff   float64    `json:"auroc_diff"`
	AUROCDiffCI [2]float64 `json:"auroc_diff_ci"`
	PValue      float64    `json:"p_value"`
	// FPR95 (both conventions): the paired bootstrap.
	FPR95Diff              float64    `json:"fpr95_diff"`
	FPR95DiffCI            [2]float64 `json:"fpr95_diff_ci"`
	FPR95OODPositiveDiff   float64    `json:"fpr95_ood_positive_diff"`
	FPR95OODPositiveDiffCI [2]float64 `json:"fpr95_ood_positive_diff_ci"`
}

// EvalTable is the result of Evaluate.
type EvalTable struct {
	SetNames      []string  `json:"ood_sets"`
	Groups        []Group   `json:"groups,omitempty"`
	Rows          []EvalRow `json:"detectors"`
	IDAccuracy    *float64  `json:"id_accuracy,omitempty"`
	IDLabelled    int       `json:"id_labelled"`
	FPRConvention string    `json:"fpr95_convention"`
	// The intervals' level, resamples and seed (zero without intervals).
	Level     float64  `json:"ci_level,omitempty"`
	Bootstrap int      `json:"bootstrap,omitempty"`
	Seed      uint64   `json:"seed,omitempty"`
	Paired    []Paired `json:"paired,omitempty"`
	// NotWorse lists, per column (a set, "mean" or a group; "auroc",
	// "fpr95", "fpr95_ood_positive"), the detectors not significantly worse
	// than the column's best by the paired test at Level: the best among
	// them (with intervals).
	NotWorse map[string]map[string][]string `json:"not_worse,omitempty"`
}

// columns are the names of a table's columns: the sets, the mean, the groups.
func (t *EvalTable) columns() []string {
	out := append(append([]string(nil), t.SetNames...), "mean")
	for _, g := range t.Groups {
		out = append(out, g.Name)
	}
	return out
}

// metricsOf is a row's metrics in a column.
func (r *EvalRow) metricsOf(col string) metrics.Metrics {
	if m, ok := r.Sets[col]; ok {
		return m
	}
	if col == "mean" {
		return r.Mean
	}
	return r.Groups[col]
}

// Evaluate computes the metrics of every detector present in the ID file and
// in every OOD file (a detector missing from one of them is an error), their
// mean over the sets and over each group, and with opt their intervals and
// paired comparisons.
func Evaluate(id *ScoreFile, oods []OODSet, opt EvalOptions) (*EvalTable, error) {
	if len(oods) == 0 {
		return nil, fmt.Errorf("eval: no OOD set")
	}
	t := &EvalTable{FPRConvention: "in-distribution positive (FPR of OOD at 95% TPR of ID)", Groups: opt.Groups}
	setIndex := map[string]int{}
	for i, o := range oods {
		t.SetNames = append(t.SetNames, o.Name)
		setIndex[o.Name] = i
	}
	for _, g := range opt.Groups {
		if _, clash := setIndex[g.Name]; clash || g.Name == "mean" || g.Name == "" {
			return nil, fmt.Errorf("eval: group %q: a group needs a name of its own (not a set's, not mean)", g.Name)
		}
		if len(g.Sets) == 0 {
			return nil, fmt.Errorf("eval: group %s has no sets", g.Name)
		}
		for _, s := range g.Sets {
			if _, ok := setIndex[s]; !ok {
				return nil, fmt.Errorf("eval: group %s names set %q, which is not evaluated (the sets: %s)", g.Name, s, strings.Join(t.SetNames, ", "))
			}
		}
	}
	if acc, n, ok := id.Accuracy(); ok {
		t.IDAccuracy, t.IDLabelled = &acc, n
	}
	idCols := make([][]float64, len(id.Detectors))
	oodCols := make([][][]float64, len(id.Detectors)) // [detector][set]
	for d, det := range id.Detectors {
		idCols[d], _ = id.Column(det)
		row := EvalRow{Detector: det, Sets: map[string]metrics.Metrics{}}
		for _, o := range oods {
			oodScores, err := o.Scores.Column(det)
			if err != nil {
				return nil, fmt.Errorf("eval: %s: %w", o.Name, err)
			}
			oodCols[d] = append(oodCols[d], oodScores)
			m, err := metrics.Compute(idCols[d], oodScores)
			if err != nil {
				return nil, fmt.Errorf("eval: %s, %s: %w", o.Name, det, err)
			}
			row.Sets[o.Name] = m
		}
		row.Mean = meanOf(row.Sets, t.SetNames)
		for _, g := range opt.Groups {
			if row.Groups == nil {
				row.Groups = map[string]metrics.Metrics{}
			}
			row.Groups[g.Name] = meanOf(row.Sets, g.Sets)
		}
		t.Rows = append(t.Rows, row)
	}
	if !opt.Intervals && len(opt.Paired) == 0 {
		return t, nil
	}
	if err := t.intervals(idCols, oodCols, opt); err != nil {
		return nil, err
	}
	return t, nil
}

// meanOf is the mean over the named sets (counts summed, ID counts once).
func meanOf(sets map[string]metrics.Metrics, names []string) metrics.Metrics {
	var mean metrics.Metrics
	k := float64(len(names))
	for _, s := range names {
		m := sets[s]
		mean.FPR95 += m.FPR95 / k
		mean.FPR95OODPositive += m.FPR95OODPositive / k
		mean.AUROC += m.AUROC / k
		mean.AUPRIn += m.AUPRIn / k
		mean.AUPROut += m.AUPROut / k
		mean.DetectionError += m.DetectionError / k
		mean.NumID = m.NumID
		mean.NumOOD += m.NumOOD
		mean.NaNID = m.NaNID
		mean.NaNOOD += m.NaNOOD
	}
	return mean
}

// The bootstrap's metrics, in this order.
const (
	bFPR95 = iota
	bFPR95OOD
	bAUROC
	bAUPRIn
	bAUPROut
	bMetrics
)

// intervals fills the intervals, the paired comparisons and NotWorse: one
// bootstrap for the whole table, each resample drawing the ID samples once
// (shared by every set, as they are) and each OOD set's separately, the
// same resample for every detector (so that differences are paired).
func (t *EvalTable) intervals(idCols [][]float64, oodCols [][][]float64, opt EvalOptions) error {
	level, b, seed := opt.Level, opt.Bootstrap, opt.Seed
	if level == 0 {
		level = 0.95
	}
	if b == 0 {
		b = 2000
	}
	if seed == 0 {
		seed = 1
	}
	if !(level > 0 && level < 1) || b < 2 {
		return fmt.Errorf("eval: interval level %v must be in (0, 1) and resamples %d at least 2", level, b)
	}
	t.Level, t.Bootstrap, t.Seed = level, b, seed
	nd, ns := len(idCols), len(t.SetNames)
	samples := make([][]*metrics.Sample, nd)
	for d := range samples {
		for s := 0; s < ns; s++ {
			samples[d] = append(samples[d], metrics.NewSample(idCols[d], oodCols[d][s]))
		}
	}
	// vals[d][s][metric][resample]
	vals := make([][][][]float64, nd)
	for d := range vals {
		vals[d] = make([][][]float64, ns)
		for s := range vals[d] {
			vals[d][s] = make([][]float64, bMetrics)
			for k := range vals[d][s] {
				vals[d][s][k] = make([]float64, b)
			}
		}
	}
	rs := metrics.NewResampler(seed)
	wID := make([]int32, len(idCols[0]))
	wOOD := make([][]int32, ns)
	for s := range wOOD {
		wOOD[s] = make([]int32, len(oodCols[0][s]))
	}
	workers := min(nd, runtime.GOMAXPROCS(0))
	for r := 0; r < b; r++ {
		rs.Counts(wID)
		for s := range wOOD {
			rs.Counts(wOOD[s])
		}
		var wg sync.WaitGroup
		next := make(chan int, nd)
		for d := 0; d < nd; d++ {
			next <- d
		}
		close(next)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range next {
					for s := 0; s < ns; s++ {
						m := samples[d][s].Weighted(wID, wOOD[s])
						v := vals[d][s]
						v[bFPR95][r], v[bFPR95OOD][r], v[bAUROC][r], v[bAUPRIn][r], v[bAUPROut][r] = m.FPR95, m.FPR95OODPositive, m.AUROC, m.AUPRIn, m.AUPROut
					}
				}
			}()
		}
		wg.Wait()
	}
	// A column's bootstrap values: a set's own, or the mean over sets.
	colSets := map[string][]int{"mean": nil}
	for s := range t.SetNames {
		colSets["mean"] = append(colSets["mean"], s)
		colSets[t.SetNames[s]] = []int{s}
	}
	for _, g := range t.Groups {
		for _, name := range g.Sets {
			colSets[g.Name] = append(colSets[g.Name], slices.Index(t.SetNames, name))
		}
	}
	colVals := func(d int, col string, k int) []float64 {
		sets := colSets[col]
		out := make([]float64, b)
		for _, s := range sets {
			for r, v := range vals[d][s][k] {
				out[r] += v / float64(len(sets))
			}
		}
		return out
	}
	ci := func(v []float64) *[2]float64 {
		c := metrics.PercentileInterval(append([]float64(nil), v...), level)
		return &c
	}
	for d := range t.Rows {
		row := &t.Rows[d]
		for _, col := range t.columns() {
			m := row.metricsOf(col)
			m.FPR95CI, m.FPR95OODPositiveCI = ci(colVals(d, col, bFPR95)), ci(colVals(d, col, bFPR95OOD))
			m.AUPRInCI, m.AUPROutCI = ci(colVals(d, col, bAUPRIn)), ci(colVals(d, col, bAUPROut))
			if s := slices.Index(t.SetNames, col); s >= 0 {
				auc, se, err := metrics.DeLong(idCols[d], oodCols[d][s])
				if err != nil {
					return err
				}
				c := metrics.AUROCInterval(auc, se, level)
				m.AUROCSE, m.AUROCCI = se, &c
			} else {
				m.AUROCCI = ci(colVals(d, col, bAUROC))
			}
			switch {
			case col == "mean":
				row.Mean = m
			case row.Sets[col].NumID > 0:
				row.Sets[col] = m
			default:
				row.Groups[col] = m
			}
		}
	}
	names := make([]string, nd)
	for d, r := range t.Rows {
		names[d] = r.Detector
	}
	paired := func(a, bb int, col string) Paired {
		p := Paired{A: names[a], B: names[bb], Set: col}
		ma, mb := t.Rows[a].metricsOf(col), t.Rows[bb].metricsOf(col)
		diffs := func(k int) []float64 {
			va, vb := colVals(a, col, k), colVals(bb, col, k)
			for r := range va {
				va[r] -= vb[r]
			}
			return va
		}
		if s := slices.Index(t.SetNames, col); s >= 0 {
			diff, se, pv, _ := metrics.PairedDeLong(idCols[a], oodCols[a][s], idCols[bb], oodCols[bb][s])
			z := metrics.Z(level)
			p.AUROCDiff, p.AUROCDiffCI, p.PValue = diff, [2]float64{diff - z*se, diff + z*se}, pv
		} else {
			dv := diffs(bAUROC)
			p.AUROCDiff, p.AUROCDiffCI, p.PValue = ma.AUROC-mb.AUROC, *ci(dv), bootstrapP(dv)
		}
		p.FPR95Diff, p.FPR95DiffCI = ma.FPR95-mb.FPR95, *ci(diffs(bFPR95))
		p.FPR95OODPositiveDiff, p.FPR95OODPositiveDiffCI = ma.FPR95OODPositive-mb.FPR95OODPositive, *ci(diffs(bFPR95OOD))
		return p
	}
	for _, pr := range opt.Paired {
		a := slices.Index(names, pr[0])
		if a < 0 {
			return fmt.Errorf("eval: paired: %w %q: the files score %s", ErrUnknownDetector, pr[0], strings.Join(names, ", "))
		}
		var others []int
		if pr[1] == "all" {
			for d := range names {
				if d != a {
					others = append(others, d)
				}
			}
		} else if bb := slices.Index(names, pr[1]); bb >= 0 && bb != a {
			others = []int{bb}
		} else {
			return fmt.Errorf("eval: paired %s,%s: %q is not another detector of the files (%s)", pr[0], pr[1], pr[1], strings.Join(names, ", "))
		}
		for _, bb := range others {
			for _, col := range t.columns() {
				t.Paired = append(t.Paired, paired(a, bb, col))
			}
		}
	}
	// Per column, the detectors not significantly worse than the best.
	t.NotWorse = map[string]map[string][]string{}
	for _, col := range t.columns() {
		t.NotWorse[col] = map[string][]string{}
		for _, k := range []struct {
			name   string
			metric int
			higher bool
			value  func(metrics.Metrics) float64
		}{{"auroc", bAUROC, true, func(m metrics.Metrics) float64 { return m.AUROC }},
			{"fpr95", bFPR95, false, func(m metrics.Metrics) float64 { return m.FPR95 }},
			{"fpr95_ood_positive", bFPR95OOD, false, func(m metrics.Metrics) float64 { return m.FPR95OODPositive }}} {
			best := 0
			for d := range t.Rows {
				x, y := k.value(t.Rows[d].metricsOf(col)), k.value(t.Rows[best].metricsOf(col))
				if (k.higher && x > y) || (!k.higher && x < y) {
					best = d
				}
			}
			for d := range t.Rows {
				if d == best {
					t.NotWorse[col][k.name] = append(t.NotWorse[col][k.name], names[d])
					continue
				}
				p := paired(best, d, col)
				lo, hi := p.FPR95DiffCI[0], p.FPR95DiffCI[1]
				switch k.name {
				case "auroc":
					lo, hi = p.AUROCDiffCI[0], p.AUROCDiffCI[1]
				case "fpr95_ood_positive":
					lo, hi = p.FPR95OODPositiveDiffCI[0], p.FPR95OODPositiveDiffCI[1]
				}
				if lo <= 0 && 0 <= hi { // the difference's interval holds 0
					t.NotWorse[col][k.name] = append(t.NotWorse[col][k.name], names[d])
				}
			}
		}
	}
	return nil
}

// bootstrapP is the two-sided bootstrap p-value of a difference being 0:
// twice the smaller share of resampled differences at or beyond 0, counted
// as (k + 1) / (B + 1) so that B resamples never claim p = 0.
func bootstrapP(diffs []float64) float64 {
	le, ge := 0, 0
	for _, v := range diffs {
		if v <= 0 {
			le++
		}
		if v >= 0 {
			ge++
		}
	}
	return math.Min(1, 2*float64(min(le, ge)+1)/float64(len(diffs)+1))
}

// Write prints the table as "table", "csv", "json" or "markdown". With
// oodPositive the FPR95 columns are OpenOOD's (OOD positive). With
// intervals, table and markdown cells read "93.21 ±0.62" (the interval's
// half-width), and csv has each metric's interval's ends.
func (t *EvalTable) Write(w io.Writer, format string, oodPositive bool) error {
	fprName := "FPR95"
	fpr := func(m metrics.Metrics) (float64, *[2]float64) { return m.FPR95, m.FPR95CI }
	if oodPositive {
		fprName = "FPR95(OOD+)"
		fpr = func(m metrics.Metrics) (float64, *[2]float64) { return m.FPR95OODPositive, m.FPR95OODPositiveCI }
	}
	cols := t.columns()
	cell := func(v float64, ci *[2]float64) string {
		if ci == nil {
			return fmt.Sprintf("%.2f", 100*v)
		}
		return fmt.Sprintf("%.2f ±%.2f", 100*v, 50*(ci[1]-ci[0]))
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	case "csv":
		fmt.Fprintln(w, "detector,ood_set,fpr95,fpr95_ood_positive,auroc,aupr_in,aupr_out,detection_error,n_id,n_ood,"+
			"auroc_se,auroc_lo,auroc_hi,fpr95_lo,fpr95_hi,fpr95_ood_positive_lo,fpr95_ood_positive_hi,aupr_in_lo,aupr_in_hi,aupr_out_lo,aupr_out_hi")
		ends := func(ci *[2]float64) string {
			if ci == nil {
				return ","
			}
			return fmt.Sprintf("%.6f,%.6f", ci[0], ci[1])
		}
		for _, r := range t.Rows {
			for _, s := range cols {
				m := r.metricsOf(s)
				se := ""
				if m.AUROCSE > 0 {
					se = fmt.Sprintf("%.6f", m.AUROCSE)
				}
				fmt.Fprintf(w, "%s,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%d,%s,%s,%s,%s,%s,%s\n", r.Detector, s, m.FPR95, m.FPR95OODPositive,
					m.AUROC, m.AUPRIn, m.AUPROut, m.DetectionError, m.NumID, m.NumOOD,
					se, ends(m.AUROCCI), ends(m.FPR95CI), ends(m.FPR95OODPositiveCI), ends(m.AUPRInCI), ends(m.AUPROutCI))
			}
		}
		return nil
	case "markdown":
		var head, rule []string
		head = append(head, "detector")
		rule = append(rule, "---")
		for _, s := range cols {
			head = append(head, s+" "+fprName+"↓", s+" AUROC↑")
			rule = append(rule, "---:", "---:")
		}
		fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(head, " | "), strings.Join(rule, " | "))
		for _, r := range t.Rows {
			cells := []string{r.Detector}
			for _, s := range cols {
				m := r.metricsOf(s)
				cells = append(cells, cell(fpr(m)), cell(m.AUROC, m.AUROCCI))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		t.footer(w, fprName)
		return nil
	case "table", "":
		// As the papers print it: FPR95 and AUROC per set; the rest is in csv and json.
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "detector\t")
		for _, s := range cols {
			fmt.Fprintf(tw, "%s\t\t", s)
		}
		fmt.Fprint(tw, "\n\t")
		for range cols {
			fmt.Fprintf(tw, "%s\tAUROC\t", fprName)
		}
		fmt.Fprintln(tw)
		for _, r := range t.Rows {
			fmt.Fprintf(tw, "%s\t", r.Detector)
			for _, s := range cols {
				m := r.metricsOf(s)
				fmt.Fprintf(tw, "%s\t%s\t", cell(fpr(m)), cell(m.AUROC, m.AUROCCI))
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		t.footer(w, fprName)
		return nil
	}
	return fmt.Errorf("unknown format %q (want table, csv, json or markdown)", format)
}

// WritePaired prints the paired comparisons as a table: per pair and
// column, the AUROC difference with its interval and p-value, and the FPR95
// difference with its interval (in points of %).
func (t *EvalTable) WritePaired(w io.Writer, oodPositive bool) error {
	if len(t.Paired) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fprName := "FPR95"
	if oodPositive {
		fprName = "FPR95(OOD+)"
	}
	fmt.Fprintf(tw, "A - B\tset\tAUROC diff\t%.0f%% interval\tp\t%s diff\t%.0f%% interval\t\n", 100*t.Level, fprName, 100*t.Level)
	for _, p := range t.Paired {
		fd, fci := p.FPR95Diff, p.FPR95DiffCI
		if oodPositive {
			fd, fci = p.FPR95OODPositiveDiff, p.FPR95OODPositiveDiffCI
		}
		pv := fmt.Sprintf("%.3g", p.PValue)
		if p.PValue < 1e-4 {
			pv = "<0.0001"
		}
		fmt.Fprintf(tw, "%s - %s\t%s\t%+.2f\t[%+.2f, %+.2f]\t%s\t%+.2f\t[%+.2f, %+.2f]\t\n", p.A, p.B, p.Set,
			100*p.AUROCDiff, 100*p.AUROCDiffCI[0], 100*p.AUROCDiffCI[1], pv, 100*fd, 100*fci[0], 100*fci[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nAUROC on a set: DeLong's test for correlated AUCs; on a mean or group: the paired bootstrap (%d resamples, seed %d). An interval that holds 0 does not support a difference at %.0f%%.\n",
		t.Bootstrap, t.Seed, 100*t.Level)
	return nil
}

func (t *EvalTable) footer(w io.Writer, fprName string) {
	fmt.Fprintln(w)
	if fprName == "FPR95" {
		fmt.Fprintln(w, "FPR95: % of OOD samples accepted at the threshold that accepts 95% of ID samples (ID positive, as the GAIA paper).")
	} else {
		fmt.Fprintln(w, "FPR95(OOD+): % of ID samples flagged at the threshold that catches 95% of OOD samples (OOD positive, as OpenOOD).")
	}
	fmt.Fprintln(w, "All values in %; scores are OOD scores (higher = more out-of-distribution).")
	if t.Level > 0 {
		fmt.Fprintf(w, "±: half the %.0f%% interval (AUROC on a set: DeLong; the rest, and every mean: percentile bootstrap of %d resamples, seed %d).\n",
			100*t.Level, t.Bootstrap, t.Seed)
	}
	for _, g := range t.Groups {
		fmt.Fprintf(w, "%s: the mean over %s.\n", g.Name, strings.Join(g.Sets, ", "))
	}
	if t.IDAccuracy != nil {
		fmt.Fprintf(w, "ID accuracy: %.2f%% of %d labelled samples.\n", 100**t.IDAccuracy, t.IDLabelled)
	}
	for _, n := range t.NaNNotes() {
		fmt.Fprintln(w, n)
	}
}

// NaNNotes say, per detector with NaN scores, how many there were on each
// side; they are ranked as the most OOD (NonFinite).
func (t *EvalTable) NaNNotes() []string {
	var notes []string
	for _, r := range t.Rows {
		if r.Mean.NaNID == 0 && r.Mean.NaNOOD == 0 {
			continue
		}
		var parts []string
		for _, s := range t.SetNames {
			if m := r.Sets[s]; m.NaNOOD > 0 {
				parts = append(parts, fmt.Sprintf("%d of %d in %s", m.NaNOOD, m.NumOOD, s))
			}
		}
		ood := "none of the OOD scores"
		if len(parts) > 0 {
			ood = strings.Join(parts, ", ")
		}
		notes = append(notes, fmt.Sprintf("%s: %d of %d ID scores and %s are NaN (the model's outputs were not finite), ranked as the most OOD, as a gate rejects them.",
			r.Detector, r.Mean.NaNID, r.Mean.NumID, ood))
	}
	return notes
}
