// Package outfile writes the files gaia makes whole or not at all.
package outfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// An Output is a file written whole or not at all: its bytes go to a
// temporary file beside it (.NAME.partial-HOST-PID-N), which Commit syncs
// and renames into place. The rules, for every file gaia writes (score
// files and their sidecars, gates, fit files, reports):
//
//   - Regular files are replaced whole. A character device or a FIFO at the
//     path (/dev/null, a named pipe) is written to directly, as stdout is for
//     score --out -: streamed, not atomic, and without a sidecar beside it.
//     A directory, block device or socket is refused when the Output is
//     created, before any work.
//   - A symlink is followed: the file it points to is replaced and the link
//     stays. A dangling symlink is refused.
//   - The folder must exist and be writable: creating the Output checks it,
//     so a command fails before its first batch, not after its last.
//   - A new file gets mode 0644 less the umask; a replaced file keeps its
//     mode.
//   - Temporaries left by runs that were killed (SIGKILL, out of memory) are
//     removed when the same output is next created: those of a process of
//     this host that is gone, and any untouched for a day.
type Output struct {
	Path   string // the path asked for
	final  string // where the file lands: Path with a symlink followed
	direct bool   // a character device or FIFO, written to in place
	f      *os.File
	ctx    context.Context // a direct output's: its writes end with it
	stop   func()          // ends the watch of ctx
}

// openDirect opens a character device, or a FIFO without blocking: the
// open is retried until a reader is there or ctx ends, and the file is
// in Go's poller, so that a write the reader does not take can be ended.
func openDirect(ctx context.Context, path, final string) (*Output, error) {
	fi, err := os.Stat(final)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	o := &Output{Path: path, final: final, direct: true, ctx: ctx, stop: func() {}}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		if o.f, err = os.OpenFile(final, os.O_WRONLY, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return o, nil
	}
	for {
		o.f, err = os.OpenFile(final, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ENXIO) { // ENXIO: no reader yet
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: a FIFO nobody reads: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if ctx.Done() != nil {
		done := make(chan struct{})
		var once sync.Once
		o.stop = func() { once.Do(func() { close(done) }) }
		go func(f *os.File) {
			select {
			case <-ctx.Done():
				f.SetWriteDeadline(time.Unix(1, 0)) // a write in progress returns now
			case <-done:
			}
		}(o.f)
	}
	return o, nil
}

// Final is where the file lands: Path with a symlink followed.
func (o *Output) Final() string { return o.final }

// Direct reports whether the output is a character device or FIFO written to
// in place (no temporary, no sidecar).
func (o *Output) Direct() bool { return o.direct }

// staleAge is how long another host's temporary may sit untouched before a
// later run takes it for a killed run's.
const staleAge = 24 * time.Hour

// Resolve is where a file written to path lands (a symlink followed),
// whether it is a character device or FIFO written in place, or why it
// cannot be written there.
func Resolve(path string) (final string, direct bool, err error) {
	final, err = resolveOutput(path)
	if err != nil {
		return "", false, err
	}
	if fi, err := os.Stat(final); err == nil && fi.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0 {
		return final, true, nil
	}
	return final, false, nil
}

func resolveOutput(path string) (string, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(path)
		di, err := os.Stat(dir)
		if err != nil {
			return "", fmt.Errorf("%s: its folder: %w", path, err)
		}
		if !di.IsDir() {
			return "", fmt.Errorf("%s: %s is not a folder", path, dir)
		}
		return path, nil
	}
	if err != nil {
		return "", err
	}
	final := path
	if fi.Mode()&fs.ModeSymlink != 0 {
		if final, err = filepath.EvalSymlinks(path); err != nil {
			return "", fmt.Errorf("%s is a symlink whose target is missing or unreadable (%v); gaia writes through symlinks to an existing file or folder", path, err)
		}
		if fi, err = os.Stat(final); err != nil {
			return "", err
		}
	}
	if fi.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0 {
		return final, nil
	}
	if kind := specialKind(fi.Mode()); kind != "" {
		return "", fmt.Errorf("%s is %s, not a regular file: gaia writes outputs whole through a temporary file and a rename, which would replace it (give a file path; score --out - writes to stdout)", path, kind)
	}
	return final, nil
}

func specialKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case !m.IsRegular():
		return "not a regular file"
	}
	return ""
}

// Create starts an Output at path: it checks the path (Resolve),
// removes stale temporaries of the same output, and creates the temporary.
func Create(path string) (*Output, error) { return CreateContext(context.Background(), path) }

// CreateContext is Create whose waits end with ctx: a FIFO at path is
// waited on until a reader opens it, and a write to it blocks while the
// reader does not read; when ctx ends, the wait and the write return ctx's
// error (SIGTERM stops a run that writes to a pipe nobody reads).
func CreateContext(ctx context.Context, path string) (*Output, error) {
	final, direct, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	if direct {
		return openDirect(ctx, path, final)
	}
	RemoveStalePartials(final)
	perm := os.FileMode(0o644)
	keep := false
	if fi, err := os.Stat(final); err == nil {
		perm, keep = fi.Mode().Perm(), true
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("-", "_", "/", "_").Replace(host)
	prefix := fmt.Sprintf("%s.partial-%s-%d-", partialBase(final), host, os.Getpid())
	for i := 0; ; i++ {
		name := prefix + strconv.FormatUint(rand.Uint64()%1e9, 10)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: cannot write in its folder: %w", path, err)
		}
		if keep { // the umask does not apply to the mode a replaced file had
			f.Chmod(perm)
		}
		return &Output{Path: path, final: final, f: f}, nil
	}
}

