package serve

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, in a registry of its own so
// that several servers can live in one process (tests, embedders).
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      prometheus.Histogram
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	queueDepth   prometheus.Gauge
	inputs       *prometheus.CounterVec
	slowBodies   prometheus.Counter
}

func newMetrics(maxBatch int) *metrics {
	var sizes []float64
	for b := 1; b < maxBatch; b *= 2 {
		sizes = append(sizes, float64(b))
	}
	sizes = append(sizes, float64(maxBatch))
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gaia_serve_requests_total", Help: "Score requests answered, by HTTP status (499: the client went away)."},
			[]string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gaia_serve_request_duration_seconds", Help: "Time from a score request's arrival to its answer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gaia_serve_batch_size", Help: "Inputs per scored batch.", Buckets: sizes}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gaia_serve_batch_duration_seconds", Help: "Time to score one batch on the model's device.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gaia_serve_queue_depth", Help: "Inputs waiting for a batch."}),
		inputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gaia_serve_inputs_total", Help: "Inputs scored, by the gate's decision (none without a gate)."},
			[]string{"decision"}),
		slowBodies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gaia_serve_slow_bodies_total", Help: "Requests cut off because their body did not arrive within the read timeout."}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.batchSize, m.batchSeconds, m.queueDepth, m.inputs, m.slowBodies,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(status int, start time.Time) {
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	m.latency.Observe(time.Since(start).Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
