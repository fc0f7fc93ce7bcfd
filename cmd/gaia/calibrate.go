package main

import (
	"fmt"
	"io"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/outfile"
)

func runCalibrate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("calibrate", stderr)
	id := fs.String("id", "", "in-distribution score `file` made by gaia score (its FILE.json names the model and taps)")
	det := fs.String("detector", "gaia-a", "the `detector` whose scores set the threshold")
	tpr := fs.Float64("tpr", 0.95, "the fraction of in-distribution samples the gate accepts")
	out := fs.String("out", "", "the gate `file` to write (JSON)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || *out == "" {
		return usagef("calibrate: -id and -out are required")
	}
	if !(*tpr > 0 && *tpr <= 1) {
		return usagef("calibrate: -tpr must be in (0, 1]")
	}
	sf, err := gaia.ReadScoreFile(*id)
	if err != nil {
		return err
	}
	meta, err := gaia.ReadScoreMeta(*id)
	if err != nil {
		return fmt.Errorf("%w (score files made by gaia score -out FILE have it)", err)
	}
	g, err := gaia.NewGate(sf, meta, *det, *tpr)
	if err != nil {
		return err
	}
	if err := outfile.WriteJSON(*out, g); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: threshold %.9g accepts %.2f%% of %d in-distribution samples (target %.2f%%); wrote %s\n",
		g.Detector, g.Threshold, 100*g.MeasuredTPR, g.NumID, 100*g.TargetTPR, *out)
	return nil
}
