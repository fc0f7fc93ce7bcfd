//go:build cgo && !gaia_nolibtorch

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/serve"
	"github.com/gaia-ood/gaia/internal/testenv"
)

// The user's path: gaia score on ID images with a resize, gaia calibrate,
// gaia serve with the gate (which carries the resize), a request per image
// answered with gaia score's numbers, and SIGTERM ending the server cleanly.
func TestScoreCalibrateServe(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	tmp := t.TempDir()
	imgs := filepath.Join(tmp, "id")
	require.NoError(t, os.Mkdir(imgs, 0o755))
	var files [][]byte
	for i := 0; i < 12; i++ {
		im := image.NewGray(image.Rect(0, 0, 40, 40))
		for y := 8; y < 32; y++ {
			im.SetGray(10+i+y/4, y, color.Gray{255})
			im.SetGray(11+i+y/4, y, color.Gray{uint8(20 * i)})
		}
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, im))
		files = append(files, b.Bytes())
		require.NoError(t, os.WriteFile(filepath.Join(imgs, fmt.Sprintf("%02d.png", i)), b.Bytes(), 0o644))
	}
	id := filepath.Join(tmp, "id.csv")
	_, stderr, err := runCmd("score", "--quiet", "--model", model, "--data", "folder:"+imgs+",resize=28x28",
		"--detectors", "gaia-a,msp", "--device", testenv.Device(), "--out", id)
	require.NoError(t, err, stderr)
	gatePath := filepath.Join(tmp, "gate.json")
	_, _, err = runCmd("calibrate", "--id", id, "--detector", "gaia-a", "--tpr", "0.75", "--out", gatePath)
	require.NoError(t, err)
	g, err := gaia.LoadGate(gatePath)
	require.NoError(t, err)
	assert.Equal(t, "resize=28x28", g.Transform)
	want, err := gaia.ReadScoreFile(id)
	require.NoError(t, err)

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run([]string{"serve", "--model", model, "--gate", gatePath, "--detectors", "msp",
			"--device", testenv.Device(), "--addr", "127.0.0.1:0", "--max-batch", "4"}, pw, &logs)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, logs.String())
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 60*time.Second, 20*time.Millisecond)

	ood := 0
	for i, b := range files {
		resp, err := http.Post(url+"/v1/score", "image/png", bytes.NewReader(b))
		require.NoError(t, err)
		var r serve.Response
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, []string{"gaia-a", "msp"}, r.Detectors)
		res := r.Results[0]
		row := want.Rows[i]
		assert.Equal(t, row.Pred, res.Class)
		for d, det := range want.Detectors {
			w := row.Scores[d]
			assert.InDelta(t, w, float64(res.Scores[det]), 1e-4*math.Max(1, math.Abs(w)), "%d %s", i, det)
		}
		if res.Gate.OOD {
			ood++
		}
		assert.Equal(t, float64(res.Gate.Score) > g.Threshold, res.Gate.OOD, "%d: the decision is the served score against the threshold", i)
	}
	// The gate accepts 75% of these 12 images' score-file scores; the image
	// at the threshold may score a hair above it in the server's batch of 4.
	col, err := want.Column("gaia-a")
	require.NoError(t, err)
	above, near := 0, 0
	for _, v := range col {
		if v > g.Threshold {
			above++
		} else if math.Abs(v-g.Threshold) <= 1e-4*math.Abs(g.Threshold) {
			near++
		}
	}
	assert.Equal(t, 3, above)
	assert.GreaterOrEqual(t, ood, above)
	assert.LessOrEqual(t, ood, above+near)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	assert.Contains(t, logs.String(), "shutting down")
	assert.Contains(t, logs.String(), "server closed")
}

// Negative sizes and a body budget below the largest body are refused at
// start, naming the flag (before, they were replaced by defaults, or the
// server answered every request 503).
func TestServeRefusesBadBounds(t *testing.T) {
	model := filepath.Join(testenv.Root(), "models", "mnist_resnet.pt")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--max-batch", "-1"}, "-max-batch must not be negative"},
		{[]string{"--queue", "-5"}, "-queue must not be negative"},
		{[]string{"--threads", "-2"}, "-threads must not be negative"},
		{[]string{"--max-wait", "-1ms"}, "-max-wait must not be negative"},
		{[]string{"--max-scans", "-1"}, "-max-scans must not be negative"},
		{[]string{"--max-bytes", "1000000", "--body-memory", "1000"}, "-body-memory 1000 is below -max-bytes 1000000"},
	} {
		_, _, err := runCmd(append([]string{"serve", "--model", model, "--addr", "127.0.0.1:0"}, c.args...)...)
		var ue usageError
		require.ErrorAs(t, err, &ue, "%v", c.args)
		assert.ErrorContains(t, err, c.msg)
	}
}
