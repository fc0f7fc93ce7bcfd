// Command mount is a server of one's own that mounts gaia serve's handler
// (package serve: POST /v1/score, /healthz, /readyz, /metrics) under /ood/
// of its own mux, beside its own routes, with the timeouts a public listener
// needs (serve.Server.HTTPServer's).
//
//	mount -model mnist_resnet.pt -gate gate.json -addr 127.0.0.1:8091
//	curl --data-binary @digit.png -H 'Content-Type: image/png' localhost:8091/ood/v1/score
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gaia-ood/gaia/gaia/serve"
)

func main() {
	model := flag.String("model", "", "the TorchScript model (MODEL.json beside it)")
	gate := flag.String("gate", "", "a gate file from gaia calibrate (optional)")
	addr := flag.String("addr", "127.0.0.1:8091", "listen address")
	flag.Parse()
	if *model == "" {
		log.Fatal("mount: -model is required")
	}
	s, err := serve.New(serve.Config{Model: *model, Gate: *gate})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	mux := http.NewServeMux()
	mux.Handle("/ood/", http.StripPrefix("/ood", s))
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello; the OOD gate scores with %v under /ood/v1/score\n", s.Detectors())
	})
	hs := s.HTTPServer() // its timeouts, our handler
	hs.Addr, hs.Handler = *addr, mux

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	log.Printf("mount: %s on http://%s (/hello, /ood/v1/score)", *model, *addr)
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
