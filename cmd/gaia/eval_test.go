package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gaia eval --ci --paired --group: the intervals, comparisons and groups in
// the JSON under the documented keys, reproducible for a seed; bad flags
// are usage errors.
func TestEvalIntervalsPairedGroups(t *testing.T) {
	dir := t.TempDir()
	id, a, b := filepath.Join(dir, "id.csv"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	noiseScores(t, id, "uniform", 200, 0)
	noiseScores(t, a, "gaussian", 150, 0.3)
	noiseScores(t, b, "gaussian", 120, 0.1)
	args := []string{"eval", "--id", id, "--ood", "A=" + a, "--ood", "B=" + b, "--ci", "--bootstrap", "300", "--seed", "7",
		"--paired", "msp,gaia-z", "--group", "near=B", "--group", "far=A", "--format", "json"}
	out, _, err := runCmd(args...)
	require.NoError(t, err)
	var got struct {
		Level     float64 `json:"ci_level"`
		Bootstrap int     `json:"bootstrap"`
		Rows      []struct {
			Detector string                    `json:"detector"`
			Sets     map[string]map[string]any `json:"sets"`
			Mean     map[string]any            `json:"mean"`
			Groups   map[string]map[string]any `json:"groups"`
		} `json:"detectors"`
		Paired []map[string]any `json:"paired"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, 0.95, got.Level)
	assert.Equal(t, 300, got.Bootstrap)
	for _, k := range []string{"auroc_se", "auroc_ci", "fpr95_ci", "fpr95_ood_positive_ci", "aupr_in_ci", "aupr_out_ci"} {
		assert.Contains(t, got.Rows[0].Sets["A"], k)
	}
	assert.Contains(t, got.Rows[0].Mean, "auroc_ci")
	assert.Contains(t, got.Rows[0].Groups, "near")
	assert.Contains(t, got.Rows[0].Groups, "far")
	require.Len(t, got.Paired, 5, "A, B, mean, near, far")
	for _, k := range []string{"a", "b", "set", "auroc_diff", "auroc_diff_ci", "p_value", "fpr95_diff", "fpr95_diff_ci"} {
		assert.Contains(t, got.Paired[0], k)
	}
	assert.Equal(t, "msp", got.Paired[0]["a"])
	again, _, err := runCmd(args...)
	require.NoError(t, err)
	assert.Equal(t, out, again, "a seed gives the same intervals")
	table, _, err := runCmd("eval", "--id", id, "--ood", "A="+a, "--ci", "--bootstrap", "100", "--paired", "msp,all")
	require.NoError(t, err)
	assert.Contains(t, table, "±")
	assert.Contains(t, table, "msp - gaia-z")

	for _, bad := range [][]string{{"--paired", "msp"}, {"--group", "near"}, {"--ci-level", "1.5"}, {"--bootstrap", "1"}} {
		_, _, err := runCmd(append([]string{"eval", "--id", id, "--ood", "A=" + a}, bad...)...)
		var ue usageError
		assert.ErrorAs(t, err, &ue, "%v", bad)
	}
	_, _, err = runCmd("eval", "--id", id, "--ood", "A="+a, "--group", "near=Z")
	assert.ErrorContains(t, err, `names set "Z"`)
}
