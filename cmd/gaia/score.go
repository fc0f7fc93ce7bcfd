package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/progress"
	"github.com/gaia-ood/gaia/internal/scorefile"
	"github.com/gaia-ood/gaia/internal/shard"
	"github.com/gaia-ood/gaia/torch"
)

// scoreFlags are the flags gaia score shares with the commands that open a
// model the same way.
type scoreFlags struct {
	cli.ModelFlags
	detectors      string
	batch, workers int
	skipBad, quiet bool
	settings       gaia.Settings
	maxImageBytes  int64
	maxScans       int
}

func (f *scoreFlags) register(fs *flag.FlagSet) {
	f.ModelFlags.Register(fs, cli.ManyDevices)
	fs.StringVar(&f.detectors, "detectors", "all", "comma-separated `list` of detectors (see below), or all")
	fs.IntVar(&f.batch, "batch", 128, "batch `size`")
	fs.IntVar(&f.workers, "workers", 0, "decoding `goroutines` (default: the number of CPUs)")
	fs.BoolVar(&f.skipBad, "skip-bad", false, "skip unreadable samples, and count them, instead of stopping")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress on stderr")
	fs.Int64Var(&f.maxImageBytes, "max-image-bytes", data.MaxImageBytes, "`bytes` one image may take decoded (channels and bit depth counted); decoding holds at most workers x this")
	fs.IntVar(&f.maxScans, "max-scans", data.MaxScans, "`scans` a progressive JPEG may have (each scan is a pass over the whole image)")
}

// check refuses malformed -input, -mean and -std and bad numbers as usage
// errors (their values are checked against the model when it opens).
func (f *scoreFlags) check(cmd string) error {
	if _, err := f.ModelFlags.Options(); err != nil {
		return usagef("%s: %v", cmd, err)
	}
	if f.workers < 0 {
		return usagef("%s: -workers must not be negative (0: one per CPU)", cmd)
	}
	if f.maxImageBytes <= 0 || f.maxScans <= 0 {
		return usagef("%s: -max-image-bytes and -max-scans must be positive", cmd)
	}
	return nil
}

// options is what the flags say of the model to open, for a batch job (no
// warm-up: its first batch is one).
func (f *scoreFlags) options(dets []string) gaia.Options {
	o, _ := f.ModelFlags.Options() // checked by check
	o.Detectors, o.Settings, o.SkipWarmup = dets, f.settings, true
	o.Limits = data.Limits{Bytes: f.maxImageBytes, Scans: f.maxScans}
	return o
}

// datasetOptions is how the flags read a dataset.
func (f *scoreFlags) datasetOptions(progress func(int)) gaia.DatasetOptions {
	return gaia.DatasetOptions{Batch: f.batch, Workers: f.workers, SkipBad: f.skipBad, Progress: progress,
		Limits: data.Limits{Bytes: f.maxImageBytes, Scans: f.maxScans}}
}

// detectorUsage lists the detectors after a command's flags.
func detectorUsage(fs interface{ Output() io.Writer }) {
	fmt.Fprintf(fs.Output(), "\nDetectors (every score: higher = more out-of-distribution):\n%s", cli.DetectorHelp())
}

func runScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", stderr)
	f := scoreFlags{settings: gaia.Settings{}}
	f.register(fs)
	cli.AddSettingFlags(fs, f.settings)
	spec := fs.String("data", "", "the dataset `SPEC`: cifar-bin:PATH, cifar100-bin:PATH, mnist:PATH, folder:PATH, list:PATH or noise:uniform|gaussian,n=N,shape=CxHxW,seed=S; options after commas: resize=HxW, center-crop=HxW, random-crop=HxW, gray, rgb")
	out := fs.String("out", "-", "the score `file` to write (CSV; - for stdout)")
	shardSpec := fs.String("shard", "", "score one part: i/N (0-based), k8s (JOB_COMPLETION_INDEX), slurm (SLURM_ARRAY_TASK_ID) or auto; writes into -out-dir")
	shards := fs.Int("shards", 0, "the number of shards, where the engine does not say (Kubernetes: the Job's completions; or GAIA_SHARDS)")
	outDir := fs.String("out-dir", "", "with -shard: the folder (local or a mounted volume) for shard-I-of-N.csv and its manifest")
	usage := fs.Usage
	fs.Usage = func() { usage(); detectorUsage(fs) }
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("score"); err != nil {
		return err
	}
	if f.Model == "" || *spec == "" {
		return usagef("score: -model and -data are required")
	}
	if f.batch <= 0 {
		return usagef("score: -batch must be positive")
	}
	if err := f.check("score"); err != nil {
		return err
	}
	if _, err := data.ParseSpec(*spec); err != nil {
		return usageError{err.Error()}
	}
	if _, err := torch.Devices(f.Device, 1); err != nil {
		return usageError{err.Error()}
	}
	dets, err := gaia.ParseDetectors(f.detectors)
	if err != nil {
		return usagef("score: -detectors: %v", err)
	}
	if *shardSpec != "" || *outDir != "" {
		if *shardSpec == "" || *outDir == "" {
			return usagef("score: -shard and -out-dir go together")
		}
		if *out != "-" {
			return usagef("score: with -shard the output goes to -out-dir, not -out")
		}
		sh, err := shard.Parse(*shardSpec, *shards, os.Getenv)
		if err != nil {
			return usageError{err.Error()}
		}
		return runShard(&f, dets, sh, *spec, *outDir, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	sum, err := scoreRange(ctx, &f, dets, *spec, *out, nil, stdout, stderr, progress)
	if err != nil {
		return err
	}
	if !f.quiet {
		fmt.Fprintf(stderr, "scored %d samples in %.1fs", sum.Rows, sum.Elapsed.Seconds())
		if *out != "-" {
			fmt.Fprintf(stderr, " -> %s", *out)
		}
		fmt.Fprintln(stderr)
	}
	return nil
}

// shardJob is one shard's part of scoreRange's work.
type shardJob struct {
	shard shard.Shard
	dir   string
}

// scoreRange scores a dataset spec, or with sh one shard of it into sh.dir
// with its manifest, into the score file out.
func scoreRange(ctx context.Context, f *scoreFlags, dets []string, spec, out string, sh *shardJob, stdout, stderr, progressW io.Writer) (gaia.Summary, error) {
	opt := f.options(dets)
	meta, err := gaia.ReadMeta(f.Model, opt)
	if err != nil {
		return gaia.Summary{}, err
	}
	ds, err := gaia.NewDataset(spec, meta)
	if err != nil {
		return gaia.Summary{}, err
	}
	// A spec without a transform of its own took the model's (MODEL.json).
	spec = ds.Spec.Raw
	src, tf := ds.Source, ds.Transform
	start, end := 0, src.Len()
	var man *shard.Manifest
	if sh != nil {
		// Whether this shard is done already, before the model is loaded.
		start, end = sh.shard.Range(src.Len())
		if man, err = shardManifest(f.Model, opt, ds, sh.shard, start, end); err != nil {
			return gaia.Summary{}, err
		}
		done, err := shard.Complete(sh.dir, sh.shard, man)
		if err != nil {
			return gaia.Summary{}, err
		}
		if done {
			fmt.Fprintf(stderr, "shard %s (samples %d to %d) is already complete in %s: skipped\n", sh.shard, start, end, sh.dir)
			return gaia.Summary{}, nil
		}
		out = shard.ScoreFilePath(sh.dir, sh.shard)
		// A killed earlier try may have left its temporary file behind.
		stale, _ := filepath.Glob(filepath.Join(sh.dir, "."+sh.shard.Name()+".csv.partial-*"))
		for _, p := range stale {
			os.Remove(p)
		}
	}
	model, err := gaia.Open(ctx, f.Model, opt)
	if err != nil {
		return gaia.Summary{}, err
	}
	defer model.Close()
	if progressW != nil {
		fmt.Fprintf(stderr, "model %s on %s; data %s; %s\n", f.Model, model.Devices(), src.Describe(), tf.Describe())
		if sh != nil {
			fmt.Fprintf(stderr, "shard %s: samples %d to %d of %d -> %s\n", sh.shard, start, end, src.Len(), out)
		}
		fmt.Fprint(stderr, model.Uses())
	}
	for _, w := range model.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	sw, err := scorefile.CreateContext(ctx, out, dets, stdout)
	if err != nil {
		return gaia.Summary{}, err
	}
	if sh == nil { // a shard's manifest, not a sidecar, says it is complete
		if err := sw.WithSidecar(); err != nil {
			return gaia.Summary{}, err
		}
	}
	var sum gaia.Summary
	if end > start { // a shard of a set smaller than the shard count may be empty
		p := progress.New(progressW, "score", end-start)
		do := f.datasetOptions(p.Add)
		do.Start, do.End = start, end
		sum, err = model.ScoreDataset(ctx, ds, do, sw.Append)
		if p != nil {
			p.Finish()
		}
		if err != nil {
			sw.Abort()
			kept := fmt.Sprintf("nothing was written to %s (an interrupted run leaves no partial file); run it again", out)
			if sh != nil {
				kept = fmt.Sprintf("this shard left nothing in %s; shards complete there are kept, and a rerun skips them", sh.dir)
			}
			return sum, interrupted(err, kept)
		}
		if sum.Rows == 0 {
			sw.Abort()
			return sum, fmt.Errorf("%s: every sample was skipped as unreadable", src.Describe())
		}
	}
	var sidecar []byte
	if sh == nil && out != "-" {
		if sidecar, err = outfile.JSON(model.Provenance(spec, sum.Rows)); err != nil {
			sw.Abort()
			return sum, err
		}
	}
	if err := sw.CommitWith(sidecar); err != nil {
		return sum, err
	}
	if len(sum.Skipped) > 0 {
		fmt.Fprintf(stderr, "skipped %d unreadable samples, the first: %v\n", len(sum.Skipped), sum.Skipped[0].Err)
	}
	if nan := sw.NaNs(); nan != nil {
		var parts []string
		for i, n := range nan {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", dets[i], n))
			}
		}
		fmt.Fprintf(stderr, "warning: NaN scores of %d samples (%s): the model's outputs were not finite for them (check --mean/--std and the inputs); eval ranks NaN as the most OOD and a gate rejects it\n",
			slices.Max(nan), strings.Join(parts, ", "))
	}
	if out == "-" || sh == nil {
		return sum, nil
	}
	// The manifest goes last: until it is there, the shard does not count.
	man.Score = *model.Provenance(spec, sum.Rows)
	man.Rows, man.Skipped = sum.Rows, len(sum.Skipped)
	if man.FileSHA256, err = digest.File(out); err != nil {
		return sum, err
	}
	return sum, outfile.WriteJSON(shard.ManifestPath(sh.dir, sh.shard), man)
}

