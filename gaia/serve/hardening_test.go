//go:build cgo && !gaia_nolibtorch

package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/internal/testenv"
)

// slowClient sends a score request's headers with a Content-Length of n,
// then one byte every tick until stopped or cut off; it returns the status
// line the server answered with ("" if none) on done.
func slowClient(t *testing.T, addr string, n int, tick time.Duration, stop <-chan struct{}) <-chan string {
	done := make(chan string, 1)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	fmt.Fprintf(c, "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n", n)
	go func() {
		defer c.Close()
		cut := make(chan struct{})
		go func() {
			defer close(cut)
			for i := 0; i < n-1; i++ {
				select {
				case <-stop:
					return
				case <-time.After(tick):
				}
				if _, err := c.Write([]byte{0}); err != nil {
					return
				}
			}
		}()
		line, _ := bufio.NewReader(c).ReadString('\n')
		done <- strings.TrimSpace(line)
		<-cut
	}()
	return done
}

// Clients that trickle their bodies hold neither a decode slot nor the
// others up: with one decode slot and three slow clients, a normal request
// is answered at once, and the slow ones are cut off with 408 at the read
// timeout. (Before, each slow body held a decode slot while it arrived: the
// normal request waited for the server's timeout and got 503.)
func TestServeSlowClients(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config()
	cfg.DecodeWorkers = 1
	cfg.ReadTimeout = 3 * time.Second
	cfg.Timeout = 2 * time.Second
	s, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := s.HTTPServer()
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); s.Close() })

	stop := make(chan struct{})
	defer close(stop)
	var slow []<-chan string
	for i := 0; i < 3; i++ {
		slow = append(slow, slowClient(t, ln.Addr().String(), 1000, 100*time.Millisecond, stop))
	}
	time.Sleep(300 * time.Millisecond) // the slow bodies are arriving
	status, b, _ := post(t, "http://"+ln.Addr().String(), "image/png", f.images[0])
	require.Equal(t, 200, status, string(b))
	for _, c := range slow {
		select {
		case line := <-c:
			t.Fatalf("a slow client was answered before the normal request: %q", line)
		default:
		}
	}
	for _, c := range slow {
		select {
		case line := <-c:
			assert.Contains(t, line, "408")
		case <-time.After(15 * time.Second):
			t.Fatal("a slow client was never cut off")
		}
	}
	assert.Equal(t, float64(3), counter(t, s, "gaia_serve_requests_total", "408"))
}

// Keep-alive connections left idle are closed after IdleTimeout, and
// Shutdown (SIGTERM) does not wait for a trickling body past ReadTimeout.
func TestServeIdleAndShutdown(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config()
	cfg.IdleTimeout = 300 * time.Millisecond
	cfg.ReadTimeout = time.Second
	s, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := s.HTTPServer()
	go hs.Serve(ln)
	defer s.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the idle keep-alive connection was not closed")

	stop := make(chan struct{})
	defer close(stop)
	sc := slowClient(t, ln.Addr().String(), 1000, 100*time.Millisecond, stop)
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	require.NoError(t, hs.Shutdown(ctx), "Shutdown waited for the trickling body past its grace")
	assert.Less(t, time.Since(t0), 10*time.Second)
	assert.Contains(t, <-sc, "408")
}

// Bodies held at once are bounded by BodyMemory, counted as they arrive:
// past it a request gets 503, and the budget comes back afterwards. A
// BodyMemory below MaxBytes, which would refuse every large request, is
// refused at start.
func TestServeBodyMemory(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config()
	cfg.MaxBytes, cfg.BodyMemory = 8<<10, 4<<10
	_, err := New(cfg)
	assert.ErrorContains(t, err, "BodyMemory 4096 is below MaxBytes 8192")
	cfg.BodyMemory = 8 << 10
	_, hs := startServer(t, cfg, nil)
	// A slow client holds 6000 bytes of the budget while its body arrives.
	stop := make(chan struct{})
	slow := slowClient(t, strings.TrimPrefix(hs.URL, "http://"), 6000, 50*time.Millisecond, stop)
	time.Sleep(300 * time.Millisecond)
	big := make([]byte, 4<<10)
	status, b, _ := post(t, hs.URL, "image/png", big)
	assert.Equal(t, http.StatusServiceUnavailable, status, string(b))
	assert.Contains(t, string(b), "request bodies held at once")
	close(stop)
	<-slow
	for i := 0; i < 3; i++ {
		status, b, _ = post(t, hs.URL, "image/png", f.images[0])
		require.Equal(t, 200, status, string(b))
	}
}

