//go:build cgo && !gaia_nolibtorch

package serve

import (
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
	"math/rand"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/scorefile"
	"github.com/gaia-ood/gaia/internal/testenv"
	"github.com/gaia-ood/gaia/internal/testhook"
	"github.com/gaia-ood/gaia/torch"
)

// The committed MNIST ResNet (1x28x28) is the real model these tests serve.
func mnistModel(t *testing.T) string {
	p := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	_, err := os.Stat(p)
	require.NoError(t, err)
	return p
}

// pngBytes encodes a seeded gray image of h x w: a bright stroke on noise,
// different per seed.
func pngBytes(t testing.TB, seed int64, h, w int) []byte {
	rng := rand.New(rand.NewSource(seed))
	im := image.NewGray(image.Rect(0, 0, w, h))
	x0 := rng.Intn(w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8(rng.Intn(40))
			if abs(x-x0-(y*(int(seed)%3-1))/2) < 2 {
				v = 255
			}
			im.SetGray(x, y, color.Gray{v})
		}
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, im))
	return b.Bytes()
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// fixture is a folder of PNGs, their scores as `gaia score` computes them
// (gaia.ScoreDataset into a score file) and a gate calibrated on them.
type fixture struct {
	model, dir, gate string
	images           [][]byte
	names            []string
	want             *gaia.ScoreFile
	dets             []string
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), dets: []string{"gaia-z", "msp", "energy"}}
	// A copy of its own: batch hooks are registered by model path.
	f.model = filepath.Join(f.dir, "mnist_resnet.pt")
	for _, ext := range []string{".pt", ".json"} {
		b, err := os.ReadFile(strings.TrimSuffix(mnistModel(t), ".pt") + ext)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(strings.TrimSuffix(f.model, ".pt")+ext, b, 0o644))
	}
	imgDir := filepath.Join(f.dir, "images")
	require.NoError(t, os.Mkdir(imgDir, 0o755))
	for i := 0; i < n; i++ {
		b := pngBytes(t, int64(i+1), 28, 28)
		name := fmt.Sprintf("img%03d.png", i)
		require.NoError(t, os.WriteFile(filepath.Join(imgDir, name), b, 0o644))
		f.images = append(f.images, b)
		f.names = append(f.names, name)
	}
	// The scores gaia score makes of the folder.
	spec := "folder:" + imgDir
	m, err := gaia.Open(context.Background(), f.model, gaia.Options{Device: testenv.Device(), Detectors: f.dets, SkipWarmup: true})
	require.NoError(t, err)
	defer m.Close()
	ds, err := m.Dataset(spec)
	require.NoError(t, err)
	out := filepath.Join(f.dir, "id.csv")
	sw, err := scorefile.Create(out, f.dets, nil)
	require.NoError(t, err)
	_, err = m.ScoreDataset(context.Background(), ds, gaia.DatasetOptions{Batch: 7}, sw.Append)
	require.NoError(t, err)
	require.NoError(t, sw.Commit())
	f.want, err = gaia.ReadScoreFile(out)
	require.NoError(t, err)
	g, err := gaia.NewGate(f.want, m.Provenance(spec, n), "gaia-z", 0.5)
	require.NoError(t, err)
	f.gate = filepath.Join(f.dir, "gate.json")
	require.NoError(t, outfile.WriteJSON(f.gate, g))
	return f
}

