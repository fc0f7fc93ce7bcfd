package outfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeOut(t *testing.T, path, text string) error {
	t.Helper()
	return WriteFile(path, []byte(text))
}

// Regular files are replaced whole, new ones 0644 less the umask, replaced
// ones keeping their mode; no temporary is left.
func TestOutputRegular(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := filepath.Join(dir, "a.csv")
	require.NoError(t, writeOut(t, p, "one"))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "a new file is 0644 less the umask, not CreateTemp's 0600")
	require.NoError(t, os.Chmod(p, 0o640))
	require.NoError(t, writeOut(t, p, "two"))
	b, _ := os.ReadFile(p)
	assert.Equal(t, "two", string(b))
	fi, _ = os.Stat(p)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "a replaced file keeps its mode")
	syscall.Umask(0o077)
	q := filepath.Join(dir, "b.csv")
	require.NoError(t, writeOut(t, q, "x"))
	fi, _ = os.Stat(q)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the umask applies")
	left, _ := filepath.Glob(filepath.Join(dir, ".*partial*"))
	assert.Empty(t, left)
}

// A directory, a socket and a missing folder are refused before anything is
// written; a character device and a FIFO are written to in place (not
// replaced by a regular file).
func TestOutputSpecial(t *testing.T) {
	dir := t.TempDir()
	_, err := Create(dir)
	assert.ErrorContains(t, err, "is a directory, not a regular file")
	_, err = Create(filepath.Join(dir, "no", "such", "x.csv"))
	assert.ErrorContains(t, err, "its folder")

	// /dev/null stays a device: written in place.
	require.NoError(t, writeOut(t, "/dev/null", "scores"))
	fi, err := os.Stat("/dev/null")
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeCharDevice, "/dev/null is still a character device")
	// /dev/full: the write's error comes back, naming the path.
	if _, err := os.Stat("/dev/full"); err == nil {
		err := writeOut(t, "/dev/full", strings.Repeat("x", 1<<16))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "/dev/full")
		fi, _ = os.Stat("/dev/full")
		assert.NotZero(t, fi.Mode()&os.ModeCharDevice)
	}

	// A FIFO is written to, not replaced.
	fifo := filepath.Join(dir, "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	require.NoError(t, writeOut(t, fifo, "through the pipe"))
	assert.Equal(t, "through the pipe", <-got)
	fi, _ = os.Lstat(fifo)
	assert.NotZero(t, fi.Mode()&os.ModeNamedPipe, "the FIFO is still a FIFO")

	// A socket is refused.
	sock := filepath.Join(dir, "s.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}))
	_, err = Create(sock)
	assert.ErrorContains(t, err, "is a socket")
}

// A symlink is followed: its target is replaced and the link stays; a
// dangling one is refused.
func TestOutputSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "scores.csv")
	require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
	require.NoError(t, os.WriteFile(target, []byte("old"), 0o644))
	link := filepath.Join(dir, "scores.csv")
	require.NoError(t, os.Symlink(target, link))
	require.NoError(t, writeOut(t, link, "new"))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link stays a link")
	b, _ := os.ReadFile(target)
	assert.Equal(t, "new", string(b))

	dangling := filepath.Join(dir, "gone.csv")
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere", "x.csv"), dangling))
	err = writeOut(t, dangling, "x")
	assert.ErrorContains(t, err, "symlink whose target is missing")
}

// Temporaries of a process of this host that has exited, and any untouched
// for a day, are removed when the output is next created; a live process's
// are kept.
func TestOutputStalePartials(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "scores.csv")
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	dead := cmd.Process.Pid
	host, _ := os.Hostname()
	host = strings.NewReplacer("-", "_", "/", "_").Replace(host)
	name := func(h string, pid int) string {
		return filepath.Join(dir, ".scores.csv.partial-"+h+"-"+strconv.Itoa(pid)+"-7")
	}
	deadP := name(host, dead)
	liveP := name(host, os.Getppid())
	otherP := name("elsewhere", 12345)
	oldP := name("elsewhere", 54321)
	for _, p := range []string{deadP, liveP, otherP, oldP} {
		require.NoError(t, os.WriteFile(p, []byte("part"), 0o644))
	}
	day := time.Now().Add(-25 * time.Hour)
	require.NoError(t, os.Chtimes(oldP, day, day))
	require.NoError(t, writeOut(t, final, "whole"))
	for p, want := range map[string]bool{deadP: false, liveP: true, otherP: true, oldP: false} {
		_, err := os.Stat(p)
		assert.Equal(t, want, err == nil, "%s kept", filepath.Base(p))
	}
}

// Commit lands all or none: when a rename fails, the files renamed
// before it are removed and no temporary is left.
func TestCommitOutputsAllOrNone(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(filepath.Join(dir, "a.csv.json"))
	require.NoError(t, err)
	b, err := Create(filepath.Join(dir, "a.csv"))
	require.NoError(t, err)
	a.Write([]byte("{}"))
	b.Write([]byte("rows"))
	b.final = filepath.Join(dir, "gone", "a.csv") // its folder vanished meanwhile
	require.Error(t, Commit(a, b))
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries, "neither the sidecar nor a temporary is left")
}
