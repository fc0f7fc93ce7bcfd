package gaia

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// Dataset is a data spec opened for a model's input: the source and the
// transform that makes its samples the model's inputs.
type Dataset struct {
	Spec      *data.Spec
	Source    data.Source
	Transform *data.Transform
}

// NewDataset opens a data spec for a model of metadata meta (ReadMeta); a
// spec that names no transform of its own takes the model's (MODEL.json's
// transform).
func NewDataset(spec string, meta *Meta) (*Dataset, error) {
	sp, err := data.ParseSpec(data.WithTransform(spec, meta.Transform))
	if err != nil {
		return nil, err
	}
	if len(meta.InputSize) != 3 {
		return nil, fmt.Errorf("data %s: the model's input size is unknown", spec)
	}
	src, err := data.Open(sp)
	if err != nil {
		return nil, err
	}
	tf, err := data.NewTransform(sp, meta.InputSize[0], meta.InputSize[1], meta.InputSize[2], meta.Mean, meta.Std)
	if err != nil {
		return nil, err
	}
	return &Dataset{Spec: sp, Source: src, Transform: tf}, nil
}

// Dataset opens a data spec for the model (NewDataset with its metadata).
func (m *Model) Dataset(spec string) (*Dataset, error) { return NewDataset(spec, &m.meta) }

// DatasetOptions say how ScoreDataset and Fit read a dataset.
type DatasetOptions struct {
	Batch   int  // samples per batch (default 128)
	Workers int  // decoding goroutines (default: the CPUs)
	SkipBad bool // skip unreadable samples, counted in the Summary, instead of stopping
	// Start and End select samples [Start, End) (End 0: to the end): a shard.
	Start, End int
	// Progress, if set, is called with the samples done (scored or
	// skipped) after each batch.
	Progress func(n int)
	// Limits bound each image file decoded (zero fields: the Options').
	Limits data.Limits
}

func (o DatasetOptions) loader(ds *Dataset, def data.Limits) (*data.Loader, error) {
	if o.Batch < 0 || o.Workers < 0 || o.Start < 0 || o.End < 0 {
		return nil, fmt.Errorf("%w: DatasetOptions has a negative Batch, Workers, Start or End", ErrInvalidOptions)
	}
	if o.Batch == 0 {
		o.Batch = 128
	}
	lim := o.Limits
	if lim == (data.Limits{}) {
		lim = def
	}
	if err := ds.Transform.Feasible(lim.Bytes); err != nil {
		return nil, fmt.Errorf("data %s: %w", ds.Spec.Raw, err)
	}
	return &data.Loader{Src: ds.Source, Transform: ds.Transform, BatchSize: o.Batch, Workers: o.Workers, SkipBad: o.SkipBad,
		Start: o.Start, End: o.End, Limits: lim}, nil
}

// Summary says what a scoring run did.
type Summary struct {
	Rows    int
	Skipped []data.SkippedSample
	Elapsed time.Duration
}

// ScoreDataset scores a dataset in batches of DatasetOptions.Batch, on every
// replica at once, and hands the rows to sink in input order, as one device
// would; it stops at the first error (of reading, scoring, or returned by
// sink) or when ctx is done. It does not go through the queue of
// ScoreImages and ScoreTensor.
func (m *Model) ScoreDataset(ctx context.Context, ds *Dataset, opt DatasetOptions, sink func([]ScoreRow) error) (Summary, error) {
	if err := m.enter(); err != nil {
		return Summary{}, err
	}
	defer m.leave()
	l, err := opt.loader(ds, m.opt.Limits)
	if err != nil {
		return Summary{}, err
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(int) {}
	}
	return scoreLoader(ctx, m.scorers, l, sink, progress)
}

// scoreLoader scores every batch the loader yields on whichever scorer is
// free, handing the rows to sink in input order.
func scoreLoader(ctx context.Context, scorers []*Scorer, l *data.Loader, sink func([]ScoreRow) error, progress func(int)) (Summary, error) {
	start := time.Now()
	var sum Summary
	tf := l.Transform
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type work struct {
		seq int
		b   *data.Batch
	}
	type done struct {
		seq  int
		b    *data.Batch
		rows []ScoreRow
		err  error
	}
	todo := make(chan work)
	results := make(chan done, len(scorers))
	var wg sync.WaitGroup
	for _, s := range scorers {
		wg.Add(1)
		go func(s *Scorer) {
			defer wg.Done()
			for w := range todo {
				d := done{seq: w.seq, b: w.b}
				if w.b.N > 0 {
					x := &torch.Tensor{Shape: []int{w.b.N, tf.C, tf.H, tf.W}, Data: w.b.X}
					bs, err := s.Score(x)
					if err != nil {
						d.err = err
					} else {
						d.rows = rowsOf(w.b, bs)
					}
				}
				// The writer needs the rows, not the inputs: a batch waiting
				// for an earlier one to be written holds only its rows.
				w.b.X, w.b.X8 = nil, nil
				results <- d
			}
		}(s)
	}

	// The writer: rows in sequence order, whatever order replicas finish in.
	var werr error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		pending := map[int]done{}
		next := 0
		for d := range results {
			pending[d.seq] = d
			for {
				d, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if werr != nil {
					continue
				}
				if d.err != nil {
					werr = d.err
					cancel()
					continue
				}
				sum.Skipped = append(sum.Skipped, d.b.Skipped...)
				if len(d.rows) > 0 {
					if err := sink(d.rows); err != nil {
						werr = err
						cancel()
						continue
					}
					sum.Rows += len(d.rows)
				}
				progress(d.b.N + len(d.b.Skipped))
			}
		}
	}()

	seq := 0
	err := l.Run(ctx, func(b *data.Batch) error {
		select {
		case todo <- work{seq, b}:
			seq++
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(todo)
	wg.Wait()
	close(results)
	<-writerDone
	sum.Elapsed = time.Since(start)
	if werr != nil {
		return sum, werr
	}
	return sum, err
}

func rowsOf(b *data.Batch, bs *BatchScores) []ScoreRow {
	rows := make([]ScoreRow, b.N)
	for i := range rows {
		rows[i] = ScoreRow{Index: b.Index[i], Source: b.Source[i], Label: b.Label[i], Pred: bs.Pred[i], Scores: bs.Sample(i)}
	}
	return rows
}