func (f *fixture) config() Config {
	return Config{Model: f.model, Device: testenv.Device(), Gate: f.gate, Detectors: f.dets,
		MaxBatch: 8, MaxWait: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// startServer starts a server, its batcher calling hook (if any) before
// each batch.
func startServer(t *testing.T, cfg Config, hook func()) (*Server, *httptest.Server) {
	t.Helper()
	if hook != nil {
		t.Cleanup(testhook.HoldBatches(cfg.Model, hook))
	}
	s, err := New(cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	require.True(t, s.Ready())
	return s, hs
}

// gauge reads a gauge of the server's metrics.
func gauge(t testing.TB, s *Server, name string) float64 {
	mfs, err := s.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func post(t testing.TB, url, ctype string, body []byte) (int, []byte, http.Header) {
	resp, err := http.Post(url+"/v1/score", ctype, bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b, resp.Header
}

func decodeResponse(t testing.TB, b []byte) Response {
	var r Response
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	return r
}

func multipartBody(t testing.TB, names []string, images [][]byte) (string, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i, im := range images {
		w, err := mw.CreateFormFile("image", names[i])
		require.NoError(t, err)
		_, err = w.Write(im)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), b.Bytes()
}

// checkResult compares a served result with the score file row of the same
// image: same class, scores within 1e-4 relative (batches differ), and the
// gate's decision from its own threshold.
func (f *fixture) checkResult(t testing.TB, r Result, row int, g *gaia.Gate) {
	t.Helper()
	w := f.want.Rows[row]
	assert.Equal(t, w.Pred, r.Class, "image %d class", row)
	for d, det := range f.dets {
		want := w.Scores[d]
		got := float64(r.Scores[det])
		assert.InDelta(t, want, got, 1e-4*math.Max(1, math.Abs(want)), "image %d %s", row, det)
	}
	require.NotNil(t, r.Gate)
	assert.Equal(t, "gaia-z", r.Gate.Detector)
	assert.Equal(t, g.Threshold, r.Gate.Threshold)
	assert.Equal(t, float64(r.Gate.Score) > g.Threshold, r.Gate.OOD, "image %d decision", row)
	assert.Equal(t, float64(r.Scores["gaia-z"]), float64(r.Gate.Score))
}

func histogramSum(t testing.TB, s *Server, name string) (count uint64, sum float64) {
	mfs, err := s.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

func counter(t testing.TB, s *Server, name, label string) float64 {
	mfs, err := s.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

// Concurrent clients, one image each, plus a multipart request and a JSON
// tensor batch: every answer equals gaia score's for the same image, each
// request is answered once, and batches gathered more than one request.
func TestServeMatchesScore(t *testing.T) {
	f := newFixture(t, 40)
	g, err := gaia.LoadGate(f.gate)
	require.NoError(t, err)
	assert.Equal(t, "", g.Transform) // a plain folder spec has no transform
	s, hs := startServer(t, f.config(), nil)
	assert.Equal(t, f.dets, s.Detectors())

	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range f.images {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			status, body, _ := post(t, hs.URL, "image/png", f.images[i])
			require.Equal(t, http.StatusOK, status, string(body))
			r := decodeResponse(t, body)
			require.Len(t, r.Results, 1)
			f.checkResult(t, r.Results[0], i, g)
		}(i)
	}
	wg.Wait()

	ctype, body := multipartBody(t, f.names[:20], f.images[:20])
	status, b, _ := post(t, hs.URL, ctype, body)
	require.Equal(t, http.StatusOK, status, string(b))
	r := decodeResponse(t, b)
	require.Len(t, r.Results, 20) // more than MaxBatch: split over batches, answered together
	for i, res := range r.Results {
		assert.Equal(t, i, res.Index)
		assert.Equal(t, f.names[i], res.Name)
		assert.Equal(t, fmt.Sprint(res.Class), res.Label) // MODEL.json's class names
		f.checkResult(t, res, i, g)
	}

	// JSON: the model's input tensors (as the transform makes them), nested
	// for the first, flat for the second.
	meta, _ := gaia.LoadMeta(f.model)
	tf, err := data.ParseTransform("", 1, 28, 28, meta.Mean, meta.Std)
	require.NoError(t, err)
	var ins []any
	for i := 0; i < 2; i++ {
		img, err := data.Decode(f.images[i])
		require.NoError(t, err)
		x := make([]float32, 28*28)
		require.NoError(t, tf.Apply(img, i, x))
		if i == 0 {
			nested := [][][]float32{make([][]float32, 28)}
			for y := range nested[0] {
				nested[0][y] = x[y*28 : (y+1)*28]
			}
			ins = append(ins, nested)
		} else {
			ins = append(ins, x)
		}
	}
	jb, _ := json.Marshal(map[string]any{"inputs": ins})
	status, b, _ = post(t, hs.URL, "application/json", jb)
	require.Equal(t, http.StatusOK, status, string(b))
	r = decodeResponse(t, b)
	require.Len(t, r.Results, 2)
	for i, res := range r.Results {
		f.checkResult(t, res, i, g)
	}

	// Every input scored exactly once: 40 + 20 + 2 across the batches.
	n, sum := histogramSum(t, s, "gaia_serve_batch_size")
	assert.Equal(t, float64(62), sum)
	assert.Less(t, n, uint64(40+3+2), "no request shared a batch")
	assert.Equal(t, float64(42), counter(t, s, "gaia_serve_requests_total", "200"))

	// /healthz, /readyz, /metrics.
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(hs.URL + p)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, p)
	}
	resp, err := http.Get(hs.URL + "/metrics")
	require.NoError(t, err)
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"gaia_serve_requests_total", "gaia_serve_request_duration_seconds_bucket",
		"gaia_serve_batch_size_bucket", "gaia_serve_queue_depth", `gaia_serve_inputs_total{decision="ood"}`} {
		assert.Contains(t, string(mb), m)
	}
}

// Bad inputs get a 4xx with a JSON error naming the problem, and the server
// goes on answering everyone else.
func TestServeBadInput(t *testing.T) {
	f := newFixture(t, 2)
	cfg := f.config()
	cfg.MaxBytes = 64 << 10
	cfg.MaxPixels = 512 * 512
	cfg.MaxInputs = 4
	_, hs := startServer(t, cfg, nil)

	good := f.images[0]
	var big bytes.Buffer
	require.NoError(t, png.Encode(&big, image.NewGray(image.Rect(0, 0, 600, 600))))
	var wrongSize bytes.Buffer
	require.NoError(t, png.Encode(&wrongSize, image.NewGray(image.Rect(0, 0, 30, 28))))
	noisy := make([]byte, 100<<10)
	rand.New(rand.NewSource(1)).Read(noisy)
	mpType, mpBody := multipartBody(t, []string{"a.png", "b.txt"}, [][]byte{good, []byte("hello")})
	manyType, manyBody := multipartBody(t, make([]string, 5), [][]byte{good, good, good, good, good})
	row := make([]float32, 28)
	cases := []struct {
		name, ctype string
		body        []byte
		status      int
		msg         string
	}{
		{"not an image", "image/png", []byte("hello, world"), 400, "not a readable PNG or JPEG"},
		{"truncated", "image/png", good[:len(good)/2], 400, "the image"},
		{"empty", "image/jpeg", nil, 400, "empty"},
		{"bomb", "image/png", big.Bytes(), 400, "over the limit"},
		{"wrong size", "image/png", wrongSize.Bytes(), 400, "28x30 after the transform (none), the model takes 28x28; send images"},
		{"too big body", "image/png", noisy, 413, "limit"},
		{"content type", "text/plain", good, 415, "Content-Type"},
		{"no content type", "", good, 415, "Content-Type"},
		{"multipart bad part", mpType, mpBody, 400, `part 1 ("b.txt")`},
		{"too many inputs", manyType, manyBody, 413, "more than 4 inputs"},
		{"json not json", "application/json", []byte("{"), 400, "JSON body"},
		{"json no inputs", "application/json", []byte(`{"inputs": []}`), 400, "missing or empty"},
		{"json unknown field", "application/json", []byte(`{"images": [1]}`), 400, "unknown field"},
		{"json flat wrong length", "application/json", []byte(`{"inputs": [[1, 2, 3]]}`), 400, "has 3 numbers, the model takes 1x28x28 = 784"},
		{"json nested wrong", "application/json", mustJSON(t, map[string]any{"inputs": [][][]float32{{row, row}}}), 400, "inputs[0] has 2 entries, want 1"},
		{"json nested inner", "application/json", mustJSON(t, map[string]any{"inputs": [][][][]float32{{repeat(row[:5], 28)}}}), 400, "inputs[0][0][0] has 5 entries"},
		{"json string", "application/json", []byte(`{"inputs": [["a"]]}`), 400, "inputs[0]"},
		{"json too many", "application/json", mustJSON(t, map[string]any{"inputs": make([][]float32, 5)}), 413, "at most 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b, _ := post(t, hs.URL, c.ctype, c.body)
			assert.Equal(t, c.status, status, string(b))
			var e errorBody
			require.NoError(t, json.Unmarshal(b, &e), string(b))
			assert.Contains(t, e.Error, c.msg)
			assert.Equal(t, c.status, e.Status)
			// The server still serves a good request.
			status, b, _ = post(t, hs.URL, "image/png", good)
			assert.Equal(t, 200, status, string(b))
		})
	}
	resp, err := http.Get(hs.URL + "/v1/score")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func repeat(r []float32, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// With the batcher held, a full queue answers 503 with Retry-After, a
// request whose client goes away leaves the queue (its inputs are never
// scored), one whose deadline passes is answered 503, and released
// requests are all answered.
func TestServeBackPressureAndDeadline(t *testing.T) {
	f := newFixture(t, 4)
	hold, entered := make(chan struct{}), make(chan struct{}, 16)
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	cfg := f.config()
	cfg.MaxBatch = 2
	cfg.Queue = 5
	cfg.MaxWait = time.Millisecond
	cfg.Timeout = 3 * time.Second
	s, hs := startServer(t, cfg, func() { entered <- struct{}{}; <-hold })
	waiting := func() float64 { return gauge(t, s, "gaia_serve_queue_depth") }

	// One request of two inputs goes to the held batch; four fill the queue.
	type answer struct {
		status int
		body   []byte
	}
	answers := make(chan answer, 16)
	send := func(ctype string, body []byte) {
		status, b, _ := post(t, hs.URL, ctype, body)
		answers <- answer{status, b}
	}
	mpType, mpBody := multipartBody(t, f.names[:2], f.images[:2])
	go send(mpType, mpBody)
	<-entered
	for i := 0; i < 4; i++ {
		go send("image/png", f.images[i])
	}
	require.Eventually(t, func() bool { return waiting() == 4 }, 10*time.Second, time.Millisecond)

	// A client that gives up leaves the queue at once.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/score", bytes.NewReader(f.images[1]))
		req.Header.Set("Content-Type", "image/png")
		_, err := http.DefaultClient.Do(req)
		gone <- err
	}()
	require.Eventually(t, func() bool { return waiting() == 5 }, 10*time.Second, time.Millisecond)
	status, b, h := post(t, hs.URL, "image/png", f.images[0])
	assert.Equal(t, http.StatusServiceUnavailable, status, string(b))
	assert.Contains(t, string(b), "queue is full")
	assert.Equal(t, "1", h.Get("Retry-After"))
	cancel()
	require.Error(t, <-gone)
	require.Eventually(t, func() bool { return waiting() == 4 }, 10*time.Second, time.Millisecond)

	// The server's own deadline: every held request times out (503), and the
	// queue empties.
	got := map[int]int{}
	for i := 0; i < 5; i++ {
		a := <-answers
		got[a.status]++
		assert.Contains(t, string(a.body), "timed out")
	}
	assert.Equal(t, map[int]int{503: 5}, got)
	release()

	// Afterwards: only the two inputs that were in the held batch were
	// scored, and the server answers again.
	status, b, _ = post(t, hs.URL, "image/png", f.images[2])
	require.Equal(t, 200, status, string(b))
	assert.Equal(t, float64(0), waiting())
	_, sum := histogramSum(t, s, "gaia_serve_batch_size")
	assert.Equal(t, float64(3), sum)
	assert.Equal(t, float64(1), counter(t, s, "gaia_serve_requests_total", "499"))
}

// Close answers the requests in flight, then refuses new ones.
func TestServeGracefulClose(t *testing.T) {
	f := newFixture(t, 6)
	hold, entered := make(chan struct{}), make(chan struct{}, 16)
	cfg := f.config()
	cfg.MaxBatch = 2
	s, hs := startServer(t, cfg, func() { entered <- struct{}{}; <-hold })
	answers := make(chan int, 6)
	for i := 0; i < 6; i++ {
		go func(i int) {
			status, _, _ := post(t, hs.URL, "image/png", f.images[i])
			answers <- status
		}(i)
	}
	<-entered
	require.Eventually(t, func() bool { return gauge(t, s, "gaia_serve_queue_depth") == 4 }, 10*time.Second, time.Millisecond)
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	require.Eventually(t, func() bool { return !s.Ready() }, 5*time.Second, time.Millisecond)
	resp, err := http.Get(hs.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	status, b, _ := post(t, hs.URL, "image/png", f.images[0])
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, string(b), "shutting down")
	close(hold)
	for i := 0; i < 6; i++ {
		assert.Equal(t, 200, <-answers)
	}
	require.NoError(t, <-closed)
	require.NoError(t, s.Close()) // idempotent
}

func TestServeConfigErrors(t *testing.T) {
	f := newFixture(t, 2)
	_, err := New(Config{})
	assert.ErrorContains(t, err, "no model")
	cfg := f.config()
	cfg.Model = filepath.Join(f.dir, "missing.pt")
	_, err = New(cfg)
	assert.ErrorContains(t, err, "missing.pt", "the model is named, not the MODEL.json it would have")

	// A gate calibrated on another model is refused, naming both.
	g, err := gaia.LoadGate(f.gate)
	require.NoError(t, err)
	sha := g.ModelSHA256
	g.ModelSHA256 = strings.Repeat("ab", 32)
	other := filepath.Join(f.dir, "other-gate.json")
	require.NoError(t, outfile.WriteJSON(other, g))
	cfg = f.config()
	cfg.Gate = other
	_, err = New(cfg)
	var mm *gaia.MismatchError
	require.ErrorAs(t, err, &mm)
	assert.Equal(t, "model", mm.What)
	assert.ErrorContains(t, err, "model differs from the gate's: calibrated with")
	assert.ErrorContains(t, err, "sha256 abababababab")
	assert.ErrorContains(t, err, "other-gate.json")

	// A gate whose taps the model does not have, pinned as calibrate pins
	// them, or only listed.
	g.ModelSHA256 = sha
	g.Taps = []string{"layer9.bn"}
	g.Settings["taps-z"] = "layer9.bn"
	require.NoError(t, outfile.WriteJSON(other, g))
	_, err = New(cfg)
	assert.ErrorContains(t, err, `"layer9.bn" matches no normalization tap`)
	g.Settings["taps-z"] = "layer1" // a selection that no longer gives the taps calibrated with
	require.NoError(t, outfile.WriteJSON(other, g))
	_, err = New(cfg)
	require.ErrorAs(t, err, &mm)
	assert.Equal(t, "taps", mm.What)
	assert.ErrorContains(t, err, "calibrated with 1 taps (layer9.bn)")

	// The gate's detector runs with the gate's settings: other ones are a
	// mismatch, not silently replaced.
	g, err = gaia.LoadGate(f.gate)
	require.NoError(t, err)
	cfg = f.config()
	cfg.Settings = gaia.Settings{"taps-z": "layer1"}
	_, err = New(cfg)
	require.ErrorAs(t, err, &mm)
	assert.Equal(t, "settings", mm.What)
	assert.ErrorContains(t, err, "taps-z")
	cfg = f.config()
	cfg.Device = "cuda:all"
	cfg.Device = "cuda:all"
	_, err = New(cfg)
	assert.ErrorContains(t, err, "one model replica")

	cfg = f.config()
	cfg.Transform = "resize=abc"
	_, err = New(cfg)
	assert.ErrorContains(t, err, "resize")
	cfg.Transform = "flip"
	_, err = New(cfg)
	assert.ErrorContains(t, err, `unknown option "flip"`)
	cfg.Gate = filepath.Join(f.dir, "nope.json")
	cfg.Transform = ""
	_, err = New(cfg)
	assert.ErrorContains(t, err, "nope.json")
}

// A transform from the gate (the calibration data's resize) applies to the
// served images: a 56x56 image is scored as its 28x28 resize.
func TestServeTransform(t *testing.T) {
	f := newFixture(t, 1)
	g, err := gaia.LoadGate(f.gate)
	require.NoError(t, err)
	g.Transform = "resize=28x28"
	require.NoError(t, outfile.WriteJSON(f.gate, g))
	_, hs := startServer(t, f.config(), nil)
	big := pngBytes(t, 7, 56, 56)
	status, b, _ := post(t, hs.URL, "image/png", big)
	require.Equal(t, 200, status, string(b))
	r := decodeResponse(t, b)

	meta, _ := gaia.LoadMeta(f.model)
	tf, err := data.ParseTransform("resize=28x28", 1, 28, 28, meta.Mean, meta.Std)
	require.NoError(t, err)
	img, err := data.Decode(big)
	require.NoError(t, err)
	x := make([]float32, 28*28)
	require.NoError(t, tf.Apply(img, 0, x))
	m, err := torch.Load(f.model, testenv.Device())
	require.NoError(t, err)
	defer m.Close()
	sc, err := gaia.NewScorer(m, gaia.ScorerConfig{Detectors: f.dets, Std: meta.Std})
	require.NoError(t, err)
	bs, err := sc.Score(&torch.Tensor{Shape: []int{1, 1, 28, 28}, Data: x})
	require.NoError(t, err)
	for d, det := range f.dets {
		assert.InDelta(t, bs.Scores[d][0], float64(r.Results[0].Scores[det]), 1e-5*math.Max(1, math.Abs(bs.Scores[d][0])))
	}
}

func TestScoreJSON(t *testing.T) {
	for _, v := range []float64{1.5, -2, 0, math.Inf(1), math.Inf(-1)} {
		b, err := json.Marshal(Score(v))
		require.NoError(t, err)
		var back Score
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, v, float64(back))
	}
	b, _ := json.Marshal(Score(math.NaN()))
	assert.Equal(t, `"NaN"`, string(b))
}
