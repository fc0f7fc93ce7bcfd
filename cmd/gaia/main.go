// Command gaia scores inputs to a TorchScript image classifier for being
// out-of-distribution, with GAIA and the standard baselines.
//
// Usage:
//
//	gaia info --model MODEL.pt [--input CxHxW] [--device auto]
//
// Run `gaia help` for every subcommand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/torch"
)

// usageError marks a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `gaia: out-of-distribution detection from attribution gradients (GAIA) and baselines

Usage:
  gaia info --model MODEL.pt [--input CxHxW] [--device auto]
        the model's taps (name, kind, channels, shape), its classifier input and the devices
  gaia score --model MODEL.pt --data SPEC [--detectors all] [--batch 128] [--out scores.csv]
        one OOD score per sample and detector (higher = more out-of-distribution)
  gaia fit --model MODEL.pt --data SPEC --out FIT [--knn-sample 50000]
        statistics of in-distribution data for the feature-based detectors (score, bench, serve take --fit FIT)
  gaia score ... --shard i/N|k8s|slurm|auto --out-dir DIR
        one of N disjoint parts of the data, with a manifest; a complete part is skipped on rerun
  gaia merge DIR --out scores.csv
        the shards of DIR, each present once and all from one job, as one score file
  gaia eval --id id.csv --ood NAME=ood.csv [--ood NAME2=...] [--format table]
        FPR95, AUROC, AUPR-In, AUPR-Out per OOD set and detector, and their mean
  gaia calibrate --id id.csv --detector gaia-a --tpr 0.95 --out gate.json
        the threshold that accepts that fraction of in-distribution samples, as a gate file
  gaia bench CONFIG [--quiet]
        a whole benchmark from a YAML or JSON config: scores, metrics, plots, report.md and report.html
  gaia report --id id.csv --ood NAME=ood.csv [--ood ...] --out DIR [--gallery 16]
        report.html from score files and their provenance (no model needed): table, plots, galleries
  gaia speed --model MODEL.pt [--device auto] [--batch 128]
        images/s and peak memory of each detector and of the bare forward and backward
  gaia serve --model MODEL.pt --gate gate.json [--addr 127.0.0.1:8080] [--max-batch 32]
        an OOD gate over HTTP (POST /v1/score), with dynamic batching, /healthz, /readyz, /metrics
  gaia data dump --data SPEC (--model MODEL.pt | --input CxHxW) --out X.npy [--raw]
        the exact model inputs of a data spec (or with --raw its pixels before normalization), to compare with another pipeline
  gaia version
        the versions of gaia and LibTorch

Run 'gaia COMMAND -h' for a command's flags.
`

func main() {
	// The process tuning a LibTorch program on the CPU wants (glibc's
	// allocator, OpenBLAS on the calling thread): torch.TuneProcess.
	torch.TuneProcess()
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "gaia: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

// run runs a command; a library error gets the flag that addresses it
// (cli.Hint).
func run(args []string, stdout, stderr io.Writer) error {
	return cli.Hint(dispatch(args, stdout, stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command")
	}
	switch args[0] {
	case "info":
		return runInfo(args[1:], stdout, stderr)
	case "score":
		return runScore(args[1:], stdout, stderr)
	case "eval":
		return runEval(args[1:], stdout, stderr)
	case "calibrate":
		return runCalibrate(args[1:], stdout, stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "report":
		return runReport(args[1:], stdout, stderr)
	case "speed":
		return runSpeed(args[1:], stdout, stderr)
	case "merge":
		return runMerge(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "data":
		return runData(args[1:], stdout, stderr)
	case "fit":
		return runFit(args[1:], stdout, stderr)
	case "version":
		return runVersion(stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usagef("unknown command %q", args[0])
}

// newFlags makes a subcommand's FlagSet that reports to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gaia "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags and turns a parse failure into a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// interrupted says, for a run stopped by SIGINT or SIGTERM (its context
// canceled), that it was interrupted and what was kept; other errors pass.
func interrupted(err error, kept string) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted (SIGINT or SIGTERM): %s", kept)
	}
	return err
}
