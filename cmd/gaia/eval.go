package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/gaia-ood/gaia/gaia"
)

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// namedFile is one -ood NAME=FILE.
type namedFile struct{ name, path string }

// namedFiles parses the -ood NAME=FILE flags of cmd; a name given twice, or
// one of taken, is a usage error.
func namedFiles(cmd string, flags []string, taken ...string) ([]namedFile, error) {
	seen := map[string]bool{}
	for _, t := range taken {
		seen[t] = true
	}
	var out []namedFile
	for _, o := range flags {
		name, path, ok := strings.Cut(o, "=")
		if !ok || name == "" || path == "" {
			return nil, usagef("%s: -ood %q: want NAME=FILE", cmd, o)
		}
		if seen[name] {
			return nil, usagef("%s: set %q named twice", cmd, name)
		}
		seen[name] = true
		out = append(out, namedFile{name, path})
	}
	return out, nil
}

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	id := fs.String("id", "", "the in-distribution score `file`")
	var oods multiFlag
	fs.Var(&oods, "ood", "an OOD score file as `NAME=FILE` (repeat for several sets)")
	format := fs.String("format", "table", "output `format`: table, csv, json or markdown")
	gatePath := fs.String("gate", "", "a gate `file` (gaia calibrate): also report the fraction each set passes")
	oodPositive := fs.Bool("ood-positive", false, "report FPR95 with OOD as the positive class (OpenOOD) instead of ID (the GAIA paper)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || len(oods) == 0 {
		return usagef("eval: -id and at least one -ood NAME=FILE are required")
	}
	switch *format {
	case "table", "csv", "json", "markdown":
	default:
		return usagef("eval: -format %q: want table, csv, json or markdown", *format)
	}
	idFile, err := gaia.ReadScoreFile(*id)
	if err != nil {
		return err
	}
	named, err := namedFiles("eval", oods)
	if err != nil {
		return err
	}
	var sets []gaia.OODSet
	for _, o := range named {
		sf, err := gaia.ReadScoreFile(o.path)
		if err != nil {
			return err
		}
		sets = append(sets, gaia.OODSet{Name: o.name, Scores: sf})
	}
	t, err := gaia.Evaluate(idFile, sets)
	if err != nil {
		return err
	}
	if err := t.Write(stdout, *format, *oodPositive); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if *gatePath != "" {
		return applyGate(stdout, *gatePath, idFile, sets)
	}
	return nil
}

// applyGate reports a gate's measured TPR on the ID set and FPR on each OOD set.
func applyGate(w io.Writer, path string, id *gaia.ScoreFile, sets []gaia.OODSet) error {
	g, err := gaia.LoadGate(path)
	if err != nil {
		return err
	}
	col, err := id.Column(g.Detector)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\ngate %s: %s <= %.9g accepts (calibrated for TPR %.2f%%)\n", path, g.Detector, g.Threshold, 100*g.TargetTPR)
	fmt.Fprintf(w, "  ID %-20s TPR %6.2f%%  (%d samples)\n", "", 100*g.AcceptedFraction(col), len(col))
	for _, s := range sets {
		c, err := s.Scores.Column(g.Detector)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  OOD %-19s FPR %6.2f%%  (%d samples)\n", s.Name, 100*g.AcceptedFraction(c), len(c))
	}
	return nil
}
