package gaia

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gaia-ood/gaia/gaia/metrics"
)

// OODSet is a named OOD score file.
type OODSet struct {
	Name   string
	Scores *ScoreFile
}

// EvalRow is one detector's metrics on every OOD set and their mean.
type EvalRow struct {
	Detector string                     `json:"detector"`
	Sets     map[string]metrics.Metrics `json:"sets"`
	Mean     metrics.Metrics            `json:"mean"`
}

// EvalTable is the result of Evaluate.
type EvalTable struct {
	SetNames      []string  `json:"ood_sets"`
	Rows          []EvalRow `json:"detectors"`
	IDAccuracy    *float64  `json:"id_accuracy,omitempty"`
	IDLabelled    int       `json:"id_labelled"`
	FPRConvention string    `json:"fpr95_convention"`
}

// Evaluate computes the metrics of every detector present in the ID file and
// in every OOD file. A detector missing from one of them is an error.
func Evaluate(id *ScoreFile, oods []OODSet) (*EvalTable, error) {
	if len(oods) == 0 {
		return nil, fmt.Errorf("eval: no OOD set")
	}
	t := &EvalTable{FPRConvention: "in-distribution positive (FPR of OOD at 95% TPR of ID)"}
	for _, o := range oods {
		t.SetNames = append(t.SetNames, o.Name)
	}
	if acc, n, ok := id.Accuracy(); ok {
		t.IDAccuracy, t.IDLabelled = &acc, n
	}
	for _, det := range id.Detectors {
		idScores, _ := id.Column(det)
		row := EvalRow{Detector: det, Sets: map[string]metrics.Metrics{}}
		for _, o := range oods {
			oodScores, err := o.Scores.Column(det)
			if err != nil {
				return nil, fmt.Errorf("eval: %s: %w", o.Name, err)
			}
			m, err := metrics.Compute(idScores, oodScores)
			if err != nil {
				return nil, fmt.Errorf("eval: %s, %s: %w", o.Name, det, err)
			}
			row.Sets[o.Name] = m
			row.Mean.FPR95 += m.FPR95 / float64(len(oods))
			row.Mean.FPR95OODPositive += m.FPR95OODPositive / float64(len(oods))
			row.Mean.AUROC += m.AUROC / float64(len(oods))
			row.Mean.AUPRIn += m.AUPRIn / float64(len(oods))
			row.Mean.AUPROut += m.AUPROut / float64(len(oods))
			row.Mean.DetectionError += m.DetectionError / float64(len(oods))
			row.Mean.NumID = m.NumID
			row.Mean.NumOOD += m.NumOOD
			row.Mean.NaNID = m.NaNID
			row.Mean.NaNOOD += m.NaNOOD
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// Write prints the table as "table", "csv", "json" or "markdown". With
// oodPositive the FPR95 columns are OpenOOD's (OOD positive).
func (t *EvalTable) Write(w io.Writer, format string, oodPositive bool) error {
	fprName := "FPR95"
	fpr := func(m metrics.Metrics) float64 { return m.FPR95 }
	if oodPositive {
		fprName = "FPR95(OOD+)"
		fpr = func(m metrics.Metrics) float64 { return m.FPR95OODPositive }
	}
	sets := append(append([]string(nil), t.SetNames...), "mean")
	get := func(r EvalRow, s string) metrics.Metrics {
		if s == "mean" {
			return r.Mean
		}
		return r.Sets[s]
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	case "csv":
		fmt.Fprintln(w, "detector,ood_set,fpr95,fpr95_ood_positive,auroc,aupr_in,aupr_out,detection_error,n_id,n_ood")
		for _, r := range t.Rows {
			for _, s := range sets {
				m := get(r, s)
				fmt.Fprintf(w, "%s,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%d\n", r.Detector, s, m.FPR95, m.FPR95OODPositive,
					m.AUROC, m.AUPRIn, m.AUPROut, m.DetectionError, m.NumID, m.NumOOD)
			}
		}
		return nil
	case "markdown":
		var head, rule []string
		head = append(head, "detector")
		rule = append(rule, "---")
		for _, s := range sets {
			head = append(head, s+" "+fprName+"↓", s+" AUROC↑")
			rule = append(rule, "---:", "---:")
		}
		fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(head, " | "), strings.Join(rule, " | "))
		for _, r := range t.Rows {
			cells := []string{r.Detector}
			for _, s := range sets {
				m := get(r, s)
				cells = append(cells, fmt.Sprintf("%.2f", 100*fpr(m)), fmt.Sprintf("%.2f", 100*m.AUROC))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		t.footer(w, fprName)
		return nil
	case "table", "":
		// As the papers print it: FPR95 and AUROC per set; the rest is in csv and json.
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "detector\t")
		for _, s := range sets {
			fmt.Fprintf(tw, "%s\t\t", s)
		}
		fmt.Fprint(tw, "\n\t")
		for range sets {
			fmt.Fprintf(tw, "%s\tAUROC\t", fprName)
		}
		fmt.Fprintln(tw)
		for _, r := range t.Rows {
			fmt.Fprintf(tw, "%s\t", r.Detector)
			for _, s := range sets {
				m := get(r, s)
				fmt.Fprintf(tw, "%.2f\t%.2f\t", 100*fpr(m), 100*m.AUROC)
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

func (t *EvalTable) footer(w io.Writer, fprName string) {
	fmt.Fprintln(w)
	if fprName == "FPR95" {
		fmt.Fprintln(w, "FPR95: % of OOD samples accepted at the threshold that accepts 95% of ID samples (ID positive, as the GAIA paper).")
	} else {
		fmt.Fprintln(w, "FPR95(OOD+): % of ID samples flagged at the threshold that catches 95% of OOD samples (OOD positive, as OpenOOD).")
	}
	fmt.Fprintln(w, "All values in %; scores are OOD scores (higher = more out-of-distribution).")
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
