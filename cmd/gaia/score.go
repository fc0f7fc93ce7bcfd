package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// scoreFlags are the flags gaia score shares with the commands that open a
// model the same way.
type scoreFlags struct {
	model, device    string
	detectors        string
	input, mean, std string
	batch, workers   int
	skipBad, quiet   bool
	fit              string
	settings         gaia.Settings
	maxImageBytes    int64
}

func (f *scoreFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	BoolVar(*bool, string, bool, string)
	Int64Var(*int64, string, int64, string)
}) {
	fs.StringVar(&f.model, "model", "", "the TorchScript `file` (MODEL.json beside it gives input size, mean and std)")
	fs.StringVar(&f.device, "device", "auto", "`device`: auto, cpu, cuda, cuda:N, cuda:all or a list (cuda:0,cuda:2): one model replica per device")
	fs.StringVar(&f.detectors, "detectors", "all", "comma-separated `list` of detectors (see below), or all")
	fs.IntVar(&f.batch, "batch", 128, "batch `size`")
	fs.IntVar(&f.workers, "workers", 0, "decoding `goroutines` (default: the number of CPUs)")
	fs.StringVar(&f.input, "input", "", "input size `CxHxW` (default: from MODEL.json)")
	fs.StringVar(&f.mean, "mean", "", "per-channel `mean`s (default: from MODEL.json)")
	fs.StringVar(&f.std, "std", "", "per-channel `std`s (default: from MODEL.json)")
	fs.BoolVar(&f.skipBad, "skip-bad", false, "skip unreadable samples, and count them, instead of stopping")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress on stderr")
	fs.Int64Var(&f.maxImageBytes, "max-image-bytes", data.MaxImageBytes, "`bytes` one image may take decoded (channels and bit depth counted); decoding holds at most workers x this")
	fs.StringVar(&f.fit, "fit", "", "a fit `file` (gaia fit) for the detectors that need one (mahalanobis, react, knn, vim, dice, klm)")
}

// check refuses malformed -input, -mean and -std as usage errors (their
// values are checked against the model when it opens).
func (f *scoreFlags) check(cmd string) error {
	if f.input != "" {
		if _, err := gaia.ParseCHW(f.input); err != nil {
			return usagef("%s: -input %v", cmd, err)
		}
	}
	for name, v := range map[string]string{"mean": f.mean, "std": f.std} {
		if v == "" {
			continue
		}
		for _, x := range strings.Split(v, ",") {
			if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
				return usagef("%s: -%s %q is not a list of numbers", cmd, name, v)
			}
		}
	}
	if f.workers < 0 {
		return usagef("%s: -workers must not be negative (0: one per CPU)", cmd)
	}
	if f.maxImageBytes <= 0 {
		return usagef("%s: -max-image-bytes must be positive", cmd)
	}
	data.MaxImageBytes = f.maxImageBytes
	return nil
}

// modelConfig is what the flags say of the model to open.
func (f *scoreFlags) modelConfig(dets []string) gaia.ModelConfig {
	return gaia.ModelConfig{Path: f.model, Device: f.device, Detectors: dets, Settings: f.settings,
		Input: f.input, Mean: f.mean, Std: f.std, Fit: f.fit}
}

// detectorUsage lists the detectors after a command's flags.
func detectorUsage(fs interface{ Output() io.Writer }) {
	fmt.Fprintf(fs.Output(), "\nDetectors (every score: higher = more out-of-distribution):\n%s", gaia.DetectorHelp())
}

func runScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", stderr)
	f := scoreFlags{settings: gaia.Settings{}}
	f.register(fs)
	gaia.AddSettingFlags(fs, f.settings)
	spec := fs.String("data", "", "the dataset `SPEC`: cifar-bin:PATH, cifar100-bin:PATH, mnist:PATH, folder:PATH, list:PATH or noise:uniform|gaussian,n=N,shape=CxHxW,seed=S; options after commas: resize=HxW, center-crop=HxW, random-crop=HxW, gray, rgb")
	out := fs.String("out", "-", "the score `file` to write (CSV; - for stdout)")
	shard := fs.String("shard", "", "score one part: i/N (0-based), k8s (JOB_COMPLETION_INDEX), slurm (SLURM_ARRAY_TASK_ID) or auto; writes into -out-dir")
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
	if f.model == "" || *spec == "" {
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
	if _, err := torch.Devices(f.device, 1); err != nil {
		return usageError{err.Error()}
	}
	dets, err := gaia.ParseDetectors(f.detectors)
	if err != nil {
		return usagef("score: -detectors: %v", err)
	}
	if *shard != "" || *outDir != "" {
		if *shard == "" || *outDir == "" {
			return usagef("score: -shard and -out-dir go together")
		}
		if *out != "-" {
			return usagef("score: with -shard the output goes to -out-dir, not -out")
		}
		sh, err := gaia.ParseShard(*shard, *shards, os.Getenv)
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
	shard gaia.Shard
	dir   string
}

// scoreRange scores a dataset spec, or with sh one shard of it into sh.dir
// with its manifest, into the score file out.
func scoreRange(ctx context.Context, f *scoreFlags, dets []string, spec, out string, sh *shardJob, stdout, stderr, progress io.Writer) (gaia.Summary, error) {
	model, err := gaia.ReadModel(f.modelConfig(dets))
	if err != nil {
		return gaia.Summary{}, err
	}
	ds, err := model.Dataset(spec)
	if err != nil {
		return gaia.Summary{}, err
	}
	// A spec without a transform of its own took the model's (MODEL.json).
	spec = ds.Spec.Raw
	src, tf := ds.Source, ds.Transform
	start, end := 0, src.Len()
	var man *gaia.Manifest
	if sh != nil {
		start, end = sh.shard.Range(src.Len())
		if man, err = shardManifest(model, ds, sh.shard, start, end); err != nil {
			return gaia.Summary{}, err
		}
		done, err := gaia.ShardComplete(sh.dir, sh.shard, man)
		if err != nil {
			return gaia.Summary{}, err
		}
		if done {
			fmt.Fprintf(stderr, "shard %s (samples %d to %d) is already complete in %s: skipped\n", sh.shard, start, end, sh.dir)
			return gaia.Summary{}, nil
		}
		out = gaia.ScoreFilePath(sh.dir, sh.shard)
		// A killed earlier try may have left its temporary file behind.
		stale, _ := filepath.Glob(filepath.Join(sh.dir, "."+sh.shard.Name()+".csv.partial-*"))
		for _, p := range stale {
			os.Remove(p)
		}
	}
	if err := model.Load(); err != nil {
		return gaia.Summary{}, err
	}
	defer model.Close()
	if progress != nil {
		fmt.Fprintf(stderr, "model %s on %s; data %s; %s\n", f.model, model.Devices(), src.Describe(), tf.Describe())
		if sh != nil {
			fmt.Fprintf(stderr, "shard %s: samples %d to %d of %d -> %s\n", sh.shard, start, end, src.Len(), out)
		}
		fmt.Fprint(stderr, model.Scorer().Describe())
	}
	for _, w := range model.Scorer().Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	sw, err := gaia.CreateScoreWriter(out, dets, stdout)
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
		l := &data.Loader{Src: src, Transform: tf, BatchSize: f.batch, Workers: f.workers, SkipBad: f.skipBad, Start: start, End: end}
		p := gaia.NewProgress(progress, "score", end-start)
		sum, err = gaia.ScoreDatasetOn(ctx, model.Scorers, l, sw, p)
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
		if sidecar, err = gaia.JSONFile(model.Provenance(spec, sum.Rows)); err != nil {
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
	if man.FileSHA256, err = gaia.FileSHA256(out); err != nil {
		return sum, err
	}
	return sum, gaia.WriteJSON(gaia.ManifestPath(sh.dir, sh.shard), man)
}

// shardManifest is what a shard's manifest says before scoring: enough to
// tell whether an output already in the folder is this job's.
func shardManifest(model *gaia.Model, ds *gaia.Dataset, sh gaia.Shard, start, end int) (*gaia.Manifest, error) {
	fp, err := data.Fingerprint(ds.Spec, ds.Source)
	if err != nil {
		return nil, err
	}
	return &gaia.Manifest{Shard: sh.Index, Shards: sh.Count, Start: start, End: end, File: sh.Name() + ".csv",
		DataSHA256: fp, Samples: ds.Source.Len(),
		Score:       gaia.ScoreMeta{Model: model.Config.Path, ModelSHA256: model.SHA256, Data: ds.Spec.Raw, Detectors: model.Config.Detectors},
		ScoreConfig: model.ScoreConfig()}, nil
}

// runShard scores one shard of a dataset into dir; a shard already complete
// there is skipped.
func runShard(f *scoreFlags, dets []string, sh gaia.Shard, spec, dir string, stdout, stderr io.Writer) error {
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
		fmt.Fprintf(stderr, "shard %s: scored %d samples in %.1fs -> %s\n", sh, sum.Rows, sum.Elapsed.Seconds(), gaia.ScoreFilePath(dir, sh))
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
