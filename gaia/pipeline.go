//go:build cgo

package gaia

import (
	"context"
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
	start := time.Now()
	var sum Summary
	tf := l.Transform
	err := l.Run(ctx, func(b *data.Batch) error {
		sum.Skipped = append(sum.Skipped, b.Skipped...)
		if b.N > 0 {
			x := &torch.Tensor{Shape: []int{b.N, tf.C, tf.H, tf.W}, Data: b.X}
			bs, err := s.Score(x)
			if err != nil {
				return err
			}
			rows := make([]ScoreRow, b.N)
			for i := range rows {
				rows[i] = ScoreRow{Index: b.Index[i], Source: b.Source[i], Label: b.Label[i], Pred: bs.Pred[i],
					Scores: make([]float64, len(bs.Scores))}
				for d := range bs.Scores {
					rows[i].Scores[d] = bs.Scores[d][i]
				}
			}
			if err := sw.Append(rows); err != nil {
				return err
			}
			sum.Rows += b.N
		}
		p.Add(b.N + len(b.Skipped))
		return nil
	})
	sum.Elapsed = time.Since(start)
	return sum, err
}
