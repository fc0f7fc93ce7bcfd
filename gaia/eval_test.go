package gaia

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia/metrics"
)

// evalFiles are seeded score files of three detectors: "good" separates ID
// from OOD well, "close" a little less (correlated with good: the same
// samples), "noise" not at all; sets A (far) and B, C (near).
func evalFiles(t *testing.T) (*ScoreFile, []OODSet) {
	r := rand.New(rand.NewSource(11))
	dets := []string{"good", "close", "noise"}
	file := func(path string, n int, shift float64) *ScoreFile {
		sf := &ScoreFile{Path: path, Detectors: dets}
		for i := 0; i < n; i++ {
			g := r.NormFloat64() + shift
			sf.Rows = append(sf.Rows, ScoreRow{Index: i, Source: fmt.Sprintf("%s#%d", path, i), Label: -1,
				Scores: []float64{g, g + 0.3*r.NormFloat64() - 0.05*shift, r.NormFloat64()}})
		}
		return sf
	}
	return file("id.csv", 300, 0), []OODSet{{"A", file("a.csv", 200, 2.5)}, {"B", file("b.csv", 250, 0.7)}, {"C", file("c.csv", 150, 0.9)}}
}

// With intervals: AUROC's is DeLong's on a set and the bootstrap's on the
// means; every other metric has a percentile bootstrap interval holding its
// point estimate; a seed gives the same intervals, another seed others; the
// groups are the means of their sets; the JSON has the keys.
func TestEvaluateIntervals(t *testing.T) {
	id, oods := evalFiles(t)
	opt := EvalOptions{Intervals: true, Bootstrap: 400, Groups: []Group{{"near", []string{"B", "C"}}, {"far", []string{"A"}}}}
	tab, err := Evaluate(id, oods, opt)
	require.NoError(t, err)
	assert.Equal(t, 0.95, tab.Level)
	for d, r := range tab.Rows {
		idc, _ := id.Column(r.Detector)
		for _, o := range oods {
			m := r.Sets[o.Name]
			oc, _ := o.Scores.Column(r.Detector)
			auc, se, err := metrics.DeLong(idc, oc)
			require.NoError(t, err)
			assert.InDelta(t, auc, m.AUROC, 1e-12)
			assert.Equal(t, se, m.AUROCSE)
			assert.Equal(t, metrics.AUROCInterval(auc, se, 0.95), *m.AUROCCI)
			for name, c := range map[string]*[2]float64{"fpr95": m.FPR95CI, "fpr95 ood+": m.FPR95OODPositiveCI, "aupr-in": m.AUPRInCI, "aupr-out": m.AUPROutCI} {
				require.NotNil(t, c, "%s %s %s", r.Detector, o.Name, name)
				assert.LessOrEqual(t, c[0], c[1])
			}
			assert.LessOrEqual(t, m.FPR95CI[0], m.FPR95+1e-9, "%s %s", r.Detector, o.Name)
			assert.GreaterOrEqual(t, m.FPR95CI[1], m.FPR95-1e-9, "%s %s", r.Detector, o.Name)
		}
		near := r.Groups["near"]
		assert.InDelta(t, (r.Sets["B"].AUROC+r.Sets["C"].AUROC)/2, near.AUROC, 1e-12, "group near of %s", r.Detector)
		assert.InDelta(t, r.Sets["A"].FPR95, r.Groups["far"].FPR95, 1e-12)
		require.NotNil(t, near.AUROCCI)
		require.NotNil(t, r.Mean.FPR95CI)
		assert.Equal(t, 0.0, r.Mean.AUROCSE, "no DeLong for a mean")
		_ = d
	}
	// Far is easy: good's AUROC interval on A lies above 0.9; noise's holds 0.5.
	assert.Greater(t, tab.Rows[0].Sets["A"].AUROCCI[0], 0.9)
	assert.Less(t, tab.Rows[2].Sets["A"].AUROCCI[0], 0.5)
	assert.Greater(t, tab.Rows[2].Sets["A"].AUROCCI[1], 0.5)

	again, err := Evaluate(id, oods, opt)
	require.NoError(t, err)
	assert.Equal(t, tab.Rows, again.Rows, "the same seed, the same intervals")
	opt.Seed = 2
	other, err := Evaluate(id, oods, opt)
	require.NoError(t, err)
	assert.NotEqual(t, *tab.Rows[0].Sets["B"].FPR95CI, *other.Rows[0].Sets["B"].FPR95CI)

	var b bytes.Buffer
	require.NoError(t, tab.Write(&b, "json", false))
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &raw))
	row := raw["detectors"].([]any)[0].(map[string]any)
	set := row["sets"].(map[string]any)["A"].(map[string]any)
	for _, k := range []string{"auroc_se", "auroc_ci", "fpr95_ci", "fpr95_ood_positive_ci", "aupr_in_ci", "aupr_out_ci"} {
		assert.Contains(t, set, k)
	}
	assert.Contains(t, row["groups"].(map[string]any), "near")
	b.Reset()
	require.NoError(t, tab.Write(&b, "table", false))
	assert.Contains(t, b.String(), "±")
	assert.Contains(t, b.String(), "near: the mean over B, C.")
	b.Reset()
	require.NoError(t, tab.Write(&b, "csv", false))
	assert.Contains(t, b.String(), ",auroc_se,auroc_lo,auroc_hi,")
	assert.Contains(t, b.String(), "good,near,")

	// Point estimates alone: no intervals in the JSON, as before.
	plain, err := Evaluate(id, oods, EvalOptions{})
	require.NoError(t, err)
	b.Reset()
	require.NoError(t, plain.Write(&b, "json", false))
	assert.NotContains(t, b.String(), "auroc_ci")
	assert.Equal(t, tab.Rows[1].Sets["B"].AUROC, plain.Rows[1].Sets["B"].AUROC)

	_, err = Evaluate(id, oods, EvalOptions{Groups: []Group{{"near", []string{"B", "Z"}}}})
	assert.ErrorContains(t, err, `group near names set "Z"`)
	_, err = Evaluate(id, oods, EvalOptions{Groups: []Group{{"A", []string{"B"}}}})
	assert.ErrorContains(t, err, "a group needs a name of its own")
}

