package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/gaia/report"
	"github.com/gaia-ood/gaia/torch"
)

// Phase is one timed step of a run.
type Phase struct {
	Name    string
	Seconds float64
	Images  int
	Reused  bool
}

// Result is what Run produced.
type Result struct {
	Table  *gaia.EvalTable
	Out    string
	Phases []Phase
}

type prepared struct {
	set  Set
	spec *data.Spec
	src  data.Source
	tf   *data.Transform
	file string // score file
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(set string) string { return unsafeName.ReplaceAllString(set, "_") }

// Run runs the benchmark. Progress bars and notes go to progress (nil:
// quiet). Every input is checked before any scoring starts.
func Run(ctx context.Context, c *Config, progress io.Writer) (*Result, error) {
	logf := func(format string, args ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format, args...)
		}
	}
	t0 := time.Now()
	model, err := gaia.ReadModel(gaia.ModelConfig{Path: c.Model, Device: c.Device, Detectors: c.detectors, Settings: c.settings})
	if err != nil {
		return nil, err
	}
	c3, h, w := model.Input()
	var sets []*prepared
	for _, s := range append([]Set{c.ID}, c.OOD...) {
		p := &prepared{set: s, file: filepath.Join(c.Out, "scores", fileName(s.Name)+".csv")}
		ds, err := model.Dataset(s.Data)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		// A set without a transform of its own took the model's (MODEL.json).
		p.set.Data, p.spec, p.src, p.tf = ds.Spec.Raw, ds.Spec, ds.Source, ds.Transform
		if p.src.Len() == 0 {
			return nil, fmt.Errorf("set %s: %s has no images", s.Name, p.src.Describe())
		}
		// The first sample must fit the model (MODEL.json's input size).
		img, src, _, err := p.src.Load(0)
		if err == nil {
			err = p.tf.Apply(img, 0, make([]float32, c3*h*w))
		}
		if err != nil {
			return nil, fmt.Errorf("set %s: %s: %w", s.Name, src, err)
		}
		sets = append(sets, p)
	}
	if err := os.MkdirAll(filepath.Join(c.Out, "scores"), 0o755); err != nil {
		return nil, err
	}
	res := &Result{Out: c.Out}
	var fitPhase *Phase
	if c.Fit != nil {
		if fitPhase, err = fitOnce(ctx, c, model, progress); err != nil {
			return nil, err
		}
	}
	if err := model.Load(); err != nil {
		return nil, err
	}
	defer model.Close()
	m, scorer, meta, modelHash := model.Replicas[0], model.Scorer(), model.Meta, model.SHA256
	setup := time.Since(t0).Seconds()
	if fitPhase != nil {
		setup -= fitPhase.Seconds
	}
	res.Phases = append(res.Phases, Phase{Name: "check inputs, load model", Seconds: setup})
	if fitPhase != nil {
		res.Phases = append(res.Phases, *fitPhase)
	}
	for _, w := range scorer.Warnings() {
		logf("warning: %s\n", w)
	}
	logf("model %s (%s) on %s, LibTorch %s\n%s", c.Model, meta.Arch, m.Device(), torch.Version(), scorer.Describe())

	files := map[string]*gaia.ScoreFile{}
	for _, p := range sets {
		key := scoreKey(modelHash, model.FitSHA, p, c)
		keyFile := strings.TrimSuffix(p.file, ".csv") + ".key"
		start := time.Now()
		if old, err := os.ReadFile(keyFile); err == nil && string(old) == key {
			if sf, err := gaia.ReadScoreFile(p.file); err == nil {
				files[p.set.Name] = sf
				logf("%s: reusing %s (same model, data and detectors)\n", p.set.Name, p.file)
				res.Phases = append(res.Phases, Phase{Name: "score " + p.set.Name, Seconds: time.Since(start).Seconds(), Images: len(sf.Rows), Reused: true})
				continue
			}
		}
		os.Remove(keyFile)
		sw, err := gaia.CreateScoreWriter(p.file, c.detectors, nil)
		if err != nil {
			return nil, err
		}
		l := &data.Loader{Src: p.src, Transform: p.tf, BatchSize: c.Batch, Workers: c.Workers, SkipBad: c.SkipBad}
		bar := gaia.NewProgress(progress, p.set.Name, p.src.Len())
		sum, err := gaia.ScoreDataset(ctx, scorer, l, sw, bar)
		bar.Finish()
		if err == nil && sum.Rows == 0 {
			err = fmt.Errorf("set %s: every sample was skipped as unreadable", p.set.Name)
		}
		if err != nil {
			sw.Abort()
			return nil, fmt.Errorf("set %s: %w", p.set.Name, err)
		}
		if err := sw.Commit(); err != nil {
			return nil, err
		}
		if err := gaia.WriteFileAtomic(keyFile, []byte(key)); err != nil {
			return nil, err
		}
		if len(sum.Skipped) > 0 {
			logf("%s: skipped %d unreadable samples, the first: %v\n", p.set.Name, len(sum.Skipped), sum.Skipped[0].Err)
		}
		sf, err := gaia.ReadScoreFile(p.file)
		if err != nil {
			return nil, err
		}
		files[p.set.Name] = sf
		res.Phases = append(res.Phases, Phase{Name: "score " + p.set.Name, Seconds: sum.Elapsed.Seconds(), Images: sum.Rows})
	}

	start := time.Now()
	var oods []gaia.OODSet
	for _, o := range c.OOD {
		oods = append(oods, gaia.OODSet{Name: o.Name, Scores: files[o.Name]})
	}
	table, err := gaia.Evaluate(files[c.ID.Name], oods)
	if err != nil {
		return nil, err
	}
	res.Table = table
	var buf bytes.Buffer
	if err := table.Write(&buf, "csv", false); err != nil {
		return nil, err
	}
	if err := gaia.WriteFileAtomic(filepath.Join(c.Out, "metrics.csv"), buf.Bytes()); err != nil {
		return nil, err
	}
	buf.Reset()
	if err := table.Write(&buf, "json", false); err != nil {
		return nil, err
	}
	if err := gaia.WriteFileAtomic(filepath.Join(c.Out, "metrics.json"), buf.Bytes()); err != nil {
		return nil, err
	}
	if err := plots(c, files); err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, Phase{Name: "metrics and plots", Seconds: time.Since(start).Seconds()})
	md := markdown(c, meta, m, scorer, model.Fit, table, res.Phases, sets)
	if err := gaia.WriteFileAtomic(filepath.Join(c.Out, "report.md"), []byte(md)); err != nil {
		return nil, err
	}
	return res, nil
}

