package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/gaia-ood/gaia/internal/shard"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets tests run the gaia command as a separate process: the test
// binary itself with GAIA_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("GAIA_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func gaiaProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GAIA_TEST_MAIN=1")
	return cmd
}

func runCmd(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(args, &out, &errb)
	return out.String(), errb.String(), err
}

func isUsage(err error) bool {
	_, ok := err.(usageError)
	return ok
}

func TestParseShard(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		spec  string
		count int
		env   map[string]string
		want  shard.Shard
		err   string
	}{
		{"2/5", 0, nil, shard.Shard{Index: 2, Count: 5}, ""},
		{"5/5", 0, nil, shard.Shard{}, "want 0 <= i < N"},
		{"2/5", 4, nil, shard.Shard{}, "disagrees"},
		{"x", 0, nil, shard.Shard{}, "want i/N"},
		{"k8s", 8, map[string]string{"JOB_COMPLETION_INDEX": "7"}, shard.Shard{Index: 7, Count: 8}, ""},
		{"k8s", 0, map[string]string{"JOB_COMPLETION_INDEX": "1", "GAIA_SHARDS": "4"}, shard.Shard{Index: 1, Count: 4}, ""},
		{"k8s", 0, map[string]string{"JOB_COMPLETION_INDEX": "1"}, shard.Shard{}, "--shards N"},
		{"k8s", 0, nil, shard.Shard{}, "JOB_COMPLETION_INDEX is not set"},
		{"slurm", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"}, shard.Shard{Index: 4, Count: 5}, ""},
		{"auto", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, shard.Shard{Index: 0, Count: 2}, ""},
		{"auto", 3, map[string]string{"JOB_COMPLETION_INDEX": "0"}, shard.Shard{Index: 0, Count: 3}, ""},
		{"auto", 0, nil, shard.Shard{}, "neither"},
		{"slurm", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "a"}, shard.Shard{}, "not a number"},
	}
	for _, c := range cases {
		got, err := shard.Parse(c.spec, c.count, env(c.env))
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.spec)
			continue
		}
		require.NoError(t, err, c.spec)
		assert.Equal(t, c.want, got, c.spec)
	}
	// The shards of any size tile it, in order.
	for _, n := range []int{0, 1, 2, 7, 100, 101} {
		for _, k := range []int{1, 2, 3, 8} {
			next := 0
			for i := 0; i < k; i++ {
				lo, hi := shard.Shard{Index: i, Count: k}.Range(n)
				assert.Equal(t, next, lo)
				assert.LessOrEqual(t, lo, hi)
				next = hi
			}
			assert.Equal(t, n, next)
		}
	}
}