// Paired comparisons: on a set, DeLong's test for correlated AUCs (as
// metrics.PairedDeLong), the FPR95 difference's paired bootstrap interval;
// A,all compares A with every other detector; NotWorse holds the best and
// whoever the paired test cannot tell from it.
func TestEvaluatePaired(t *testing.T) {
	id, oods := evalFiles(t)
	tab, err := Evaluate(id, oods, EvalOptions{Bootstrap: 300, Paired: [][2]string{{"good", "all"}}, Groups: []Group{{"near", []string{"B", "C"}}}})
	require.NoError(t, err)
	assert.Len(t, tab.Paired, 2*5, "good against close and noise, on A, B, C, mean, near")
	for _, p := range tab.Paired {
		assert.Equal(t, "good", p.A)
		assert.LessOrEqual(t, p.FPR95DiffCI[0], p.FPR95DiffCI[1])
		if p.Set == "mean" || p.Set == "near" {
			continue
		}
		var o OODSet
		for _, s := range oods {
			if s.Name == p.Set {
				o = s
			}
		}
		ia, _ := id.Column(p.A)
		ib, _ := id.Column(p.B)
		oa, _ := o.Scores.Column(p.A)
		ob, _ := o.Scores.Column(p.B)
		diff, se, pv, err := metrics.PairedDeLong(ia, oa, ib, ob)
		require.NoError(t, err)
		assert.Equal(t, diff, p.AUROCDiff)
		assert.Equal(t, pv, p.PValue)
		assert.InDelta(t, diff-1.959963984540054*se, p.AUROCDiffCI[0], 1e-12)
	}
	find := func(b, set string) Paired {
		for _, p := range tab.Paired {
			if p.B == b && p.Set == set {
				return p
			}
		}
		t.Fatalf("no pair good-%s on %s", b, set)
		return Paired{}
	}
	assert.Less(t, find("noise", "A").PValue, 1e-6, "good against noise on far OOD")
	assert.Greater(t, find("noise", "A").AUROCDiffCI[0], 0.0)
	assert.NotContains(t, tab.NotWorse["A"]["auroc"], "noise")
	assert.Contains(t, tab.NotWorse["A"]["auroc"], "good")
	var b bytes.Buffer
	require.NoError(t, tab.WritePaired(&b, false))
	assert.Contains(t, b.String(), "good - noise")
	assert.Contains(t, b.String(), "DeLong")

	_, err = Evaluate(id, oods, EvalOptions{Paired: [][2]string{{"good", "bad"}}})
	assert.ErrorContains(t, err, `"bad" is not another detector`)
	_, err = Evaluate(id, oods, EvalOptions{Paired: [][2]string{{"gone", "good"}}})
	assert.ErrorIs(t, err, ErrUnknownDetector)
}

// Runs of other detectors on the same samples join into one file for
// paired comparisons; files whose samples differ are refused, naming the
// row.
func TestJoinScoreFiles(t *testing.T) {
	a := &ScoreFile{Path: "a.csv", Detectors: []string{"msp"}, Rows: []ScoreRow{{Index: 0, Source: "x", Scores: []float64{1}}, {Index: 1, Source: "y", Scores: []float64{2}}}}
	b := &ScoreFile{Path: "b.csv", Detectors: []string{"gaia-z"}, Rows: []ScoreRow{{Index: 0, Source: "x", Scores: []float64{3}}, {Index: 1, Source: "y", Scores: []float64{4}}}}
	j, err := JoinScoreFiles(a, b)
	require.NoError(t, err)
	assert.Equal(t, []string{"msp", "gaia-z"}, j.Detectors)
	assert.Equal(t, []float64{2, 4}, j.Rows[1].Scores)
	b.Rows[1].Source = "z"
	_, err = JoinScoreFiles(a, b)
	assert.ErrorContains(t, err, "row 2 is sample 1 (y) in a.csv and 1 (z) in b.csv: the files' samples differ")
	_, err = JoinScoreFiles(a, a)
	assert.ErrorContains(t, err, "msp is in both")
}
