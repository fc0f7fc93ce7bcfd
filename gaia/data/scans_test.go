package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// progressive reads a committed progressive JPEG (scripts/make_jpeg_fixtures.py).
func progressive(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// scanBomb repeats the last scan of a progressive JPEG until it has n scans:
// a file of a few hundred KB that costs n passes over the whole image.
func scanBomb(t testing.TB, raw []byte, n int) []byte {
	t.Helper()
	have := countScans(raw)
	require.Greater(t, have, 1)
	last, eoi := -1, len(raw)-2
	require.Equal(t, []byte{0xff, 0xd9}, raw[eoi:])
	for i := 2; i+1 < eoi; i++ {
		if raw[i] == 0xff && raw[i+1] == 0xda {
			last = i
		}
	}
	require.Positive(t, last)
	out := append([]byte(nil), raw[:eoi]...)
	for k := have; k < n; k++ {
		out = append(out, raw[last:eoi]...)
	}
	out = append(out, 0xff, 0xd9)
	require.Equal(t, n, countScans(out))
	return out
}

// A progressive JPEG is decoded within its scan bound, and one past it
// (a last scan repeated) is refused when the scan past the bound starts:
// quickly, whatever the number of scans that follow.
func TestScanLimit(t *testing.T) {
	raw := progressive(t, "progressive-64.jpg")
	n := countScans(raw)
	assert.Equal(t, 10, n, "libjpeg's default progression of a color image")
	img, err := DecodeLimit(raw, DefaultLimits())
	require.NoError(t, err)
	assert.Equal(t, [3]int{3, 48, 64}, [3]int{img.C, img.H, img.W})

	// Admitted by the bound: libjpeg decodes the repeated scans (with
	// warnings, as Pillow does); Go's stricter decoder (no cgo) refuses
	// them as corrupt, but not for their number.
	admitted := func(b []byte, lim Limits, what string) {
		t.Helper()
		_, err := DecodeLimit(b, lim)
		if JPEGPillowExact() {
			require.NoError(t, err, what)
		} else {
			assert.NotErrorIs(t, err, ErrTooManyScans, what)
		}
	}
	admitted(scanBomb(t, raw, MaxScans), DefaultLimits(), "exactly MaxScans scans pass")
	bomb := scanBomb(t, raw, 10*MaxScans)
	_, err = DecodeLimit(bomb, DefaultLimits())
	require.ErrorIs(t, err, ErrTooManyScans)
	assert.ErrorContains(t, err, "more than 100 scans")
	admitted(bomb, Limits{Scans: 2000}, "a higher bound admits it")
	_, err = DecodeLimit(bomb, Limits{Scans: 12})
	assert.ErrorIs(t, err, ErrTooManyScans)
}

// The worst image the bound admits, and the stop: a 2048 x 2048
// progressive JPEG of 1,000 scans (no scan bound) stops within moments of
// its context's end, instead of decoding every scan.
func TestDecodeStopsWithItsContext(t *testing.T) {
	raw := progressive(t, "progressive-2048.jpg")
	bomb := scanBomb(t, raw, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := DecodeFor(ctx, bomb, nil, Limits{Scans: -1})
	took := time.Since(t0)
	if !JPEGPillowExact() { // Go's decoder (no cgo) has no progress hook, and refuses such files
		assert.Error(t, err)
		return
	}
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, took, 3*time.Second, "the decode stopped at the deadline, not after 1,000 scans")
	// Under the default bound the same file is refused at scan 101.
	t0 = time.Now()
	_, err = DecodeFor(context.Background(), bomb, nil, DefaultLimits())
	assert.ErrorIs(t, err, ErrTooManyScans)
	t.Logf("a 2048x2048 progressive JPEG of 1,000 scans: refused after %d scans in %s", MaxScans, time.Since(t0).Round(time.Millisecond))
}
