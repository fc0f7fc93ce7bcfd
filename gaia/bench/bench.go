package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/gaia/report"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/progress"
	"github.com/gaia-ood/gaia/internal/scorefile"
	"github.com/gaia-ood/gaia/torch"
)

// Phase is one timed step of a run (as report.html lists them).
type Phase = report.Phase

// Result is what Run produced.
type Result struct {
	Table  *gaia.EvalTable
	Out    string
	Phases []Phase
}

type prepared struct {
	set  Set
	ds   *gaia.Dataset
	file string // score file
}

// Run runs the benchmark. Progress bars and notes go to progress (nil:
// quiet). Every input is checked before any scoring starts.
func Run(ctx context.Context, c *Config, progressW io.Writer) (*Result, error) {
	logf := func(format string, args ...any) {
		if progressW != nil {
			fmt.Fprintf(progressW, format, args...)
		}
	}
	t0 := time.Now()
	meta, err := gaia.ReadMeta(c.Model, gaia.Options{})
	if err != nil {
		return nil, err
	}
	c3, h, w := meta.InputSize[0], meta.InputSize[1], meta.InputSize[2]
	var sets []*prepared
	for _, s := range append([]Set{c.ID}, c.OOD...) {
		p := &prepared{set: s, file: filepath.Join(c.Out, "scores", report.FileName(s.Name)+".csv")}
		ds, err := gaia.NewDataset(s.Data, meta)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		// A set without a transform of its own took the model's (MODEL.json).
		p.set.Data, p.ds = ds.Spec.Raw, ds
		if ds.Source.Len() == 0 {
			return nil, fmt.Errorf("set %s: %s has no images", s.Name, ds.Source.Describe())
		}
		// The transform must be able to make the model's input, and the
		// first sample must fit the model (MODEL.json's input size).
		if err := ds.Transform.Feasible(data.DefaultLimits().Bytes); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		img, src, _, err := ds.Source.Load(0)
		if err == nil {
			err = ds.Transform.Apply(img, 0, make([]float32, c3*h*w))
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
	var fit *gaia.Fit
	fitPath := ""
	if c.Fit != nil {
		if fitPhase, fit, err = fitOnce(ctx, c, progressW); err != nil {
			return nil, err
		}
		fitPath = filepath.Join(c.Out, "fit.safetensors")
	}
	model, err := gaia.Open(ctx, c.Model, gaia.Options{Device: c.Device, Detectors: c.detectors, Settings: c.settings, Fit: fitPath, SkipWarmup: true})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	setup := time.Since(t0).Seconds()
	if fitPhase != nil {
		setup -= fitPhase.Seconds
	}
	res.Phases = append(res.Phases, Phase{Name: "check inputs, load model", Seconds: setup})
	if fitPhase != nil {
		res.Phases = append(res.Phases, *fitPhase)
	}
	for _, w := range model.Warnings() {
		logf("warning: %s\n", w)
	}
	logf("model %s (%s) on %s, LibTorch %s\n%s", c.Model, meta.Arch, model.Devices(), torch.Version(), model.Uses())

	files := map[string]*gaia.ScoreFile{}
	metas := map[string]*gaia.ScoreMeta{}
	for _, p := range sets {
		fitSHA := ""
		if f := model.FitFile(); f != nil {
			fitSHA = f.SHA256
		}
		key := scoreKey(model.SHA256(), fitSHA, p, c)
		keyFile := strings.TrimSuffix(p.file, ".csv") + ".key"
		start := time.Now()
		if old, err := os.ReadFile(keyFile); err == nil && string(old) == key {
			if sf, err := gaia.ReadScoreFile(p.file); err == nil {
				files[p.set.Name] = sf
				metas[p.set.Name] = model.Provenance(p.set.Data, len(sf.Rows))
				logf("%s: reusing %s (same model, data and detectors)\n", p.set.Name, p.file)
				res.Phases = append(res.Phases, Phase{Name: "score " + p.set.Name, Seconds: time.Since(start).Seconds(), Images: len(sf.Rows), Reused: true})
				continue
			}
		}
		os.Remove(keyFile)
		sw, err := scorefile.Create(p.file, c.detectors, nil)
		if err != nil {
			return nil, err
		}
		if err := sw.WithSidecar(); err != nil { // so that gaia report can redo the page
			sw.Abort()
			return nil, err
		}
		bar := progress.New(progressW, p.set.Name, p.ds.Source.Len())
		sum, err := model.ScoreDataset(ctx, p.ds, gaia.DatasetOptions{Batch: c.Batch, Workers: c.Workers, SkipBad: c.SkipBad, Progress: bar.Add}, sw.Append)
		bar.Finish()
		if err == nil && sum.Rows == 0 {
			err = fmt.Errorf("set %s: every sample was skipped as unreadable", p.set.Name)
		}
		if err != nil {
			sw.Abort()
			return nil, fmt.Errorf("set %s: %w", p.set.Name, err)
		}
		metas[p.set.Name] = model.Provenance(p.set.Data, sum.Rows)
		sidecar, err := outfile.JSON(metas[p.set.Name])
		if err != nil {
			sw.Abort()
			return nil, err
		}
		if err := sw.CommitWith(sidecar); err != nil {
			return nil, err
		}
		if err := outfile.WriteFile(keyFile, []byte(key)); err != nil {
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
	table, err := gaia.Evaluate(files[c.ID.Name], oods, c.EvalOptions())
	if err != nil {
		return nil, err
	}
	res.Table = table
	var buf bytes.Buffer
	if err := table.Write(&buf, "csv", false); err != nil {
		return nil, err
	}
	if err := outfile.WriteFile(filepath.Join(c.Out, "metrics.csv"), buf.Bytes()); err != nil {
		return nil, err
	}
	buf.Reset()
	if err := table.Write(&buf, "json", false); err != nil {
		return nil, err
	}
	if err := outfile.WriteFile(filepath.Join(c.Out, "metrics.json"), buf.Bytes()); err != nil {
		return nil, err
	}
	setupList := setupItems(c, meta, model, fit, table, sets)
	in := report.Input{Title: c.title(), Protocol: strings.TrimSpace(c.Protocol), Setup: setupList, Gallery: c.Gallery, Table: table,
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	in.ID = report.Set{Name: c.ID.Name, Scores: files[c.ID.Name], Meta: metas[c.ID.Name]}
	for _, o := range c.OOD {
		in.OOD = append(in.OOD, report.Set{Name: o.Name, Scores: files[o.Name], Meta: metas[o.Name]})
	}
	in.Detectors = c.detectors
	page, err := report.Build(in)
	if err != nil {
		return nil, err
	}
	for _, f := range append(page.ROC, page.Hist...) {
		if err := outfile.WriteFile(filepath.Join(c.Out, f.File), f.PNG); err != nil {
			return nil, err
		}
	}
	res.Phases = append(res.Phases, Phase{Name: "metrics, plots and galleries", Seconds: time.Since(start).Seconds()})
	page.Phases = res.Phases
	html, err := report.HTML(page)
	if err != nil {
		return nil, err
	}
	if err := outfile.WriteFile(filepath.Join(c.Out, "report.html"), html); err != nil {
		return nil, err
	}
	md := markdown(c, setupList, table, res.Phases, page.ROC)
	if err := outfile.WriteFile(filepath.Join(c.Out, "report.md"), []byte(md)); err != nil {
		return nil, err
	}
	return res, nil
}

// title is the report's title: the config's name, or its out folder's.
func (c *Config) title() string {
	if c.Name != "" {
		return c.Name
	}
	return filepath.Base(c.Out)
}

// setupItems are the report's setup, as (label, value): the model, the
// data and transform of each set, the detectors, their settings and taps,
// the fit, the machine and the versions.
func setupItems(c *Config, meta *gaia.Meta, m *gaia.Model, fit *gaia.Fit, t *gaia.EvalTable, sets []*prepared) [][2]string {
	items := [][2]string{
		{"Model", fmt.Sprintf("%s (%s, %s, input %dx%dx%d)", c.Model, meta.Arch, meta.ExportedWith, meta.InputSize[0], meta.InputSize[1], meta.InputSize[2])},
		{"Model SHA-256", m.SHA256()},
	}
	if t.IDAccuracy != nil {
		items = append(items, [2]string{"Accuracy on " + c.ID.Name, fmt.Sprintf("%.2f%% (%d labelled images)", 100**t.IDAccuracy, t.IDLabelled)})
	}
	for _, p := range sets {
		items = append(items, [2]string{p.set.Name, fmt.Sprintf("%s: %s; %s", p.set.Data, p.ds.Source.Describe(), p.ds.Transform.Describe())})
	}
	items = append(items, [2]string{"Detectors", fmt.Sprintf("%s; settings: %s", strings.Join(c.detectors, ", "), c.settings.For(c.detectors).Canonical())})
	if fit != nil {
		items = append(items, [2]string{"Fit of the feature-based detectors", fmt.Sprintf("%s (%d samples, %d feature vectors kept; fit.safetensors)", fit.Meta.Data, fit.N, fit.M)})
	}
	for _, w := range m.Warnings() {
		items = append(items, [2]string{"Warning", w})
	}
	for _, line := range strings.Split(strings.TrimSpace(m.Uses()), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			items = append(items, [2]string{k, v})
		}
	}
	items = append(items,
		[2]string{"LibTorch", fmt.Sprintf("%s on %s, %d intra-op threads, %d CPUs, %s/%s; batch %d", torch.Version(), m.Devices(), torch.NumThreads(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, c.Batch)},
		[2]string{"Versions", fmt.Sprintf("gaia %s, %s; JPEG decoding: %s", gaia.Version, runtime.Version(), data.JPEGDecoder())},
		[2]string{"Date", time.Now().UTC().Format("2006-01-02 15:04 MST")})
	return items
}

func markdown(c *Config, setup [][2]string, t *gaia.EvalTable, phases []Phase, rocs []report.Figure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", c.title())
	if c.Protocol != "" {
		fmt.Fprintf(&b, "Protocol: %s\n\n", strings.TrimSpace(c.Protocol))
	}
	var tb bytes.Buffer
	_ = t.Write(&tb, "markdown", false)
	b.Write(tb.Bytes())
	fmt.Fprintf(&b, "\n## Setup\n\n")
	for _, it := range setup {
		fmt.Fprintf(&b, "- %s: %s\n", it[0], it[1])
	}
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
	fmt.Fprintf(&b, "\n## Files\n\n- `report.html`: this report with the plots and the galleries of the images each detector gets most wrong (one file, readable offline)\n- `metrics.csv`, `metrics.json`: every metric (also AUPR-In, AUPR-Out, detection error, and FPR95 with OOD positive)\n- `scores/`: one score file per set, each with its provenance (`.csv.json`; `gaia report` remakes the page from them)\n")
	var plotsList []string
	for _, f := range rocs {
		plotsList = append(plotsList, f.File)
	}
	sort.Strings(plotsList)
	fmt.Fprintf(&b, "- ROC curves: %s\n- score histograms: %s\n", strings.Join(plotsList, ", "), "hist-<detector>.png")
	return b.String()
}

// fitOnce makes the config's fit in c.Out/fit.safetensors, or reuses the
// one there when model, data and fit options are unchanged.
func fitOnce(ctx context.Context, c *Config, progressW io.Writer) (*Phase, *gaia.Fit, error) {
	start := time.Now()
	path := filepath.Join(c.Out, "fit.safetensors")
	keyFile := filepath.Join(c.Out, "fit.key")
	sha, err := digest.File(c.Model)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %w", err)
	}
	k := map[string]any{"gaia": gaia.Version, "model_sha256": sha, "data": c.Fit.Data,
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
		// msp: the fit reads only the forward; any detector would do.
		fm, err := gaia.Open(ctx, c.Model, gaia.Options{Device: firstDevice(c.Device), Detectors: []string{"msp"}, SkipWarmup: true})
		if err != nil {
			return nil, nil, err
		}
		defer fm.Close()
		ds, err := fm.Dataset(c.Fit.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("fit: %w", err)
		}
		bar := progress.New(progressW, "fit", ds.Source.Len())
		fit, err := fm.Fit(ctx, ds, gaia.FitOptions{DatasetOptions: gaia.DatasetOptions{Batch: c.Batch, Workers: c.Workers, SkipBad: c.SkipBad, Progress: bar.Add},
			KNNSample: c.Fit.KNNSample, Seed: c.Fit.Seed, NeedLabels: slices.Contains(c.detectors, "mahalanobis")})
		bar.Finish()
		if err != nil {
			return nil, nil, err
		}
		if err := gaia.WriteFit(path, fit); err != nil {
			return nil, nil, err
		}
		if err := outfile.WriteFile(keyFile, []byte(key)); err != nil {
			return nil, nil, err
		}
		n = fit.N
	} else if progressW != nil {
		fmt.Fprintf(progressW, "fit: reusing %s (same model, data and options)\n", path)
	}
	fit, err := gaia.ReadFit(path)
	if err != nil {
		return nil, nil, err
	}
	return &Phase{Name: "fit " + c.Fit.Data, Seconds: time.Since(start).Seconds(), Images: max(n, fit.N), Reused: reused}, fit, nil
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
	if st, err := os.Stat(p.ds.Spec.Arg); err == nil {
		k["data_size"], k["data_mtime"] = st.Size(), st.ModTime().UnixNano()
	}
	raw, _ := json.Marshal(k)
	return string(raw) + "\n"
}
