//go:build cgo && !gaia_nolibtorch

package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// --out is checked before the first batch: a directory, a missing folder or
// a socket is refused before any scoring (which would have been lost on the
// rename); /dev/null stays a device.
func TestScoreOutChecked(t *testing.T) {
	model := filepath.Join(testenv.Testdata(t), "cifar_resnet20.script.pt")
	tmp := t.TempDir()
	data := "noise:uniform,n=300,shape=3x32x32,seed=1"
	_, stderr, err := runCmd("score", "--model", model, "--data", data, "--detectors", "msp", "--out", tmp)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a directory, not a regular file")
	assert.NotContains(t, stderr, "300/300", "refused before scoring, not after")

	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", data, "--detectors", "msp",
		"--out", filepath.Join(tmp, "missing", "s.csv"))
	assert.ErrorContains(t, err, "its folder")

	_, _, err = runCmd("fit", "--quiet", "--model", model, "--data", data, "--out", tmp)
	assert.ErrorContains(t, err, "is a directory")

	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", "noise:uniform,n=5,shape=3x32x32,seed=1",
		"--detectors", "msp", "--out", "/dev/null")
	require.NoError(t, err)
	fi, err := os.Stat("/dev/null")
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeCharDevice)
	_, err = os.Stat("/dev/null.json")
	assert.True(t, os.IsNotExist(err), "no sidecar beside a device")
}

// On a full disk a score file and its sidecar land together or not at all:
// on a small tmpfs with room for the score file but not for both, neither
// appears and the error names the disk; with room, both do.
func TestScoreFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	model := filepath.Join(testenv.Testdata(t), "cifar_resnet20.script.pt")
	spec := "noise:uniform,n=400,shape=3x32x32,seed=1"
	ref := filepath.Join(t.TempDir(), "ref.csv")
	_, _, err := runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "msp,energy", "--out", ref)
	require.NoError(t, err)
	csvInfo, err := os.Stat(ref)
	require.NoError(t, err)
	jsonInfo, err := os.Stat(gaia.ScoreMetaPath(ref))
	require.NoError(t, err)

	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	// Fill it so that the score file fits and the sidecar does not.
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(mnt, &st))
	page := int64(st.Bsize)
	pages := func(n int64) int64 { return (n + page - 1) / page * page }
	free := int64(st.Bavail) * page
	fill := free - pages(csvInfo.Size()) - pages(jsonInfo.Size())/2
	fill = fill / page * page
	if pages(jsonInfo.Size()) < 2*page { // the sidecar must not fit in the page left
		fill = free - pages(csvInfo.Size())
	}
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "filler"), make([]byte, fill), 0o644))
	out := filepath.Join(mnt, "s.csv")
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "msp,energy", "--out", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no space left on device")
	entries, _ := os.ReadDir(mnt)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"filler"}, names, "neither file, nor a temporary, is left")

	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	_, _, err = runCmd("score", "--quiet", "--model", model, "--data", spec, "--detectors", "msp,energy", "--out", out)
	require.NoError(t, err)
	for _, p := range []string{out, gaia.ScoreMetaPath(out)} {
		_, err := os.Stat(p)
		assert.NoError(t, err, p)
	}
	_, err = gaia.ReadScoreFile(out)
	require.NoError(t, err)
}