// partialBase is the temporaries' name prefix for final, without the suffix.
func partialBase(final string) string {
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final))
}

// RemoveStalePartials removes the temporaries of final left by runs that
// can no longer finish them: a process of this host that has exited, or any
// temporary untouched for staleAge. It returns how many it removed.
func RemoveStalePartials(final string) int {
	paths, _ := filepath.Glob(partialBase(final) + ".partial-*")
	host, _ := os.Hostname()
	host = strings.NewReplacer("-", "_", "/", "_").Replace(host)
	n := 0
	for _, p := range paths {
		rest := strings.TrimPrefix(p, partialBase(final)+".partial-")
		parts := strings.Split(rest, "-")
		stale := false
		if len(parts) == 3 && parts[0] == host {
			if pid, err := strconv.Atoi(parts[1]); err == nil && pid != os.Getpid() && !processAlive(pid) {
				stale = true
			}
		}
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > staleAge {
			stale = true
		}
		if len(parts) != 3 { // the older, unnamed form (.NAME.partial-N)
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > time.Hour {
				stale = true
			}
		}
		if stale && os.Remove(p) == nil {
			n++
		}
	}
	return n
}

// processAlive reports whether pid is a live process of this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// File is the temporary file, to write to.
func (o *Output) File() *os.File { return o.f }

// Write writes to the temporary file (or the device or FIFO); a direct
// write that its context ended returns the context's error.
func (o *Output) Write(b []byte) (int, error) {
	n, err := o.f.Write(b)
	if err != nil && o.ctx != nil && o.ctx.Err() != nil {
		return n, fmt.Errorf("write %s: %w", o.Path, o.ctx.Err())
	}
	return n, err
}

// Sync flushes the temporary file to disk and closes it: what fails on a
// full disk fails here, before anything is renamed.
func (o *Output) Sync() error {
	if o.direct { // a device or pipe: nothing to sync, just close
		o.stop()
		if err := o.f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", o.Path, err)
		}
		return nil
	}
	if err := o.f.Sync(); err != nil {
		o.f.Close()
		return fmt.Errorf("write %s: %w", o.Path, err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", o.Path, err)
	}
	return nil
}

// Check checks, before any work, that path can be written as an
// Output: what Create checks, a temporary made and removed.
func Check(path string) error {
	o, err := Create(path)
	if err != nil {
		return err
	}
	o.Abort()
	return nil
}

// rename moves the synced temporary into place.
func (o *Output) rename() error {
	if o.direct {
		o.f = nil
		return nil
	}
	if err := os.Rename(o.f.Name(), o.final); err != nil {
		return fmt.Errorf("write %s: %w", o.Path, err)
	}
	o.f = nil
	return nil
}

// Commit syncs the temporary file and renames it into place; on an error
// the temporary is removed and the path is untouched.
func (o *Output) Commit() error { return Commit(o) }

// Abort removes the temporary file; the path is untouched.
func (o *Output) Abort() {
	if o != nil && o.f != nil {
		if o.stop != nil {
			o.stop()
		}
		o.f.Close()
		if !o.direct {
			os.Remove(o.f.Name())
		}
		o.f = nil
	}
}

// Commit commits outputs that belong together (a score file and its
// sidecar) so that either all of them land or none does: every temporary is
// synced first (a full disk fails there, and nothing is renamed), then they
// are renamed in order, the last one last; a rename that fails removes the
// files renamed before it. Put the file readers look for (the score file)
// last.
func Commit(outs ...*Output) error {
	for _, o := range outs {
		if err := o.Sync(); err != nil {
			for _, a := range outs {
				a.Abort()
			}
			return err
		}
	}
	for i, o := range outs {
		if err := o.rename(); err != nil {
			for _, done := range outs[:i] {
				if !done.direct {
					os.Remove(done.final)
				}
			}
			for _, a := range outs[i:] {
				a.Abort()
			}
			return err
		}
	}
	return nil
}

// WriteFile writes a file whole or not at all (an Output): readers
// see the old file or the whole new one, never a part.
func WriteFile(path string, b []byte) error {
	o, err := Create(path)
	if err != nil {
		return err
	}
	if _, err := o.Write(b); err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := o.Commit(); err != nil {
		o.Abort()
		return err
	}
	return nil
}

// WriteJSON writes v as indented JSON, whole or not at all.
func WriteJSON(path string, v any) error {
	raw, err := JSON(v)
	if err != nil {
		return err
	}
	return WriteFile(path, raw)
}

// JSON is v as WriteJSON writes it: indented, with a final newline.
func JSON(v any) ([]byte, error) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}
