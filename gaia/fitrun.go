package gaia

import (
	"context"
	"fmt"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// FitRun is one fit over a dataset: gaia fit's and gaia bench's.
type FitRun struct {
	Model     *Model // loaded; the fit runs on its first replica
	Data      *Dataset
	KNNSample string
	Seed      int64
	Batch     int
	Workers   int
	SkipBad   bool
	// NeedLabels refuses a dataset without labels before the pass (for
	// mahalanobis).
	NeedLabels bool
	Progress   *Progress
}

// Run makes the fit: one pass, then the statistics, the meta filled in.
func (r *FitRun) Run(ctx context.Context) (*Fit, error) {
	src, tf := r.Data.Source, r.Data.Transform
	total := src.Len()
	if total == 0 {
		return nil, fmt.Errorf("fit: %s has no samples", src.Describe())
	}
	_, _, label, err := src.Load(0)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	labelled := label >= 0
	if !labelled && r.NeedLabels {
		return nil, fmt.Errorf("fit: mahalanobis needs labels, and %s gives none (a folder with a subfolder per class, or a list with labels; or leave mahalanobis out)", src.Describe())
	}
	ft, err := NewFitter(r.Model.Replicas[0], FitConfig{Total: total, KNNSample: r.KNNSample, Seed: r.Seed, Labelled: labelled})
	if err != nil {
		return nil, err
	}
	skipped := 0
	l := &data.Loader{Src: src, Transform: tf, BatchSize: r.Batch, Workers: r.Workers, SkipBad: r.SkipBad}
	err = l.Run(ctx, func(b *data.Batch) error {
		skipped += len(b.Skipped)
		r.Progress.Add(b.N + len(b.Skipped))
		if b.N == 0 {
			return nil
		}
		for i, lb := range b.Label {
			if (lb >= 0) != labelled {
				return fmt.Errorf("fit: %s has a label and the first sample not, or the other way round: labels must be all there or all missing", b.Source[i])
			}
		}
		var labels []int
		if labelled {
			labels = b.Label
		}
		return ft.Add(&torch.Tensor{Shape: []int{b.N, tf.C, tf.H, tf.W}, Data: b.X}, labels, b.Source)
	})
	if err != nil {
		r.Model.Replicas[0].Drop(ft.gram)
		return nil, err
	}
	fit, err := ft.Finish()
	if err != nil {
		return nil, err
	}
	fp, err := data.Fingerprint(r.Data.Spec, src)
	if err != nil {
		return nil, err
	}
	fit.Meta.Model, fit.Meta.ModelSHA256 = r.Model.Config.Path, r.Model.SHA256
	fit.Meta.Data, fit.Meta.DataSHA256, fit.Meta.Skipped = r.Data.Spec.Raw, fp, skipped
	return fit, nil
}