// A killed run's temporary is removed by the next run of the same output;
// a SIGINT says the run was interrupted and what was kept.
func TestScoreStaleAndInterrupted(t *testing.T) {
	model := filepath.Join(testenv.Testdata(t), "cifar_resnet20.script.pt")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "s.csv")
	host, _ := os.Hostname()
	host = strings.NewReplacer("-", "_", "/", "_").Replace(host)
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	stale := filepath.Join(tmp, fmt.Sprintf(".s.csv.partial-%s-%d-1", host, cmd.Process.Pid))
	require.NoError(t, os.WriteFile(stale, []byte("index,source"), 0o600))
	_, _, err := runCmd("score", "--quiet", "--model", model, "--data", "noise:uniform,n=5,shape=3x32x32,seed=1",
		"--detectors", "msp", "--out", out)
	require.NoError(t, err)
	_, err = os.Stat(stale)
	assert.True(t, os.IsNotExist(err), "the killed run's temporary was removed")

	c := gaiaProcess("score", "--model", model, "--data", "noise:uniform,n=100000,shape=3x32x32,seed=1",
		"--detectors", "gaia-z", "--out", filepath.Join(tmp, "big.csv"))
	stderr := &lockedBuffer{}
	c.Stderr = stderr
	require.NoError(t, c.Start())
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "gaia-z taps") }, 60*time.Second, 10*time.Millisecond)
	time.Sleep(time.Second) // scoring
	require.NoError(t, c.Process.Signal(os.Interrupt))
	err = c.Wait()
	require.Error(t, err)
	assert.Contains(t, stderr.String(), "interrupted (SIGINT or SIGTERM): nothing was written to")
	left, _ := filepath.Glob(filepath.Join(tmp, "*big.csv*"))
	assert.Empty(t, left)
}

// lockedBuffer is a bytes.Buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SIGTERM stops a run blocked on a FIFO: one that no process opens for
// reading (the open waits), and one whose reader opened it and reads
// nothing (a write waits on the full pipe). Before, only kill -9 stopped
// them. A FIFO named like an image in a folder is skipped and counted.
func TestFIFOOutputsStopOnSIGTERM(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	tmp := t.TempDir()
	run := func(fifo string, wantWaiting bool) {
		t.Helper()
		c := gaiaProcess("score", "--model", model, "--data", "noise:uniform,n=20000,shape=1x28x28,seed=1",
			"--detectors", "msp", "--out", fifo)
		stderr := &lockedBuffer{}
		c.Stderr = stderr
		require.NoError(t, c.Start())
		require.Eventually(t, func() bool {
			return strings.Contains(stderr.String(), "msp") || strings.Contains(stderr.String(), "model ")
		},
			60*time.Second, 10*time.Millisecond)
		time.Sleep(1500 * time.Millisecond)
		require.NoError(t, c.Process.Signal(syscall.SIGTERM))
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			require.Error(t, err)
			if wantWaiting {
				assert.Contains(t, stderr.String(), "a FIFO nobody reads: context canceled")
			} else {
				assert.Contains(t, stderr.String(), "interrupted (SIGINT or SIGTERM)")
			}
		case <-time.After(20 * time.Second):
			c.Process.Kill()
			t.Fatalf("SIGTERM did not stop a run writing to %s; stderr: %s", fifo, stderr.String())
		}
	}
	noReader := filepath.Join(tmp, "noreader.csv")
	require.NoError(t, syscall.Mkfifo(noReader, 0o644))
	run(noReader, true)

	stalled := filepath.Join(tmp, "stalled.csv")
	require.NoError(t, syscall.Mkfifo(stalled, 0o644))
	r, err := os.OpenFile(stalled, os.O_RDONLY|syscall.O_NONBLOCK, 0) // opened, never read
	require.NoError(t, err)
	defer r.Close()
	run(stalled, false)

	// A folder with a FIFO among its images scores the images.
	dir := filepath.Join(tmp, "images")
	require.NoError(t, os.Mkdir(dir, 0o755))
	for i := 0; i < 3; i++ {
		im := image.NewGray(image.Rect(0, 0, 28, 28))
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, im))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.png", i)), b.Bytes(), 0o644))
	}
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "trap.png"), 0o644))
	_, stderrOut, err := runCmd("score", "--model", model, "--data", "folder:"+dir, "--detectors", "msp", "--out", filepath.Join(tmp, "f.csv"))
	require.NoError(t, err)
	assert.Contains(t, stderrOut, "1 image names that are not regular files (FIFOs, devices) skipped")
}