// A 16-bit PNG is bounded by the bytes it takes decoded, not only by its
// pixel count: a 1024 x 1024 16-bit RGBA image (a few KB of file, 11 MiB
// decoded) is refused under MaxImageBytes = 8 MiB, naming the sizes.
func TestServeImageBytes(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config()
	cfg.MaxImageBytes = 8 << 20
	_, hs := startServer(t, cfg, nil)
	var deep bytes.Buffer
	im := image.NewRGBA64(image.Rect(0, 0, 1024, 1024))
	im.SetRGBA64(3, 3, color.RGBA64{R: 65535, A: 65535})
	require.NoError(t, png.Encode(&deep, im))
	status, b, _ := post(t, hs.URL, "image/png", deep.Bytes())
	assert.Equal(t, 400, status, string(b))
	assert.Contains(t, string(b), "1024x1024 16-bit color PNG takes 11 MiB to decode (at most 8 MiB")
	status, b, _ = post(t, hs.URL, "image/png", f.images[0])
	assert.Equal(t, 200, status, string(b))
}

// An input that makes the model's outputs NaN is still answered with a
// complete JSON body, its non-finite values as strings, and the good input
// beside it keeps its answer. (Before, the encoder's error was ignored: a
// 200 with an empty body.)
func TestServeNonFiniteAnswer(t *testing.T) {
	f := newFixture(t, 1)
	_, hs := startServer(t, f.config(), nil)
	good := make([]float32, 28*28)
	huge := make([]float32, 28*28)
	for i := range huge {
		huge[i] = 3e38
		if i%2 == 1 {
			huge[i] = -3e38
		}
	}
	status, b, _ := post(t, hs.URL, "application/json", mustJSON(t, map[string]any{"inputs": [][]float32{good, huge}}))
	require.Equal(t, 200, status, string(b))
	r := decodeResponse(t, b)
	require.Len(t, r.Results, 2)
	assert.False(t, math.IsNaN(float64(r.Results[0].Probability)))
	assert.True(t, math.IsNaN(float64(r.Results[1].Probability)), "the overflowing input's probability: %v", r.Results[1].Probability)
	assert.Contains(t, string(b), `"probability":"NaN"`)
	// The documented policy: no score of a sample whose logits are not
	// finite (before, GAIA-Z came out finite beside a NaN probability).
	for name, v := range r.Results[1].Scores {
		assert.True(t, math.IsNaN(float64(v)), "%s of the overflowing input: %v", name, v)
	}
	for name, v := range r.Results[0].Scores {
		assert.False(t, math.IsNaN(float64(v)), "%s of the good input", name)
	}
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw), "the body is complete JSON")
}

