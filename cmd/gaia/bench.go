package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/gaia-ood/gaia/gaia/bench"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	format := fs.String("format", "table", "how to print the table on stdout: table, csv, json or markdown")
	out := fs.String("out", "", "the report `folder` (default: the config's out)")
	// CONFIG may come before, between or after the flags.
	var cfgPath string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return err
			}
			return usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		if cfgPath != "" {
			return usagef("bench: one CONFIG only, have %q and %q", cfgPath, fs.Arg(0))
		}
		cfgPath, args = fs.Arg(0), fs.Args()[1:]
	}
	if cfgPath == "" {
		return usagef("bench: usage: gaia bench CONFIG [-quiet] [-out DIR] [-format table]")
	}
	if err := needLibTorch("bench"); err != nil {
		return err
	}
	cfg, err := bench.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	if *out != "" {
		cfg.Out = *out
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	res, err := bench.Run(ctx, cfg, progress)
	if err != nil {
		return interrupted(err, fmt.Sprintf("the sets scored before (and the fit) are kept in %s and reused by a rerun; the set being scored left nothing", cfg.Out))
	}
	if err := res.Table.Write(stdout, *format, false); err != nil {
		return usageError{err.Error()}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "report: %s and %s\n", filepath.Join(res.Out, "report.md"), filepath.Join(res.Out, "report.html"))
	}
	return nil
}
