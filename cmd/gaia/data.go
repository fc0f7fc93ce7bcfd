package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/internal/npy"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/progress"
)

func runData(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "dump" {
		return usagef("data: usage: gaia data dump --data SPEC (--model M | --input CxHxW) --out X.npy [--raw]")
	}
	return runDataDump(args[1:], stdout, stderr)
}

// runDataDump writes the model inputs a data spec makes, exactly as gaia
// score feeds them to the model, to a .npy file with the sources beside it:
// the check of gaia's preprocessing against another pipeline.
func runDataDump(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data dump", stderr)
	spec := fs.String("data", "", "the dataset `SPEC`, with its transform options (as gaia score takes it)")
	var mf cli.ModelFlags
	mf.Register(fs, cli.OneDevice, "model", "input", "mean", "std")
	model := &mf.Model
	out := fs.String("out", "", "the `.npy` file to write; OUT.sources.tsv lists each row's index, label and source")
	raw := fs.Bool("raw", false, "uint8 pixels before normalization (N x C x H x W) instead of the float32 model inputs")
	limit := fs.Int("limit", 0, "only the first `N` samples (0: all)")
	workers := fs.Int("workers", 0, "decoding `goroutines` (default: the number of CPUs)")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *spec == "" || *out == "" || (*model == "" && mf.Input == "") {
		return usagef("data dump: -data, -out and -model or -input are required")
	}
	if *limit < 0 || *workers < 0 {
		return usagef("data dump: -limit and -workers must not be negative")
	}
	if _, err := data.ParseSpec(*spec); err != nil {
		return usageError{err.Error()}
	}
	opt, err := mf.Options()
	if err != nil {
		return usagef("data dump: %v", err)
	}
	meta := &gaia.Meta{}
	if *model != "" {
		if meta, err = gaia.ReadMeta(*model, opt); err != nil {
			return err
		}
	} else if meta, err = gaia.InputMeta(opt); err != nil {
		return usageError{err.Error()}
	}
	ds, err := gaia.NewDataset(*spec, meta)
	if err != nil {
		return err
	}
	n := ds.Source.Len()
	if *limit > 0 {
		n = min(n, *limit)
	}
	c, h, w := meta.InputSize[0], meta.InputSize[1], meta.InputSize[2]
	dtype, elem := "<f4", 4
	if *raw {
		dtype, elem = "|u1", 1
	}
	if !*quiet {
		fmt.Fprintf(stderr, "%s; %s; JPEG: %s\n", ds.Source.Describe(), ds.Transform.Describe(), data.JPEGDecoder())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	arr, err := outfile.CreateContext(ctx, *out)
	if err != nil {
		return err
	}
	defer arr.Abort()
	srcs, err := outfile.CreateContext(ctx, *out+".sources.tsv")
	if err != nil {
		return err
	}
	defer srcs.Abort()
	bw := bufio.NewWriterSize(arr, 1<<20)
	if _, err := bw.Write(npy.Header(dtype, []int{n, c, h, w})); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	sw := bufio.NewWriter(srcs)
	fmt.Fprintln(sw, "index\tlabel\tsource")
	var progressW io.Writer = stderr
	if *quiet {
		progressW = nil
	}
	p := progress.New(progressW, "dump", n)
	l := &data.Loader{Src: ds.Source, Transform: ds.Transform, BatchSize: 64, Workers: *workers, End: n, Raw: *raw}
	err = l.Run(ctx, func(b *data.Batch) error {
		if *raw {
			if _, err := bw.Write(b.X8); err != nil {
				return fmt.Errorf("write %s: %w", *out, err)
			}
		} else {
			buf := make([]byte, len(b.X)*elem)
			for i, v := range b.X {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("write %s: %w", *out, err)
			}
		}
		for i := 0; i < b.N; i++ {
			fmt.Fprintf(sw, "%d\t%d\t%s\n", b.Index[i], b.Label[i], b.Source[i])
		}
		p.Add(b.N)
		return nil
	})
	p.Finish()
	if err != nil {
		return interrupted(err, "nothing was written")
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", srcs.Path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	// The array last: where it is, its sources are too.
	if err := outfile.Commit(srcs, arr); err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stderr, "wrote %d x %d x %d x %d %s to %s (sources in %s.sources.tsv)\n", n, c, h, w, dtype, *out, filepath.Base(*out))
	}
	return nil
}
