// Command gatekeeper is a web service of one's own that refuses
// out-of-distribution uploads before its handler runs: net/http middleware
// around gaia.OpenGate's Check. An upload the gate accepts reaches the
// handler (here it answers with the model's class); one it flags gets 422
// with the score and the threshold, and the handler never sees it.
//
//	gatekeeper -model mnist_resnet.pt -gate gate.json -addr 127.0.0.1:8090
//	curl --data-binary @digit.png -H 'Content-Type: image/png' localhost:8090/classify
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gaia-ood/gaia/gaia"
)

// verdictKey is where the middleware leaves the gate's verdict for the
// handler.
type verdictKey struct{}

// RefuseOOD reads an image upload (at most maxBytes), checks it with the
// gate, and calls next only for an image the gate accepts, with the body
// put back and the verdict in the request's context.
func RefuseOOD(g *gaia.Gated, maxBytes int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
			if err != nil {
				http.Error(w, "reading the upload: "+err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			vs, err := g.Check(ctx, [][]byte{body})
			var bad *gaia.ImageError
			switch {
			case errors.As(err, &bad):
				http.Error(w, "not an image this service reads: "+bad.Err.Error(), http.StatusBadRequest)
				return
			case errors.Is(err, gaia.ErrQueueFull):
				w.Header().Set("Retry-After", "1")
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			case err != nil:
				http.Error(w, "gate: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			v := vs[0]
			if !v.Accept {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnprocessableEntity)
				json.NewEncoder(w).Encode(map[string]any{"error": "out of distribution", "score": fmt.Sprint(v.Score), "threshold": v.Threshold})
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), verdictKey{}, v)))
		})
	}
}

// classify is the service's own handler: it runs only for accepted uploads.
func classify(w http.ResponseWriter, r *http.Request) {
	v := r.Context().Value(verdictKey{}).(gaia.Verdict)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"class": v.Pred, "label": v.Class, "probability": v.Prob})
}

func main() {
	model := flag.String("model", "", "the TorchScript model (MODEL.json beside it)")
	gatePath := flag.String("gate", "", "a gate file from gaia calibrate")
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	if *model == "" || *gatePath == "" {
		log.Fatal("gatekeeper: -model and -gate are required")
	}
	gate, err := gaia.LoadGate(*gatePath)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gaia.OpenGate(ctx, *model, gate, gaia.Options{})
	if err != nil {
		log.Fatal(err) // a *gaia.MismatchError when the gate is not this model's
	}
	defer g.Close()
	mux := http.NewServeMux()
	mux.Handle("POST /classify", RefuseOOD(g, 8<<20)(http.HandlerFunc(classify)))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("gatekeeper: %s, gate %s (%s <= %g), on http://%s/classify", *model, *gatePath, gate.Detector, gate.Threshold, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
