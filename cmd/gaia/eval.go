package main

import (
	"flag"
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

// readJoined reads a set's score files (one, or several of the same samples
// from different runs, joined by sample: FILE1,FILE2).
func readJoined(paths string) (*gaia.ScoreFile, error) {
	var files []*gaia.ScoreFile
	for _, p := range strings.Split(paths, ",") {
		sf, err := gaia.ReadScoreFile(p)
		if err != nil {
			return nil, err
		}
		files = append(files, sf)
	}
	return gaia.JoinScoreFiles(files...)
}

// evalFlags are the flags of the evaluation's intervals, comparisons and
// groups, which eval shares with report.
type evalFlags struct {
	ci        bool
	level     float64
	bootstrap int
	seed      uint64
	paired    multiFlag
	groups    multiFlag
}

func (f *evalFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.ci, "ci", false, "intervals: AUROC's by DeLong, the other metrics' and every mean's by a percentile bootstrap (ID and OOD resampled separately)")
	fs.Float64Var(&f.level, "ci-level", 0.95, "the intervals' and paired tests' confidence `level`")
	fs.IntVar(&f.bootstrap, "bootstrap", 2000, "bootstrap `resamples`")
	fs.Uint64Var(&f.seed, "seed", 1, "the bootstrap's `seed` (the same seed, the same intervals)")
	fs.Var(&f.paired, "paired", "compare detectors on the same samples: `A,B` (A minus B) or A,all (repeatable): DeLong's test of the AUROCs, a paired bootstrap of FPR95")
	fs.Var(&f.groups, "group", "a group of OOD sets averaged together: `NAME=SET1,SET2` (repeatable; near and far as OpenOOD)")
}

// options checks the flags and makes the evaluation's options.
func (f *evalFlags) options(cmd string) (gaia.EvalOptions, error) {
	opt := gaia.EvalOptions{Intervals: f.ci, Level: f.level, Bootstrap: f.bootstrap, Seed: f.seed}
	if !(f.level > 0 && f.level < 1) {
		return opt, usagef("%s: -ci-level must be in (0, 1)", cmd)
	}
	if f.bootstrap < 2 {
		return opt, usagef("%s: -bootstrap must be at least 2", cmd)
	}
	for _, p := range f.paired {
		a, b, ok := strings.Cut(p, ",")
		if !ok || a == "" || b == "" || strings.Contains(b, ",") {
			return opt, usagef("%s: -paired %q: want A,B or A,all", cmd, p)
		}
		opt.Paired = append(opt.Paired, [2]string{a, b})
	}
	for _, g := range f.groups {
		name, sets, ok := strings.Cut(g, "=")
		if !ok || name == "" || sets == "" {
			return opt, usagef("%s: -group %q: want NAME=SET1,SET2", cmd, g)
		}
		opt.Groups = append(opt.Groups, gaia.Group{Name: name, Sets: strings.Split(sets, ",")})
	}
	return opt, nil
}

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	id := fs.String("id", "", "the in-distribution score `file` (or FILE1,FILE2: files of the same samples from different runs, joined)")
	var oods multiFlag
	fs.Var(&oods, "ood", "an OOD score file as `NAME=FILE` (repeat for several sets; FILE1,FILE2 joins runs)")
	format := fs.String("format", "table", "output `format`: table, csv, json or markdown")
	gatePath := fs.String("gate", "", "a gate `file` (gaia calibrate): also report the fraction each set passes")
	oodPositive := fs.Bool("ood-positive", false, "report FPR95 with OOD as the positive class (OpenOOD) instead of ID (the GAIA paper)")
	var ef evalFlags
	ef.register(fs)
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
	opt, err := ef.options("eval")
	if err != nil {
		return err
	}
	idFile, err := readJoined(*id)
	if err != nil {
		return err
	}
	named, err := namedFiles("eval", oods)
	if err != nil {
		return err
	}
	var sets []gaia.OODSet
	for _, o := range named {
		sf, err := readJoined(o.path)
		if err != nil {
			return err
		}
		sets = append(sets, gaia.OODSet{Name: o.name, Scores: sf})
	}
	t, err := gaia.Evaluate(idFile, sets, opt)
	if err != nil {
		return err
	}
	if err := t.Write(stdout, *format, *oodPositive); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if *format == "table" || *format == "markdown" {
		if len(t.Paired) > 0 {
			fmt.Fprintln(stdout)
		}
		if err := t.WritePaired(stdout, *oodPositive); err != nil {
			return err
		}
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
