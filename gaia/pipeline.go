package gaia

import (
	"context"
	"sync"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// Summary says what a scoring run did.
type Summary struct {
	Rows    int
	Skipped []data.SkippedSample
	Elapsed time.Duration
}

// ScoreDataset scores every batch the loader yields and appends the rows to
// sw, in input order. It reports progress on p (nil: silent) and stops at the
// first error or when ctx is done; the caller commits or aborts sw.
func ScoreDataset(ctx context.Context, s *Scorer, l *data.Loader, sw *ScoreWriter, p *Progress) (Summary, error) {
	return ScoreDatasetOn(ctx, []*Scorer{s}, l, sw, p)
}

// ScoreDatasetOn is ScoreDataset with one scorer per device (model
// replicas): batches from the one loader go to whichever replica is free, and
// rows are written in input order, as one device would write them.
func ScoreDatasetOn(ctx context.Context, scorers []*Scorer, l *data.Loader, sw *ScoreWriter, p *Progress) (Summary, error) {
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
					if err := sw.Append(d.rows); err != nil {
						werr = err
						cancel()
						continue
					}
					sum.Rows += len(d.rows)
				}
				p.Add(d.b.N + len(d.b.Skipped))
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
