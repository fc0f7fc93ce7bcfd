// Package shard splits a scoring run into disjoint parts (Kubernetes
// Indexed Jobs, Slurm job arrays), each with a manifest that says what it
// holds, and merges the parts of one job back into one score file.
package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/scorefile"
)

// Shard is part Index (0-based) of Count disjoint parts of a dataset.
type Shard struct {
	Index, Count int
}

// Parse reads a shard: "i/N" (0 <= i < N), or where a batch engine sets
// it, from env: "k8s" (an Indexed Job's JOB_COMPLETION_INDEX; N from count,
// else GAIA_SHARDS), "slurm" (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
// SLURM_ARRAY_TASK_COUNT), or "auto" (whichever of the two is set).
func Parse(s string, count int, env func(string) string) (Shard, error) {
	switch s {
	case "auto":
		switch {
		case env("JOB_COMPLETION_INDEX") != "":
			return Parse("k8s", count, env)
		case env("SLURM_ARRAY_TASK_ID") != "":
			return Parse("slurm", count, env)
		}
		return Shard{}, errors.New("shard auto: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor SLURM_ARRAY_TASK_ID (Slurm job array) is set")
	case "k8s":
		i, err := envInt(env, "JOB_COMPLETION_INDEX")
		if err != nil {
			return Shard{}, err
		}
		if count <= 0 {
			if count, err = envInt(env, "GAIA_SHARDS"); err != nil {
				return Shard{}, fmt.Errorf("shard k8s: the number of shards: give --shards N (the Job's completions) or set GAIA_SHARDS: %w", err)
			}
		}
		return checkShard(Shard{i, count})
	case "slurm":
		id, err := envInt(env, "SLURM_ARRAY_TASK_ID")
		if err != nil {
			return Shard{}, err
		}
		lo := 0
		if env("SLURM_ARRAY_TASK_MIN") != "" {
			if lo, err = envInt(env, "SLURM_ARRAY_TASK_MIN"); err != nil {
				return Shard{}, err
			}
		}
		if count <= 0 {
			if count, err = envInt(env, "SLURM_ARRAY_TASK_COUNT"); err != nil {
				return Shard{}, err
			}
		}
		return checkShard(Shard{id - lo, count})
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/N (0 <= i < N), k8s, slurm or auto", s)
	}
	if count > 0 && count != n {
		return Shard{}, fmt.Errorf("shard %q: --shards %d disagrees", s, count)
	}
	return checkShard(Shard{i, n})
}

func envInt(env func(string) string, key string) (int, error) {
	v := env(key)
	if v == "" {
		return 0, fmt.Errorf("%s is not set", key)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a number", key, v)
	}
	return n, nil
}

func checkShard(s Shard) (Shard, error) {
	if s.Count <= 0 || s.Index < 0 || s.Index >= s.Count {
		return Shard{}, fmt.Errorf("shard %d/%d: want 0 <= i < N", s.Index, s.Count)
	}
	return s, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Name is the shard's file name stem: shard-00003-of-00010.
func (s Shard) Name() string { return fmt.Sprintf("shard-%05d-of-%05d", s.Index, s.Count) }

// Range is the shard's samples of a dataset of n: the contiguous run
// [n*i/N, n*(i+1)/N), so shards in order are the dataset in order.
func (s Shard) Range(n int) (lo, hi int) {
	return int(int64(n) * int64(s.Index) / int64(s.Count)), int(int64(n) * int64(s.Index+1) / int64(s.Count))
}

// Manifest says what a shard's score file holds; it is written after the
// score file, atomically, and a shard counts only when its manifest exists
// and the file's checksum matches.
type Manifest struct {
	Shard       int            `json:"shard"`
	Shards      int            `json:"shards"`
	Start       int            `json:"start"` // first sample index
	End         int            `json:"end"`   // one past the last
	Rows        int            `json:"rows"`  // scored (Start..End less skipped samples)
	Skipped     int            `json:"skipped"`
	File        string         `json:"file"` // the score file, beside the manifest
	FileSHA256  string         `json:"file_sha256"`
	DataSHA256  string         `json:"data_sha256"` // data.Fingerprint
	Samples     int            `json:"samples"`     // in the whole dataset
	Score       gaia.ScoreMeta `json:"score"`       // model, data spec, detectors, taps
	ScoreConfig string         `json:"score_config"`
}

// ManifestPath is where a shard's manifest lives in dir.
func ManifestPath(dir string, s Shard) string { return filepath.Join(dir, s.Name()+".json") }

// ScoreFilePath is where a shard's score file lives in dir.
func ScoreFilePath(dir string, s Shard) string { return filepath.Join(dir, s.Name()+".csv") }

// ReadManifest reads a manifest and checks its score file's checksum.
func ReadManifest(path string) (*Manifest, error) {
	m := &Manifest{}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard manifest: %w", err)
	}
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("shard manifest %s: %w", path, err)
	}
	if m.Shards <= 0 || m.Shard < 0 || m.Shard >= m.Shards || m.File == "" {
		return nil, fmt.Errorf("shard manifest %s: shard %d/%d, file %q: not a shard manifest", path, m.Shard, m.Shards, m.File)
	}
	sum, err := digest.File(filepath.Join(filepath.Dir(path), m.File))
	if err != nil {
		return nil, fmt.Errorf("shard manifest %s: %w", path, err)
	}
	if sum != m.FileSHA256 {
		return nil, fmt.Errorf("shard manifest %s: %s has checksum %.12s, the manifest says %.12s (changed or partly written)", path, m.File, sum, m.FileSHA256)
	}
	return m, nil
}