// shardManifest is what a shard's manifest says before scoring: enough to
// tell whether an output already in the folder is this job's, without
// loading the model.
func shardManifest(model string, opt gaia.Options, ds *gaia.Dataset, sh shard.Shard, start, end int) (*shard.Manifest, error) {
	fp, err := data.Fingerprint(ds.Spec, ds.Source)
	if err != nil {
		return nil, err
	}
	sha, err := digest.File(model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	config, err := gaia.ScoreConfig(opt)
	if err != nil {
		return nil, err
	}
	return &shard.Manifest{Shard: sh.Index, Shards: sh.Count, Start: start, End: end, File: sh.Name() + ".csv",
		DataSHA256: fp, Samples: ds.Source.Len(),
		Score:       gaia.ScoreMeta{Model: model, ModelSHA256: sha, Data: ds.Spec.Raw, Detectors: opt.Detectors},
		ScoreConfig: config}, nil
}

// runShard scores one shard of a dataset into dir; a shard already complete
// there is skipped.
func runShard(f *scoreFlags, dets []string, sh shard.Shard, spec, dir string, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	sum, err := scoreRange(ctx, f, dets, spec, "", &shardJob{sh, dir}, stdout, stderr, progress)
	if err != nil {
		return fmt.Errorf("shard %s: %w", sh, err)
	}
	if !f.quiet && sum.Elapsed > 0 {
		fmt.Fprintf(stderr, "shard %s: scored %d samples in %.1fs -> %s\n", sh, sum.Rows, sum.Elapsed.Seconds(), shard.ScoreFilePath(dir, sh))
	}
	return nil
}

// needLibTorch refuses a command that loads models in a build without
// LibTorch, saying what this build can do.
func needLibTorch(cmd string) error {
	if torch.Available() {
		return nil
	}
	return fmt.Errorf("gaia %s needs LibTorch to load a model: %w; build gaia with cgo (make build) for that. This build runs eval, calibrate and merge", cmd, torch.ErrNoLibTorch)
}
