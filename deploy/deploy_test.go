// Package deploy holds the Kubernetes Job, the Slurm scripts and the
// container recipe for sharded scoring; its test keeps them from rotting.
package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// flagValue reads --name=value from args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// The Job parses strictly as a batch/v1 Job (an unknown or misspelt field
// fails), is Indexed, asks for a GPU per pod, and its gaia arguments agree
// with it: --shard=k8s, --shards = completions, --out-dir on a writable volume.
func TestKubernetesJob(t *testing.T) {
	raw, err := os.ReadFile("k8s/score-job.yaml")
	require.NoError(t, err)
	var job batchv1.Job
	require.NoError(t, yaml.UnmarshalStrict(raw, &job))
	assert.Equal(t, "batch/v1", job.APIVersion)
	assert.Equal(t, "Job", job.Kind)
	require.NotNil(t, job.Spec.CompletionMode)
	assert.Equal(t, batchv1.IndexedCompletion, *job.Spec.CompletionMode)
	require.NotNil(t, job.Spec.Completions)
	n := int(*job.Spec.Completions)
	assert.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)

	require.Len(t, job.Spec.Template.Spec.Containers, 1)
	c := job.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "score", c.Args[0])
	shard, _ := flagValue(c.Args, "shard")
	assert.Equal(t, "k8s", shard)
	shards, ok := flagValue(c.Args, "shards")
	require.True(t, ok)
	assert.Equal(t, strconv.Itoa(n), shards)
	for _, e := range c.Env {
		if e.Name == "GAIA_SHARDS" {
			assert.Equal(t, strconv.Itoa(n), e.Value)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	assert.Equal(t, c.Resources.Requests.Cpu().String(), env["OMP_NUM_THREADS"], "LibTorch threads = the pod's CPUs")
	gpu := corev1.ResourceName("nvidia.com/gpu")
	assert.Equal(t, int64(1), c.Resources.Limits.Name(gpu, "").Value())
	assert.Equal(t, "cuda", must(flagValue(c.Args, "device")))

	out := must(flagValue(c.Args, "out-dir"))
	mounted := false
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(out+"/", m.MountPath+"/") {
			assert.False(t, m.ReadOnly, "the output volume %s is read-only", m.Name)
			mounted = true
		}
	}
	assert.True(t, mounted, "--out-dir %s is on no mounted volume", out)
	vols := map[string]bool{}
	for _, v := range job.Spec.Template.Spec.Volumes {
		vols[v.Name] = true
	}
	for _, m := range c.VolumeMounts {
		assert.True(t, vols[m.Name], "mount %s has no volume", m.Name)
	}
	for _, name := range []string{"model", "data"} {
		v := must(flagValue(c.Args, name))
		path := v
		if name == "data" {
			path = strings.SplitN(strings.SplitN(v, ":", 2)[1], ",", 2)[0]
		}
		found := false
		for _, m := range c.VolumeMounts {
			found = found || strings.HasPrefix(path, m.MountPath+"/")
		}
		assert.True(t, found, "--%s %s is on no mounted volume", name, path)
	}

	// A misspelt field is an error: the strict parse is what keeps the file honest.
	bad := strings.Replace(string(raw), "completionMode:", "completionsMode:", 1)
	assert.Error(t, yaml.UnmarshalStrict([]byte(bad), &batchv1.Job{}))
}

func must(v string, ok bool) string {
	if !ok {
		panic("flag missing")
	}
	return v
}

// The Slurm scripts are valid bash, the array's size is what --shard=slurm
// reads, and run with a stand-in gaia they pass the shard through.
func TestSlurmScripts(t *testing.T) {
	for _, f := range []string{"slurm/score-array.sbatch", "slurm/merge.sbatch"} {
		out, err := exec.Command("bash", "-n", f).CombinedOutput()
		require.NoError(t, err, "%s: %s", f, out)
	}
	raw, err := os.ReadFile("slurm/score-array.sbatch")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^#SBATCH --array=(\d+)-(\d+)$`).FindStringSubmatch(string(raw))
	require.NotNil(t, m, "no #SBATCH --array=A-B line")
	assert.Contains(t, string(raw), "--shard=slurm")
	assert.Contains(t, string(raw), "#SBATCH --gres=gpu:1")

	stub := t.TempDir() + "/gaia"
	require.NoError(t, os.WriteFile(stub, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755))
	cmd := exec.Command("bash", "slurm/score-array.sbatch")
	cmd.Env = append(os.Environ(), "GAIA="+stub, "SLURM_ARRAY_TASK_ID=3", "OUT=/tmp/x")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "score --model=")
	assert.Contains(t, string(out), "--shard=slurm --out-dir=/tmp/x")
	cmd = exec.Command("bash", "slurm/merge.sbatch")
	cmd.Env = append(os.Environ(), "GAIA="+stub, "OUT=/tmp/x")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "merge /tmp/x --out /tmp/x/scores.csv\n", string(out))
}

// The container recipe builds with the Makefile against PyPI's torch and
// keeps its path in the runtime image (the binary's rpath).
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	s := string(raw)
	assert.Contains(t, s, "make build PYTHON=/opt/torch/bin/python")
	assert.Contains(t, s, "COPY --from=build /opt/torch /opt/torch")
	assert.Regexp(t, `(?m)^ENTRYPOINT \["/usr/local/bin/gaia"\]`, s)
}
