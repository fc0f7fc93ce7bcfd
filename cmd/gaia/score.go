package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a list of numbers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// modelIn is what a model takes: its input size, normalization and, from
// MODEL.json, the image transform it was made for ("" for none).
type modelIn struct {
	c, h, w   int
	mean, std []float64
	transform string
}

// modelInput reads the model's input size and normalization from MODEL.json,
// or from -input/-mean/-std when given.
func modelInput(model, input, mean, std string) (modelIn, error) {
	var in modelIn
	meta, merr := gaia.LoadMeta(model)
	if merr == nil {
		in.c, in.h, in.w = meta.InputSize[0], meta.InputSize[1], meta.InputSize[2]
		in.mean, in.std, in.transform = meta.Mean, meta.Std, meta.Transform
	}
	var err error
	if input != "" {
		chw, err := parseCHW(input)
		if err != nil {
			return modelIn{}, usagef("-input %v", err)
		}
		in.c, in.h, in.w = chw[0], chw[1], chw[2]
	}
	if mean != "" {
		if in.mean, err = parseFloats(mean); err != nil {
			return modelIn{}, usagef("-mean %v", err)
		}
	}
	if std != "" {
		if in.std, err = parseFloats(std); err != nil {
			return modelIn{}, usagef("-std %v", err)
		}
	}
	if in.c == 0 {
		return modelIn{}, fmt.Errorf("%v; export the model with scripts/export.py, or give -input CxHxW (and -mean, -std)", merr)
	}
	if in.mean == nil {
		in.mean = make([]float64, in.c)
	}
	if in.std == nil {
		in.std = make([]float64, in.c)
		for i := range in.std {
			in.std[i] = 1
		}
	}
	if len(in.mean) != in.c || len(in.std) != in.c {
		return modelIn{}, fmt.Errorf("mean %v and std %v need %d entries, one per input channel", in.mean, in.std, in.c)
	}
	return in, nil
}

type scoreFlags struct {
	model, device, tapsZ, tapsA string
	detectors                   string
	input, mean, std            string
	batch, workers              int
	odinT, odinEps              float64
	skipBad, quiet              bool
}

func (f *scoreFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	Float64Var(*float64, string, float64, string)
	BoolVar(*bool, string, bool, string)
}) {
	fs.StringVar(&f.model, "model", "", "the TorchScript `file` (MODEL.json beside it gives input size, mean and std)")
	fs.StringVar(&f.device, "device", "auto", "`device`: auto, cpu, cuda, cuda:N, cuda:all or a list (cuda:0,cuda:2): one model replica per device")
	fs.StringVar(&f.detectors, "detectors", "all", "comma-separated `list` of "+strings.Join(gaia.AllDetectors, ", ")+", or all")
	fs.IntVar(&f.batch, "batch", 128, "batch `size`")
	fs.IntVar(&f.workers, "workers", 0, "decoding `goroutines` (default: the number of CPUs)")
	fs.StringVar(&f.tapsZ, "taps-z", "", "GAIA-Z taps: module-path prefixes, kind:KIND, last:N or all (default all)")
	fs.StringVar(&f.tapsA, "taps-a", "", "GAIA-A taps (default last:2, the last two stages)")
	fs.Float64Var(&f.odinT, "odin-temperature", 1000, "ODIN's temperature")
	fs.Float64Var(&f.odinEps, "odin-epsilon", 0.0014, "ODIN's perturbation, in units of the unnormalized input")
	fs.StringVar(&f.input, "input", "", "input size `CxHxW` (default: from MODEL.json)")
	fs.StringVar(&f.mean, "mean", "", "per-channel `mean`s (default: from MODEL.json)")
	fs.StringVar(&f.std, "std", "", "per-channel `std`s (default: from MODEL.json)")
	fs.BoolVar(&f.skipBad, "skip-bad", false, "skip unreadable samples, and count them, instead of stopping")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress on stderr")
}

func runScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", stderr)
	var f scoreFlags
	f.register(fs)
	spec := fs.String("data", "", "the dataset `SPEC`: cifar-bin:PATH, cifar100-bin:PATH, mnist:PATH, folder:PATH, list:PATH or noise:uniform|gaussian,n=N,shape=CxHxW,seed=S; options after commas: resize=HxW, center-crop=HxW, random-crop=HxW, gray, rgb")
	out := fs.String("out", "-", "the score `file` to write (CSV; - for stdout)")
	shard := fs.String("shard", "", "score one part: i/N (0-based), k8s (JOB_COMPLETION_INDEX), slurm (SLURM_ARRAY_TASK_ID) or auto; writes into -out-dir")
	shards := fs.Int("shards", 0, "the number of shards, where the engine does not say (Kubernetes: the Job's completions; or GAIA_SHARDS)")
	outDir := fs.String("out-dir", "", "with -shard: the folder (local or a mounted volume) for shard-I-of-N.csv and its manifest")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.model == "" || *spec == "" {
		return usagef("score: -model and -data are required")
	}
	if f.batch <= 0 {
		return usagef("score: -batch must be positive")
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
	sum, err := scoreSet(ctx, &f, dets, *spec, *out, stdout, stderr, progress)
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

// scoreSet scores one dataset spec into the score file out.
func scoreSet(ctx context.Context, f *scoreFlags, dets []string, spec, out string, stdout, stderr, progress io.Writer) (gaia.Summary, error) {
	return scoreRange(ctx, f, dets, spec, out, nil, stdout, stderr, progress)
}

// shardJob is one shard's part of scoreRange's work.
type shardJob struct {
	shard gaia.Shard
	dir   string
}

// scoreRange scores a dataset spec, or with sh one shard of it into sh.dir
// with its manifest, into the score file out.
func scoreRange(ctx context.Context, f *scoreFlags, dets []string, spec, out string, sh *shardJob, stdout, stderr, progress io.Writer) (gaia.Summary, error) {
	in, err := modelInput(f.model, f.input, f.mean, f.std)
	if err != nil {
		return gaia.Summary{}, err
	}
	// A spec without a transform of its own takes the model's (MODEL.json).
	spec = data.WithTransform(spec, in.transform)
	sp, err := data.ParseSpec(spec)
	if err != nil {
		return gaia.Summary{}, usageError{err.Error()}
	}
	src, err := data.Open(sp)
	if err != nil {
		return gaia.Summary{}, err
	}
	tf, err := data.NewTransform(sp, in.c, in.h, in.w, in.mean, in.std)
	if err != nil {
		return gaia.Summary{}, err
	}
	start, end := 0, src.Len()
	var man *gaia.Manifest
	if sh != nil {
		start, end = sh.shard.Range(src.Len())
		if man, err = shardManifest(f, dets, sp, src, sh.shard, start, end); err != nil {
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
	mods, scorers, err := loadReplicas(f, dets, in.std)
	for _, m := range mods {
		defer m.Close()
	}
	if err != nil {
		return gaia.Summary{}, err
	}
	s := scorers[0]
	if progress != nil {
		fmt.Fprintf(stderr, "model %s on %s; data %s; %s\n", f.model, devicesOf(mods), src.Describe(), tf.Describe())
		if sh != nil {
			fmt.Fprintf(stderr, "shard %s: samples %d to %d of %d -> %s\n", sh.shard, start, end, src.Len(), out)
		}
		fmt.Fprint(stderr, s.Describe())
	}
	sw, err := gaia.CreateScoreWriter(out, dets, stdout)
	if err != nil {
		return gaia.Summary{}, err
	}
	var sum gaia.Summary
	if end > start { // a shard of a set smaller than the shard count may be empty
		l := &data.Loader{Src: src, Transform: tf, BatchSize: f.batch, Workers: f.workers, SkipBad: f.skipBad, Start: start, End: end}
		p := gaia.NewProgress(progress, "score", end-start)
		sum, err = gaia.ScoreDatasetOn(ctx, scorers, l, sw, p)
		if p != nil {
			p.Finish()
		}
		if err != nil {
			sw.Abort()
			return sum, err
		}
		if sum.Rows == 0 {
			sw.Abort()
			return sum, fmt.Errorf("%s: every sample was skipped as unreadable", src.Describe())
		}
	}
	if err := sw.Commit(); err != nil {
		return sum, err
	}
	if len(sum.Skipped) > 0 {
		fmt.Fprintf(stderr, "skipped %d unreadable samples, the first: %v\n", len(sum.Skipped), sum.Skipped[0].Err)
	}
	if out == "-" {
		return sum, nil
	}
	if sh == nil {
		hash, err := gaia.FileSHA256(f.model)
		if err != nil {
			return sum, err
		}
		return sum, gaia.WriteJSON(gaia.ScoreMetaPath(out), provenance(f, dets, spec, s, hash, devicesOf(mods), sum.Rows))
	}
	// The manifest goes last: until it is there, the shard does not count.
	man.Score = *provenance(f, dets, spec, s, man.Score.ModelSHA256, devicesOf(mods), sum.Rows)
	man.Rows, man.Skipped = sum.Rows, len(sum.Skipped)
	if man.FileSHA256, err = gaia.FileSHA256(out); err != nil {
		return sum, err
	}
	return sum, gaia.WriteJSON(gaia.ManifestPath(sh.dir, sh.shard), man)
}

// loadReplicas loads the model on each device of f.device (cuda:all, a
// list, or one) with a scorer each. CPU replicas share the cores.
func loadReplicas(f *scoreFlags, dets []string, std []float64) ([]*torch.Module, []*gaia.Scorer, error) {
	devs, err := torch.Devices(f.device, torch.CUDADeviceCount())
	if err != nil {
		return nil, nil, err
	}
	cpus := 0
	for _, d := range devs {
		if d == "cpu" {
			cpus++
		}
	}
	var mods []*torch.Module
	var scorers []*gaia.Scorer
	for _, d := range devs {
		m, err := torch.Load(f.model, d)
		if err != nil {
			return mods, nil, err
		}
		mods = append(mods, m)
		if cpus > 1 && d == "cpu" {
			m.SetThreads(max(1, torch.NumThreads()/cpus))
		}
		s, err := gaia.NewScorer(m, gaia.Options{Detectors: dets, TapsZ: f.tapsZ, TapsA: f.tapsA,
			ODINTemperature: f.odinT, ODINEpsilon: f.odinEps, Std: std})
		if err != nil {
			return mods, nil, err
		}
		scorers = append(scorers, s)
	}
	return mods, scorers, nil
}

func devicesOf(mods []*torch.Module) string {
	var d []string
	for _, m := range mods {
		d = append(d, m.Device())
	}
	return strings.Join(d, ",")
}

// shardManifest is what a shard's manifest says before scoring: enough to
// tell whether an output already in the folder is this job's.
func shardManifest(f *scoreFlags, dets []string, sp *data.Spec, src data.Source, sh gaia.Shard, start, end int) (*gaia.Manifest, error) {
	hash, err := gaia.FileSHA256(f.model)
	if err != nil {
		return nil, err
	}
	fp, err := data.Fingerprint(sp, src)
	if err != nil {
		return nil, err
	}
	return &gaia.Manifest{Shard: sh.Index, Shards: sh.Count, Start: start, End: end, File: sh.Name() + ".csv",
		DataSHA256: fp, Samples: src.Len(),
		Score: gaia.ScoreMeta{Model: f.model, ModelSHA256: hash, Data: sp.Raw, Detectors: dets},
		ScoreConfig: fmt.Sprintf("taps-z=%q taps-a=%q odin-temperature=%g odin-epsilon=%g input=%q mean=%q std=%q",
			f.tapsZ, f.tapsA, f.odinT, f.odinEps, f.input, f.mean, f.std)}, nil
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

// provenance is what FILE.json (or a shard's manifest) says of a score file:
// the model's identity, the data, the detectors and their taps.
func provenance(f *scoreFlags, dets []string, spec string, s *gaia.Scorer, modelSHA256, device string, rows int) *gaia.ScoreMeta {
	meta := &gaia.ScoreMeta{Model: f.model, ModelSHA256: modelSHA256, Data: spec, Detectors: dets,
		ODINT: f.odinT, ODINEps: f.odinEps, Device: device, LibTorch: torch.Version(), Rows: rows,
		Created: time.Now().UTC().Format(time.RFC3339)}
	for _, t := range s.TapsZ() {
		meta.TapsZ = append(meta.TapsZ, t.Name)
	}
	for _, t := range s.TapsA() {
		meta.TapsA = append(meta.TapsA, t.Name)
	}
	if s.TapsA() != nil {
		meta.FeatureMap = s.FeatureMap().Name
	}
	return meta
}
