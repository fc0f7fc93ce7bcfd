// Package report draws the plots of a benchmark report with gonum.org/v1/plot:
// ROC curves per OOD set with every detector, and ID-vs-OOD score histograms
// per detector. Save picks PNG, SVG or PDF from the file name.
package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// ROCPoints turns an ROC curve (as metrics.ROCCurve gives it) into at most
// 2,000 plot points.
func ROCPoints(fpr, tpr []float64) plotter.XYs {
	pts := make(plotter.XYs, len(fpr))
	for i := range fpr {
		pts[i] = plotter.XY{X: fpr[i], Y: tpr[i]}
	}
	return thin(pts, 2000)
}

// thin keeps at most n points of a monotone curve, always the last.
func thin(pts plotter.XYs, n int) plotter.XYs {
	if len(pts) <= n {
		return pts
	}
	out := make(plotter.XYs, 0, n+1)
	step := float64(len(pts)-1) / float64(n-1)
	for i := 0; i < n; i++ {
		out = append(out, pts[int(math.Round(float64(i)*step))])
	}
	return out
}

// palette has ten distinct colors (Tableau 10).
var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
	color.RGBA{227, 119, 194, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{188, 189, 34, 255},
	color.RGBA{23, 190, 207, 255},
}

func colorOf(i int) color.Color { return palette[i%len(palette)] }

// Curve is one named ROC curve.
type Curve struct {
	Name   string
	Points plotter.XYs
}

// SaveROC draws the ROC curves of one OOD set into path (.png, .svg, .pdf).
func SaveROC(path, title string, curves []Curve) error {
	p, err := rocPlot(title, curves)
	if err != nil {
		return err
	}
	return p.Save(rocW, rocH, path)
}

// ROCPNG is SaveROC's plot as PNG bytes.
func ROCPNG(title string, curves []Curve) ([]byte, error) {
	p, err := rocPlot(title, curves)
	if err != nil {
		return nil, err
	}
	return pngOf(p, rocW, rocH)
}

const (
	rocW, rocH   = 6 * vg.Inch, 5 * vg.Inch
	histW, histH = 6 * vg.Inch, 4 * vg.Inch
)

func pngOf(p *plot.Plot, w, h vg.Length) ([]byte, error) {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func rocPlot(title string, curves []Curve) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "false positive rate (ID flagged)"
	p.Y.Label.Text = "true positive rate (OOD caught)"
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.Add(plotter.NewGrid())
	diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return nil, err
	}
	diag.Color = color.Gray{Y: 180}
	diag.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(diag)
	for i, c := range curves {
		l, err := plotter.NewLine(c.Points)
		if err != nil {
			return nil, fmt.Errorf("roc %s: %w", c.Name, err)
		}
		l.Color = colorOf(i)
		l.Dashes = plotutil.Dashes(i / len(palette))
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(c.Name, l)
	}
	p.Legend.Left = false
	p.Legend.Top = false
	p.Legend.XOffs = -vg.Points(5)
	p.Legend.YOffs = vg.Points(5)
	return p, nil
}

// Series is one named set of scores.
type Series struct {
	Name   string
	Scores []float64
}

// SaveHistogram draws the score distributions of several sets, as densities
// over shared bins clipped to the 0.5th-99.5th percentiles of all scores.
func SaveHistogram(path, title string, series []Series) error {
	p, err := histPlot(title, series)
	if err != nil {
		return err
	}
	return p.Save(histW, histH, path)
}

// HistogramPNG is SaveHistogram's plot as PNG bytes.
func HistogramPNG(title string, series []Series) ([]byte, error) {
	p, err := histPlot(title, series)
	if err != nil {
		return nil, err
	}
	return pngOf(p, histW, histH)
}

func histPlot(title string, series []Series) (*plot.Plot, error) {
	var all []float64
	for _, s := range series {
		for _, v := range s.Scores {
			if !math.IsInf(v, 0) && !math.IsNaN(v) {
				all = append(all, v)
			}
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("histogram %s: no finite scores", title)
	}
	sort.Float64s(all)
	lo, hi := all[len(all)*5/1000], all[min(len(all)-1, len(all)*995/1000)]
	if hi <= lo {
		hi = lo + 1
	}
	const bins = 60
	width := (hi - lo) / bins
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "OOD score (higher = more out-of-distribution)"
	p.Y.Label.Text = "density"
	for i, s := range series {
		counts := make([]float64, bins)
		n := 0
		for _, v := range s.Scores {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			b := int((v - lo) / width)
			b = max(0, min(bins-1, b))
			counts[b]++
			n++
		}
		pts := make(plotter.XYs, 0, 2*bins)
		for b, c := range counts {
			d := 0.0
			if n > 0 {
				d = c / (float64(n) * width)
			}
			x0 := lo + float64(b)*width
			pts = append(pts, plotter.XY{X: x0, Y: d}, plotter.XY{X: x0 + width, Y: d})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("histogram %s: %w", s.Name, err)
		}
		l.Color = colorOf(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	p.Legend.Top = true
	return p, nil
}
