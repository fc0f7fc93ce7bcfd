// Package deploy holds the Kubernetes Job, the Slurm scripts and the
// container recipe for sharded scoring; its test keeps them from rotting.
package deploy

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
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
	assert.Contains(t, string(out), "--device=cuda", "GPUs by default")
	cmd = exec.Command("bash", "slurm/score-array.sbatch")
	cmd.Env = append(os.Environ(), "GAIA="+stub, "OUT=/tmp/x", "DEVICE=cpu", "DETECTORS=msp,gaia-z", "BATCH=16")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "--detectors=msp,gaia-z --batch=16 --device=cpu", "a CPU cluster's settings, through the environment")
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

// The Kubernetes Job's container, run as the Job controller would run it
// (completionMode Indexed: one process per index with JOB_COMPLETION_INDEX
// set, the container's args and env), but as local processes: the volumes
// are folders here, and the model and data are the repository's MNIST
// ResNet and generated digits instead of the Job's BiT and ImageNet
// (--model and --data replaced, every other argument as the Job has it;
// --device=cuda becomes cpu on a machine without a GPU). Its N shards
// merge to what one unsharded gaia score gives. No Kubernetes cluster runs
// this: docs/scale.md says how to run the Job on one.
func TestKubernetesJobAsLocalProcesses(t *testing.T) {
	gaiaBin := os.Getenv("GAIA_BIN")
	if gaiaBin == "" {
		t.Skip("GAIA_BIN (a gaia built with LibTorch) is not set; make test sets it to bin/gaia")
	}
	raw, err := os.ReadFile("k8s/score-job.yaml")
	require.NoError(t, err)
	var job batchv1.Job
	require.NoError(t, yaml.UnmarshalStrict(raw, &job))
	n := int(*job.Spec.Completions)
	c := job.Spec.Template.Spec.Containers[0]

	root := t.TempDir()
	mounts := map[string]string{} // the pod's path -> the folder here
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = filepath.Join(root, m.Name)
		require.NoError(t, os.MkdirAll(mounts[m.MountPath], 0o755))
	}
	local := func(p string) string {
		for mp, dir := range mounts {
			if rest, ok := strings.CutPrefix(p, mp+"/"); ok {
				return filepath.Join(dir, rest)
			}
		}
		t.Fatalf("%s is on no volume of the Job", p)
		return ""
	}
	// 50 digit-like 28x28 gray images in two class folders on the data volume.
	dataDir := local("/data/digits/val")
	for i := 0; i < 50; i++ {
		img := image.NewGray(image.Rect(0, 0, 28, 28))
		for y := 4 + i%5; y < 24; y++ {
			img.SetGray(6+i%11+y/3, y, color.Gray{Y: uint8(255 - 3*i)})
		}
		dir := filepath.Join(dataDir, fmt.Sprintf("c%d", i%2))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, img))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.png", i)), b.Bytes(), 0o644))
	}
	model, err := filepath.Abs("../models/mnist_resnet.pt")
	require.NoError(t, err)
	device := "cpu"
	var args []string
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--model="):
			a = "--model=" + model
		case strings.HasPrefix(a, "--data="):
			a = "--data=folder:" + dataDir
		case strings.HasPrefix(a, "--out-dir="):
			a = "--out-dir=" + local(strings.TrimPrefix(a, "--out-dir="))
		case a == "--device=cuda":
			a = "--device=" + device
		}
		args = append(args, a)
	}
	outDir := local(must(flagValue(c.Args, "out-dir")))
	env := os.Environ()
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	// The Job's parallelism, two at a time on this machine's cores.
	sem := make(chan struct{}, 2)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command(gaiaBin, args...)
			cmd.Env = append(append([]string(nil), env...), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("index %d: %v: %s", i, err, out)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < n; i++ {
		require.NoError(t, <-errs)
	}
	shards, err := filepath.Glob(filepath.Join(outDir, "shard-*-of-*.json"))
	require.NoError(t, err)
	require.Len(t, shards, n, "a manifest per index")
	merged := filepath.Join(root, "merged.csv")
	out, err := exec.Command(gaiaBin, "merge", outDir, "--out", merged).CombinedOutput()
	require.NoError(t, err, string(out))

	// The unsharded run: the same arguments without the shard flags.
	var plain []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--shard") && !strings.HasPrefix(a, "--out-dir=") {
			plain = append(plain, a)
		}
	}
	whole := filepath.Join(root, "whole.csv")
	cmd := exec.Command(gaiaBin, append(plain, "--quiet", "--out", whole)...)
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	a, err := os.ReadFile(whole)
	require.NoError(t, err)
	b, err := os.ReadFile(merged)
	require.NoError(t, err)
	if !bytes.Equal(a, b) {
		// Shards start their batches at other samples: float rounding at most.
		la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
		require.Equal(t, len(la), len(lb))
		for i := range la {
			fa, fb := strings.Split(la[i], ","), strings.Split(lb[i], ",")
			require.Equal(t, len(fa), len(fb), "line %d", i)
			for j := range fa {
				if j < 4 || i == 0 {
					require.Equal(t, fa[j], fb[j], "line %d field %d", i, j)
					continue
				}
				x, _ := strconv.ParseFloat(fa[j], 64)
				y, _ := strconv.ParseFloat(fb[j], 64)
				require.InDelta(t, x, y, 1e-6*max(1, abs(x)), "line %d field %d", i, j)
			}
		}
	}
	assert.Equal(t, 51, strings.Count(string(b), "\n"), "header and 50 rows")
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
