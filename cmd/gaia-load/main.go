// Command gaia-load measures `gaia serve` on loopback: for each server
// configuration (max batch) it starts the server in this process on
// 127.0.0.1, sends a bounded number of image requests at each concurrency,
// and prints throughput and p50/p99 latency. It checks that every request is
// answered exactly once and that every answer equals `gaia score`'s scores
// for the same image.
//
//	gaia-load --model MODEL.pt --data cifar-bin:test_batch.bin --images 512 \
//	    --clients 1,16,64 --max-batch 1,32 --requests 1000 --max-time 30s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/gaia/serve"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/torch"
)

func main() {
	torch.TuneProcess()
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "gaia-load: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	model, spec, detectors, device, transform string
	images, requests, smallBatch              int
	clients, batches                          []int
	maxWait, maxTime                          time.Duration
	tol                                       float64
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gaia-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var mf cli.ModelFlags
	mf.Register(fs, cli.OneDevice, "model", "device")
	fs.StringVar(&o.spec, "data", "", "dataset `SPEC` whose first images become the requests (PNG-encoded); its transform options are the server's")
	fs.StringVar(&o.detectors, "detectors", "gaia-z,msp", "detectors the server scores")
	fs.IntVar(&o.images, "images", 256, "distinct images to send (round robin)")
	fs.IntVar(&o.requests, "requests", 1000, "requests per measurement, at most")
	fs.DurationVar(&o.maxTime, "max-time", 30*time.Second, "time per measurement, at most")
	fs.DurationVar(&o.maxWait, "max-wait", 5*time.Millisecond, "the server's --max-wait")
	fs.IntVar(&o.smallBatch, "small-batch", 4, "the server's --small-batch")
	fs.Float64Var(&o.tol, "tol", 1e-3, "relative tolerance against gaia score's scores")
	clients := fs.String("clients", "1,16,64", "concurrent clients, per measurement")
	batches := fs.String("max-batch", "1,32", "the server's --max-batch, per configuration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.model, o.device = mf.Model, mf.Device
	if o.model == "" || o.spec == "" {
		return errors.New("-model and -data are required")
	}
	var err error
	if o.clients, err = intList(*clients); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if o.batches, err = intList(*batches); err != nil {
		return fmt.Errorf("-max-batch: %w", err)
	}
	if o.requests <= 0 || o.images <= 0 {
		return errors.New("-requests and -images must be positive")
	}
	dets, err := gaia.ParseDetectors(o.detectors)
	if err != nil {
		return err
	}
	if o.transform, err = data.TransformOptions(o.spec); err != nil {
		return err
	}
	pngs, want, err := prepare(&o, dets, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "gaia-load: %s, %d images from %s, detectors %s, LibTorch %s, %d CPUs, %s\n\n",
		filepath.Base(o.model), len(pngs), o.spec, strings.Join(dets, ","), torch.Version(), runtime.NumCPU(),
		time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "| max batch | clients | requests | req/s | p50 ms | p99 ms | mean batch | answered once | max rel. diff |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|")
	for _, mb := range o.batches {
		if err := measureConfig(&o, dets, mb, pngs, want, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

// optionsSuffix is transform options as a data spec's tail.
func optionsSuffix(opts string) string {
	if opts == "" {
		return ""
	}
	return "," + opts
}

// prepare encodes the first images of the data spec as PNG and scores them
// the way `gaia score` does (the loader and gaia.ScoreDataset).
func prepare(o *options, dets []string, stderr io.Writer) ([][]byte, [][]float64, error) {
	sp, err := data.ParseSpec(o.spec)
	if err != nil {
		return nil, nil, err
	}
	src, err := data.Open(sp)
	if err != nil {
		return nil, nil, err
	}
	n := min(o.images, src.Len())
	if n == 0 {
		return nil, nil, fmt.Errorf("%s: no images", o.spec)
	}
	dir, err := os.MkdirTemp("", "gaia-load-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	pngs := make([][]byte, n)
	for i := 0; i < n; i++ {
		img, _, _, err := src.Load(i)
		if err != nil {
			return nil, nil, err
		}
		if pngs[i], err = encodePNG(img); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%06d.png", i)), pngs[i], 0o644); err != nil {
			return nil, nil, err
		}
	}
	model, err := gaia.Open(context.Background(), o.model, gaia.Options{Device: o.device, Detectors: dets, SkipWarmup: true})
	if err != nil {
		return nil, nil, err
	}
	defer model.Close()
	ds, err := model.Dataset("folder:" + dir + optionsSuffix(o.transform))
	if err != nil {
		return nil, nil, err
	}
	var rows []gaia.ScoreRow
	if _, err := model.ScoreDataset(context.Background(), ds, gaia.DatasetOptions{Batch: 64}, func(r []gaia.ScoreRow) error {
		rows = append(rows, r...)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	sf := &gaia.ScoreFile{Rows: rows}
	want := make([][]float64, n)
	for i, r := range sf.Rows {
		want[i] = r.Scores
	}
	fmt.Fprintf(stderr, "reference scores of %d images computed as gaia score does\n", n)
	return pngs, want, nil
}

// encodePNG writes an Image as a PNG: 8-bit images losslessly, float ones
// (noise) rounded to 8 bits; the reference scores are of these PNGs.
func encodePNG(img data.Image) ([]byte, error) {
	if !img.Is8Bit() {
		hw := img.H * img.W
		img.Pix8 = make([]uint8, img.C*hw)
		for c := 0; c < img.C; c++ {
			for i := 0; i < hw; i++ {
				img.Pix8[i*img.C+c] = uint8(math.Round(float64(img.Pix[c*hw+i]) * 255))
			}
		}
	}
	var im image.Image
	switch img.C {
	case 1:
		g := image.NewGray(image.Rect(0, 0, img.W, img.H))
		copy(g.Pix, img.Pix8)
		im = g
	case 3:
		c := image.NewNRGBA(image.Rect(0, 0, img.W, img.H))
		for i := 0; i < img.H*img.W; i++ {
			c.SetNRGBA(i%img.W, i/img.W, color.NRGBA{img.Pix8[3*i], img.Pix8[3*i+1], img.Pix8[3*i+2], 255})
		}
		im = c
	default:
		return nil, fmt.Errorf("image with %d channels", img.C)
	}
	var b bytes.Buffer
	err := png.Encode(&b, im)
	return b.Bytes(), err
}

func measureConfig(o *options, dets []string, maxBatch int, pngs [][]byte, want [][]float64, stdout, stderr io.Writer) error {
	s, err := serve.New(serve.Config{Model: o.model, Device: o.device, Detectors: dets, Transform: o.transform,
		MaxBatch: maxBatch, MaxWait: o.maxWait, SmallBatch: o.smallBatch, Queue: 4096, Timeout: 5 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // loopback only
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String()
	for !s.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	for _, c := range o.clients {
		before := batchStats(s)
		r := load(client, url, c, o.requests, o.maxTime, pngs, want, dets, o.tol)
		after := batchStats(s)
		if r.err != nil {
			return fmt.Errorf("max batch %d, %d clients: %w", maxBatch, c, r.err)
		}
		batches, inputs := after[0]-before[0], after[1]-before[1]
		once := "yes"
		if int(inputs) != r.sent || r.answered != r.sent {
			once = fmt.Sprintf("NO: %d sent, %d answered, %d scored", r.sent, r.answered, int(inputs))
		}
		fmt.Fprintf(stdout, "| %d | %d | %d | %.0f | %.1f | %.1f | %.1f | %s | %.1e |\n", maxBatch, c, r.sent,
			float64(r.sent)/r.elapsed.Seconds(), ms(r.p50), ms(r.p99), inputs/math.Max(1, batches), once, r.maxDiff)
		if once != "yes" {
			return fmt.Errorf("max batch %d, %d clients: %s", maxBatch, c, once)
		}
	}
	fmt.Fprintf(stderr, "max batch %d done\n", maxBatch)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// batchStats reads the server's batch-size histogram: batches and inputs.
func batchStats(s *serve.Server) [2]float64 {
	mfs, _ := s.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "gaia_serve_batch_size" {
			h := mf.GetMetric()[0].GetHistogram()
			return [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
		}
	}
	return [2]float64{}
}

type result struct {
	sent, answered int
	elapsed        time.Duration
	p50, p99       time.Duration
	maxDiff        float64
	err            error
}

// load sends up to n requests from c clients within maxTime; request k is
// image k mod len(pngs).
func load(client *http.Client, url string, c, n int, maxTime time.Duration, pngs [][]byte, want [][]float64, dets []string, tol float64) result {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var res result
	deadline := time.Now().Add(maxTime)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= n || time.Now().After(deadline) {
					return
				}
				i := k % len(pngs)
				t0 := time.Now()
				diff, err := one(client, url, pngs[i], want[i], dets)
				d := time.Since(t0)
				mu.Lock()
				res.sent++
				if err == nil {
					res.answered++
					lat = append(lat, d)
					res.maxDiff = math.Max(res.maxDiff, diff)
					if diff > tol && res.err == nil {
						res.err = fmt.Errorf("image %d: scores differ from gaia score's by %.2g relative", i, diff)
					}
				} else if res.err == nil {
					res.err = fmt.Errorf("image %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	if len(lat) > 0 {
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, int(math.Ceil(0.99*float64(len(lat))))-1)]
	}
	return res
}

// one posts an image and returns its largest relative score difference.
func one(client *http.Client, url string, png []byte, want []float64, dets []string) (float64, error) {
	resp, err := client.Post(url+"/v1/score", "image/png", bytes.NewReader(png))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var r serve.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if len(r.Results) != 1 {
		return 0, fmt.Errorf("%d results for one image", len(r.Results))
	}
	var worst float64
	for d, det := range dets {
		got := float64(r.Results[0].Scores[det])
		worst = math.Max(worst, math.Abs(got-want[d])/math.Max(1e-6, math.Abs(want[d])))
	}
	return worst, nil
}