// A model that cannot score a batch of MaxBatch fails the warm-up: New
// returns the error (gaia serve exits with it) and no server is made.
func TestServeWarmupFails(t *testing.T) {
	dir := t.TempDir()
	td := testenv.Testdata(t)
	for _, name := range []string{"raising_cnn.pt", "raising_cnn.json"} {
		b, err := os.ReadFile(filepath.Join(td, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	cfg := Config{Model: filepath.Join(dir, "raising_cnn.pt"), Device: testenv.Device(), Detectors: []string{"msp"},
		MaxBatch: 8, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := New(cfg)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Contains(t, err.Error(), "warm-up on cpu at batch 8")
	assert.Contains(t, err.Error(), "batches over 4 are refused")

	// At a max batch it can score, the same model serves.
	cfg.MaxBatch = 4
	s2, err := New(cfg)
	require.NoError(t, err)
	defer s2.Close()
	assert.True(t, s2.Ready())
	hs := httptest.NewServer(s2)
	defer hs.Close()
	status, b, _ := post(t, hs.URL, "application/json", mustJSON(t, map[string]any{"inputs": [][]float32{make([]float32, 784)}}))
	assert.Equal(t, http.StatusOK, status, string(b))
}

// scanBombJPEG repeats the last scan of a committed progressive JPEG
// (2048 x 2048) until the file has n scans.
func scanBombJPEG(t *testing.T, n int) []byte {
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "gaia", "data", "testdata", "progressive-2048.jpg"))
	require.NoError(t, err)
	last, eoi := -1, len(raw)-2
	for i := 2; i+1 < eoi; i++ {
		if raw[i] == 0xff && raw[i+1] == 0xda {
			last = i
		}
	}
	require.Positive(t, last)
	out := append([]byte(nil), raw[:eoi]...)
	for k := 10; k < n; k++ { // the file has libjpeg's 10 scans
		out = append(out, raw[last:eoi]...)
	}
	return append(out, 0xff, 0xd9)
}

// A progressive JPEG of hundreds of scans (each a pass over 2048 x 2048
// pixels; a bomb of 10,000 scans can be 593 KB) is refused at
// scan 101 with 400, and under a scan bound too high to catch it, its
// decoding stops at the request's deadline: the decode slot comes back and a
// normal image is answered at once. (Before, two such requests held both
// decode slots for minutes and the server kept 100% CPU after the clients
// had gone.)
func TestServeScanBomb(t *testing.T) {
	f := newFixture(t, 1)
	bomb := scanBombJPEG(t, 800) // 22 MB
	cfg := f.config()
	cfg.DecodeWorkers = 1
	_, hs := startServer(t, cfg, nil)
	t0 := time.Now()
	status, b, _ := post(t, hs.URL, "image/jpeg", bomb)
	assert.Equal(t, http.StatusBadRequest, status, string(b))
	assert.Contains(t, string(b), "too many scans")
	assert.Less(t, time.Since(t0), 10*time.Second)

	cfg = f.config()
	cfg.DecodeWorkers, cfg.MaxScans, cfg.Timeout = 1, 1000000, 300*time.Millisecond
	_, hs = startServer(t, cfg, nil)
	t0 = time.Now()
	status, b, _ = post(t, hs.URL, "image/jpeg", bomb)
	took := time.Since(t0)
	assert.Equal(t, http.StatusServiceUnavailable, status, string(b))
	assert.Contains(t, string(b), "timed out")
	assert.Less(t, took, 5*time.Second, "the decode stopped at the deadline")
	t0 = time.Now()
	status, b, _ = post(t, hs.URL, "image/png", f.images[0])
	assert.Equal(t, http.StatusOK, status, string(b))
	assert.Less(t, time.Since(t0), 5*time.Second, "the decode slot came back")
}

// The memory of a resize follows the crop's window, not the image's
// aspect ratio: a 1 x 200,000 PNG under resize=28,center-crop=28x28 is
// scored with a few MB; a transform no image passes (a fixed size that is
// not the model's) is refused when the server starts.
func TestServeThinImage(t *testing.T) {
	f := newFixture(t, 1)
	cfg := f.config()
	cfg.Gate, cfg.Transform = "", "resize=28,center-crop=28x28"
	_, hs := startServer(t, cfg, nil)
	im := image.NewGray(image.Rect(0, 0, 1, 200000))
	for i := range im.Pix {
		im.Pix[i] = uint8(i * 7)
	}
	var thin bytes.Buffer
	require.NoError(t, png.Encode(&thin, im))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	status, b, _ := post(t, hs.URL, "image/png", thin.Bytes())
	runtime.ReadMemStats(&after)
	require.Equal(t, http.StatusOK, status, string(b))
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "allocated while scoring it")

	cfg.Transform = "resize=100000x100000"
	_, err := New(cfg)
	assert.ErrorContains(t, err, "image is 100000x100000 after the transform (resize=100000x100000), the model takes 28x28")
	// An image of the wrong size tells the client what to send.
	_, hs = startServer(t, f.config(), nil)
	status, b, _ = post(t, hs.URL, "image/png", pngBytes(t, 1, 56, 56))
	assert.Equal(t, http.StatusBadRequest, status, string(b))
	assert.Contains(t, string(b), "send images the transform makes 28x28 of")
	assert.NotContains(t, string(b), "data spec")
}