func plots(c *Config, files map[string]*gaia.ScoreFile) error {
	id := files[c.ID.Name]
	for _, o := range c.OOD {
		var curves []report.Curve
		for _, det := range c.detectors {
			a, _ := id.Column(det)
			b, err := files[o.Name].Column(det)
			if err != nil {
				return err
			}
			curves = append(curves, report.Curve{Name: det, Points: report.ROCPoints(gaia.ROCCurve(a, b))})
		}
		title := fmt.Sprintf("ROC: %s (ID) vs %s (OOD)", c.ID.Name, o.Name)
		if err := report.SaveROC(filepath.Join(c.Out, "roc-"+fileName(o.Name)+".png"), title, curves); err != nil {
			return err
		}
	}
	for _, det := range c.detectors {
		var series []report.Series
		for _, s := range append([]Set{c.ID}, c.OOD...) {
			v, err := files[s.Name].Column(det)
			if err != nil {
				return err
			}
			series = append(series, report.Series{Name: s.Name, Scores: v})
		}
		if err := report.SaveHistogram(filepath.Join(c.Out, "hist-"+det+".png"), det+" scores", series); err != nil {
			return err
		}
	}
	return nil
}

func markdown(c *Config, meta *gaia.Meta, m *torch.Module, s *gaia.Scorer, fit *gaia.Fit, t *gaia.EvalTable, phases []Phase, sets []*prepared) string {
	var b strings.Builder
	name := c.Name
	if name == "" {
		name = filepath.Base(c.Out)
	}
	fmt.Fprintf(&b, "# %s\n\n", name)
	if c.Protocol != "" {
		fmt.Fprintf(&b, "Protocol: %s\n\n", strings.TrimSpace(c.Protocol))
	}
	var tb bytes.Buffer
	_ = t.Write(&tb, "markdown", false)
	b.Write(tb.Bytes())
	fmt.Fprintf(&b, "\n## Setup\n\n")
	fmt.Fprintf(&b, "- Model: `%s` (%s, %s, input %dx%dx%d)\n", c.Model, meta.Arch, meta.ExportedWith, meta.InputSize[0], meta.InputSize[1], meta.InputSize[2])
	if t.IDAccuracy != nil {
		fmt.Fprintf(&b, "- Accuracy on %s: %.2f%% (%d labelled images)\n", c.ID.Name, 100**t.IDAccuracy, t.IDLabelled)
	}
	for _, p := range sets {
		fmt.Fprintf(&b, "- %s: `%s`: %s; %s\n", p.set.Name, p.set.Data, p.src.Describe(), p.tf.Describe())
	}
	fmt.Fprintf(&b, "- Detectors: %s; settings: %s\n", strings.Join(c.detectors, ", "), c.settings.For(c.detectors).Canonical())
	if fit != nil {
		fmt.Fprintf(&b, "- Fit of the feature-based detectors: `%s` (%d samples, %d feature vectors kept; `fit.safetensors`)\n", fit.Meta.Data, fit.N, fit.M)
	}
	for _, w := range s.Warnings() {
		fmt.Fprintf(&b, "- Warning: %s\n", w)
	}
	for _, line := range strings.Split(strings.TrimSpace(s.Describe()), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "- %s\n", line)
		}
	}
	fmt.Fprintf(&b, "- LibTorch %s on %s, %d intra-op threads, %d CPUs, %s/%s; batch %d\n", torch.Version(), m.Device(), torch.NumThreads(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, c.Batch)
	fmt.Fprintf(&b, "- Date: %s; gaia %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), gaia.Version)
	fmt.Fprintf(&b, "\n## Time per phase\n\n| phase | seconds | images | images/s |\n| --- | ---: | ---: | ---: |\n")
	for _, p := range phases {
		rate, note := "", ""
		if p.Images > 0 && p.Seconds > 0 && !p.Reused {
			rate = fmt.Sprintf("%.1f", float64(p.Images)/p.Seconds)
		}
		if p.Reused {
			note = " (score file reused)"
		}
		imgs := ""
		if p.Images > 0 {
			imgs = fmt.Sprint(p.Images)
		}
		fmt.Fprintf(&b, "| %s%s | %.1f | %s | %s |\n", p.Name, note, p.Seconds, imgs, rate)
	}
	fmt.Fprintf(&b, "\n## Files\n\n- `metrics.csv`, `metrics.json`: every metric (also AUPR-In, AUPR-Out, detection error, and FPR95 with OOD positive)\n- `scores/`: one score file per set\n")
	var plotsList []string
	for _, o := range c.OOD {
		plotsList = append(plotsList, "roc-"+fileName(o.Name)+".png")
	}
	sort.Strings(plotsList)
	fmt.Fprintf(&b, "- ROC curves: %s\n- score histograms: %s\n", strings.Join(plotsList, ", "), "hist-<detector>.png")
	return b.String()
}

// fitOnce makes the config's fit in c.Out/fit.safetensors, or reuses the
// one there when model, data and fit options are unchanged, and gives it
// to the model.
func fitOnce(ctx context.Context, c *Config, model *gaia.Model, progress io.Writer) (*Phase, error) {
	start := time.Now()
	path := filepath.Join(c.Out, "fit.safetensors")
	keyFile := filepath.Join(c.Out, "fit.key")
	k := map[string]any{"gaia": gaia.Version, "model_sha256": model.SHA256, "data": c.Fit.Data,
		"knn_sample": c.Fit.KNNSample, "seed": c.Fit.Seed}
	if sp, err := data.ParseSpec(c.Fit.Data); err == nil {
		if st, err := os.Stat(sp.Arg); err == nil {
			k["data_size"], k["data_mtime"] = st.Size(), st.ModTime().UnixNano()
		}
	}
	raw, _ := json.Marshal(k)
	key := string(raw) + "\n"
	reused := false
	if old, err := os.ReadFile(keyFile); err == nil && string(old) == key {
		if _, err := gaia.ReadFit(path); err == nil {
			reused = true
		}
	}
	n := 0
	if !reused {
		os.Remove(keyFile)
		fm, err := gaia.OpenModel(gaia.ModelConfig{Path: c.Model, Device: firstDevice(c.Device)})
		if err != nil {
			return nil, err
		}
		defer fm.Close()
		ds, err := fm.Dataset(c.Fit.Data)
		if err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
		bar := gaia.NewProgress(progress, "fit", ds.Source.Len())
		run := &gaia.FitRun{Model: fm, Data: ds, KNNSample: c.Fit.KNNSample, Seed: c.Fit.Seed, Batch: c.Batch,
			Workers: c.Workers, SkipBad: c.SkipBad, NeedLabels: slices.Contains(c.detectors, "mahalanobis"), Progress: bar}
		fit, err := run.Run(ctx)
		bar.Finish()
		if err != nil {
			return nil, err
		}
		if err := gaia.WriteFit(path, fit); err != nil {
			return nil, err
		}
		if err := gaia.WriteFileAtomic(keyFile, []byte(key)); err != nil {
			return nil, err
		}
		n = fit.N
	} else if progress != nil {
		fmt.Fprintf(progress, "fit: reusing %s (same model, data and options)\n", path)
	}
	fit, err := gaia.ReadFit(path)
	if err != nil {
		return nil, err
	}
	sha, err := gaia.FileSHA256(path)
	if err != nil {
		return nil, err
	}
	model.Config.Fit, model.Fit, model.FitSHA = path, fit, sha
	return &Phase{Name: "fit " + c.Fit.Data, Seconds: time.Since(start).Seconds(), Images: max(n, fit.N), Reused: reused}, nil
}

// firstDevice is the first device of a device list (a fit runs on one).
func firstDevice(dev string) string {
	devs, err := torch.Devices(dev, torch.CUDADeviceCount())
	if err != nil || len(devs) == 0 {
		return dev
	}
	return devs[0]
}

// scoreKey identifies what a score file depends on: the model's bytes, the
// data spec and the state of its path, the detectors and their options.
func scoreKey(modelHash, fitSHA string, p *prepared, c *Config) string {
	k := map[string]any{
		"gaia": gaia.Version, "model_sha256": modelHash, "data": p.set.Data,
		"detectors": c.detectors, "settings": c.settings.For(c.detectors).Canonical(), "skip_bad": c.SkipBad,
		"fit_sha256": fitSHA,
	}
	if st, err := os.Stat(p.spec.Arg); err == nil {
		k["data_size"], k["data_mtime"] = st.Size(), st.ModTime().UnixNano()
	}
	raw, _ := json.Marshal(k)
	return string(raw) + "\n"
}
