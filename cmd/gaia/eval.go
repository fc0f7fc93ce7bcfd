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

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	id := fs.String("id", "", "the in-distribution score `file`")
	var oods multiFlag
	fs.Var(&oods, "ood", "an OOD score file as `NAME=FILE` (repeat for several sets)")
	format := fs.String("format", "table", "output `format`: table, csv, json or markdown")
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
	var sets []gaia.OODSet
	seen := map[string]bool{}
	for _, o := range oods {
		name, path, ok := strings.Cut(o, "=")
		if !ok || name == "" || path == "" {
			return usagef("eval: -ood %q: want NAME=FILE", o)
		}
		if seen[name] {
			return usagef("eval: OOD set %q named twice", name)
		}
		seen[name] = true
		sf, err := gaia.ReadScoreFile(path)
		if err != nil {
			return err
		}
		sets = append(sets, gaia.OODSet{Name: name, Scores: sf})
	}
	t, err := gaia.Evaluate(idFile, sets)
	if err != nil {
		return err
	}
	if err := t.Write(stdout, *format, *oodPositive); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}