// Compatible says why two shards cannot be parts of one job ("" if they can).
func (m *Manifest) Compatible(o *Manifest) string {
	switch {
	case m.Shards != o.Shards:
		return fmt.Sprintf("%d shards, not %d", o.Shards, m.Shards)
	case m.Score.ModelSHA256 != o.Score.ModelSHA256:
		return fmt.Sprintf("model %s (sha256 %.12s), not %s (sha256 %.12s)", o.Score.Model, o.Score.ModelSHA256, m.Score.Model, m.Score.ModelSHA256)
	case m.DataSHA256 != o.DataSHA256 || m.Samples != o.Samples:
		return fmt.Sprintf("dataset %s (%d samples, sha256 %.12s), not %s (%d samples, sha256 %.12s)",
			o.Score.Data, o.Samples, o.DataSHA256, m.Score.Data, m.Samples, m.DataSHA256)
	case !slices.Equal(m.Score.Detectors, o.Score.Detectors):
		return fmt.Sprintf("detectors %s, not %s", strings.Join(o.Score.Detectors, ","), strings.Join(m.Score.Detectors, ","))
	case m.ScoreConfig != o.ScoreConfig:
		return fmt.Sprintf("scoring settings %s, not %s", o.ScoreConfig, m.ScoreConfig)
	}
	return ""
}

// Merge checks a folder of shards (each present once, all from one job) and
// writes their rows, in order, to out, with out's provenance beside it. It
// returns the rows written.
func Merge(dir, out string) (int, error) {
	all, err := filepath.Glob(filepath.Join(dir, "shard-*-of-*.json"))
	if err != nil {
		return 0, err
	}
	var paths []string // manifests, not a score file's provenance (shard-...csv.json)
	for _, p := range all {
		if !strings.HasSuffix(p, ".csv.json") {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return 0, fmt.Errorf("merge: %s holds no shard manifest (shard-*-of-*.json)", dir)
	}
	sort.Strings(paths)
	var ms []*Manifest
	for _, p := range paths {
		m, err := ReadManifest(p)
		if err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
		if want := (Shard{m.Shard, m.Shards}).Name() + ".json"; filepath.Base(p) != want {
			return 0, fmt.Errorf("merge: %s holds shard %d/%d (its name should be %s)", p, m.Shard, m.Shards, want)
		}
		ms = append(ms, m)
	}
	first := ms[0]
	byIndex := map[int]string{}
	for i, m := range ms {
		if why := first.Compatible(m); why != "" {
			return 0, fmt.Errorf("merge: %s does not belong with %s: %s", paths[i], paths[0], why)
		}
		if prev, dup := byIndex[m.Shard]; dup {
			return 0, fmt.Errorf("merge: shard %d/%d twice: %s and %s", m.Shard, m.Shards, prev, paths[i])
		}
		byIndex[m.Shard] = paths[i]
	}
	var missing []string
	for i := 0; i < first.Shards; i++ {
		if _, ok := byIndex[i]; !ok {
			missing = append(missing, fmt.Sprintf("%d (%s)", i, Shard{i, first.Shards}.Name()))
		}
	}
	if len(missing) > 0 {
		return 0, fmt.Errorf("merge: %s: %d of %d shards missing: %s", dir, len(missing), first.Shards, strings.Join(missing, ", "))
	}
	sort.Slice(ms, func(a, b int) bool { return ms[a].Shard < ms[b].Shard })
	sw, err := scorefile.Create(out, first.Score.Detectors, nil)
	if err != nil {
		return 0, err
	}
	if err := sw.WithSidecar(); err != nil {
		return 0, err
	}
	next := 0
	for _, m := range ms {
		if m.Start != next {
			sw.Abort()
			return 0, fmt.Errorf("merge: shard %d/%d starts at sample %d, the one before ends at %d", m.Shard, m.Shards, m.Start, next)
		}
		next = m.End
		sf, err := gaia.ReadScoreFile(filepath.Join(dir, m.File))
		if err != nil {
			sw.Abort()
			return 0, err
		}
		if len(sf.Rows) != m.Rows || !slices.Equal(sf.Detectors, m.Score.Detectors) {
			sw.Abort()
			return 0, fmt.Errorf("merge: %s has %d rows of %s, its manifest says %d of %s", m.File, len(sf.Rows),
				strings.Join(sf.Detectors, ","), m.Rows, strings.Join(m.Score.Detectors, ","))
		}
		if err := sw.Append(sf.Rows); err != nil {
			sw.Abort()
			return 0, err
		}
	}
	if next != first.Samples {
		sw.Abort()
		return 0, fmt.Errorf("merge: the shards end at sample %d of %d", next, first.Samples)
	}
	rows := sw.Rows()
	meta := first.Score
	meta.Rows = rows
	sidecar, err := outfile.JSON(&meta)
	if err != nil {
		sw.Abort()
		return 0, err
	}
	if err := sw.CommitWith(sidecar); err != nil {
		return 0, err
	}
	return rows, nil
}

// Complete reports whether dir already holds a complete output for
// shard s of the same job as want (its manifest, with a matching score file);
// a shard of another job there is an error.
func Complete(dir string, s Shard, want *Manifest) (bool, error) {
	p := ManifestPath(dir, s)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	m, err := ReadManifest(p)
	if err != nil {
		return false, nil // a damaged output is redone
	}
	if why := want.Compatible(m); why != "" {
		return false, fmt.Errorf("%s is from another job (%s): use another output folder", p, why)
	}
	return true, nil
}
