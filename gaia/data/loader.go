package data

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// Batch is a run of consecutive samples, decoded and transformed, in input
// order. Samples skipped as bad are absent from it and listed in Skipped.
type Batch struct {
	X       []float32 // N x C x H x W (nil with Loader.Raw)
	X8      []uint8   // N x C x H x W bytes before normalization (Loader.Raw)
	N       int
	Index   []int
	Source  []string
	Label   []int
	Skipped []SkippedSample
}

// SkippedSample is a sample that could not be read, with why.
type SkippedSample struct {
	Index  int
	Source string
	Err    error
}

// SampleError is a sample that could not be read, stopping a Loader that
// does not skip them (Loader.SkipBad skips and counts them instead).
type SampleError struct {
	Index int
	Err   error
}

func (e *SampleError) Error() string {
	return fmt.Sprintf("sample %d: %v", e.Index, e.Err)
}

func (e *SampleError) Unwrap() error { return e.Err }

// Loader streams a Source in batches: each batch is decoded by Workers
// goroutines while the previous one is being scored. Whatever the dataset's
// size, at most two batches of inputs are alive in the loader (one being
// decoded, one decoded and waiting in fn's hands); a pipeline that scores
// on R model replicas (gaia.ScoreDatasetOn) adds the R being scored: R + 2
// batches in all (BiT at 480 x 480, batch 128: 354 MB each).
type Loader struct {
	Src       Source
	Transform *Transform
	BatchSize int
	Workers   int  // default: the number of CPUs
	SkipBad   bool // skip unreadable samples (else the first one stops the run)
	// Raw gives each batch's pixels before normalization (Batch.X8), for
	// 8-bit sources: what the transforms made of the bytes.
	Raw   bool
	Start int // first sample (for shards and resumption)
	End   int // one past the last sample (0: Src.Len())
	// Limits bound each image file decoded (zero fields: DefaultLimits).
	Limits Limits
}

type loaded struct {
	b   *Batch
	err error
}

// Run calls fn for every batch in order, stopping at the first error (of
// reading, or returned by fn) or when ctx is done.
func (l *Loader) Run(ctx context.Context, fn func(*Batch) error) error {
	if l.BatchSize <= 0 {
		return fmt.Errorf("loader: batch size must be positive")
	}
	end := l.End
	if end == 0 || end > l.Src.Len() {
		end = l.Src.Len()
	}
	if l.Start >= end {
		return fmt.Errorf("loader: %s: no samples in [%d, %d)", l.Src.Describe(), l.Start, end)
	}
	workers := l.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan loaded) // unbuffered: the decoder works on the next batch while fn holds this one
	go func() {
		defer close(ch)
		for lo := l.Start; lo < end; lo += l.BatchSize {
			hi := min(lo+l.BatchSize, end)
			b, err := l.load(ctx, lo, hi, workers)
			select {
			case ch <- loaded{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for item := range ch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if item.err != nil {
			return item.err
		}
		if err := fn(item.b); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (l *Loader) load(ctx context.Context, lo, hi, workers int) (*Batch, error) {
	n := hi - lo
	size := l.Transform.C * l.Transform.H * l.Transform.W
	var x []float32
	var x8 []uint8
	if l.Raw {
		x8 = make([]uint8, n*size)
	} else {
		x = make([]float32, n*size)
	}
	srcs := make([]string, n)
	labels := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	lim := l.Limits.orDefault()
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				img, src, label, err := loadWith(ctx, l.Src, lo+i, l.Transform, lim)
				if err == nil {
					err = l.Transform.Check(img, lim.Bytes)
				}
				if err == nil {
					if l.Raw {
						err = l.raw(img, lo+i, x8[i*size:(i+1)*size])
					} else {
						err = l.Transform.Apply(img, lo+i, x[i*size:(i+1)*size])
					}
					if err != nil {
						err = fmt.Errorf("%s: %w", src, err)
					}
				}
				srcs[i], labels[i], errs[i] = src, label, err
			}
		}()
	}
	wg.Wait()
	b := &Batch{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			if !l.SkipBad {
				return nil, &SampleError{Index: lo + i, Err: errs[i]}
			}
			b.Skipped = append(b.Skipped, SkippedSample{Index: lo + i, Source: srcs[i], Err: errs[i]})
			continue
		}
		b.Index = append(b.Index, lo+i)
		b.Source = append(b.Source, srcs[i])
		b.Label = append(b.Label, labels[i])
	}
	b.N = len(b.Index)
	if b.N == n {
		b.X, b.X8 = x, x8
		return b, nil
	}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			continue
		}
		if l.Raw {
			b.X8 = append(b.X8, x8[i*size:(i+1)*size]...)
		} else {
			b.X = append(b.X, x[i*size:(i+1)*size]...)
		}
	}
	return b, nil
}

// raw is Transform.Pixels into C x H x W bytes.
func (l *Loader) raw(img Image, index int, dst []uint8) error {
	px, err := l.Transform.Pixels(img, index)
	if err != nil {
		return err
	}
	if !px.Is8Bit() {
		return fmt.Errorf("raw pixels of a source that is not 8-bit")
	}
	hw := px.H * px.W
	for c := 0; c < px.C; c++ {
		for i := 0; i < hw; i++ {
			dst[c*hw+i] = px.Pix8[i*px.C+c]
		}
	}
	return nil
}

// transformLoader is a Source of encoded image files, which it decodes for
// a transform (JPEG draft decoding) within limits.
type transformLoader interface {
	LoadWith(ctx context.Context, i int, t *Transform, lim Limits) (Image, string, int, error)
}

func loadWith(ctx context.Context, src Source, i int, t *Transform, lim Limits) (Image, string, int, error) {
	if tl, ok := src.(transformLoader); ok {
		return tl.LoadWith(ctx, i, t, lim)
	}
	return src.Load(i)
}
