package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"math"
	"runtime"
	"slices"
)

// WriteHTML writes the page as one self-contained HTML file: CSS inline,
// plots and thumbnails embedded as data: URLs, no script, nothing fetched.
func WriteHTML(w io.Writer, p *Page) error {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, view(p)); err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// HTML is the page as bytes.
func HTML(p *Page) ([]byte, error) {
	var b bytes.Buffer
	if err := WriteHTML(&b, p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type cell struct {
	Text string
	Best bool
}

type tableRow struct {
	Detector, Anchor string
	Cells            []cell
}

type figureView struct {
	Title, File string
	URL         template.URL
}

type thumbView struct {
	Thumb
	URL                       template.URL
	DisplayW, DisplayH, Width int
	Exact                     bool
	ScoreText, SourceShort    string
	Tip                       string
}

type galleryView struct {
	Title, Note string
	Items       []thumbView
}

type detectorView struct {
	Detector, Anchor, Threshold, Summary string
	Galleries                            []galleryView
}

type pageView struct {
	*Page
	Sets      []string
	Rows      []tableRow
	ROCs      []figureView
	Hists     []figureView
	Dets      []detectorView
	Accuracy  string
	FPRNote   string
	BestNote  string
	Generator string
}

func anchor(det string) string { return "g-" + FileName(det) }

func figures(fs []Figure) []figureView {
	var out []figureView
	for _, f := range fs {
		out = append(out, figureView{Title: f.Title, File: f.File,
			URL: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(f.PNG))})
	}
	return out
}

// view lays the page out: the metrics as printed (in %, 2 decimals), the
// best value of each column marked (every tie), thumbnails at a whole
// multiple of their pixels.
func view(p *Page) *pageView {
	v := &pageView{Page: p, ROCs: figures(p.ROC), Hists: figures(p.Hist), Generator: runtime.Version()}
	t := p.Table
	v.Sets = append(append([]string(nil), t.SetNames...), "mean")
	for _, g := range t.Groups {
		v.Sets = append(v.Sets, g.Name)
	}
	ncol := 2 * len(v.Sets)
	vals := make([][]float64, len(t.Rows))
	texts := make([][]string, len(t.Rows))
	text := func(x float64, ci *[2]float64) string {
		if ci == nil {
			return fmt.Sprintf("%.2f", x)
		}
		return fmt.Sprintf("%.2f ±%.2f", x, 50*(ci[1]-ci[0]))
	}
	for i, r := range t.Rows {
		for _, s := range v.Sets {
			m := r.Mean
			if sm, ok := r.Sets[s]; ok {
				m = sm
			} else if gm, ok := r.Groups[s]; ok {
				m = gm
			}
			f, a := math.Round(10000*m.FPR95)/100, math.Round(10000*m.AUROC)/100
			vals[i] = append(vals[i], f, a)
			texts[i] = append(texts[i], text(f, m.FPR95CI), text(a, m.AUROCCI))
		}
	}
	best := make([]float64, ncol)
	for c := 0; c < ncol; c++ {
		best[c] = math.NaN()
		for i := range vals {
			x := vals[i][c]
			if math.IsNaN(best[c]) || (c%2 == 0 && x < best[c]) || (c%2 == 1 && x > best[c]) {
				best[c] = x
			}
		}
	}
	// With intervals: every detector not significantly worse than the
	// column's best (the paired test), else the best alone (every tie).
	marked := func(i, c int) bool {
		if t.NotWorse != nil {
			metric := "fpr95"
			if c%2 == 1 {
				metric = "auroc"
			}
			return slices.Contains(t.NotWorse[v.Sets[c/2]][metric], t.Rows[i].Detector)
		}
		return vals[i][c] == best[c]
	}
	for i, r := range t.Rows {
		row := tableRow{Detector: r.Detector, Anchor: anchor(r.Detector)}
		for c := range vals[i] {
			row.Cells = append(row.Cells, cell{Text: texts[i][c], Best: len(t.Rows) > 1 && marked(i, c)})
		}
		v.Rows = append(v.Rows, row)
	}
	v.BestNote = "Best per column in bold (ties all marked)."
	if t.NotWorse != nil {
		v.BestNote = fmt.Sprintf("In bold, per column: the best and every detector not significantly worse than it at %.0f%% (paired: DeLong's test of the AUROCs on a set, a paired bootstrap otherwise). ±: half the %.0f%% interval (AUROC on a set: DeLong; the rest and every mean: percentile bootstrap, %d resamples).",
			100*t.Level, 100*t.Level, t.Bootstrap)
	}
	if t.IDAccuracy != nil {
		v.Accuracy = fmt.Sprintf("%.2f%% of %d labelled images", 100**t.IDAccuracy, t.IDLabelled)
	}
	v.FPRNote = "FPR95: % of OOD images accepted at the threshold that accepts 95% of " + p.IDName +
		" (in-distribution positive, as the GAIA paper; OpenOOD's OOD-positive FPR95 is in metrics.csv). AUROC: ties count half. All values in %; scores are OOD scores (higher = more out-of-distribution)."
	for _, note := range t.NaNNotes() {
		v.FPRNote += " " + note
	}
	for _, d := range p.Detectors {
		dv := detectorView{Detector: d.Detector, Anchor: anchor(d.Detector), Threshold: FormatScore(d.Threshold)}
		dv.Summary = fmt.Sprintf("flags %.1f%% of %s at the FPR95 threshold %s", 100*d.FlaggedID, p.IDName, dv.Threshold)
		for _, g := range append([]Gallery{d.ID}, d.OOD...) {
			gv := galleryView{Title: g.Title, Note: g.Note}
			for _, it := range g.Items {
				tv := thumbView{Thumb: it, URL: template.URL(it.Image), ScoreText: formatScore(it.Score, 4), SourceShort: ShortSource(it.Source)}
				tv.Exact = it.W <= ExactSide && it.H <= ExactSide
				tv.DisplayW, tv.DisplayH = it.W, it.H
				if tv.Exact && it.W > 0 && it.H > 0 {
					s := max(1, 64/max(it.W, it.H))
					tv.DisplayW, tv.DisplayH = s*it.W, s*it.H
				}
				if it.Image == "" {
					tv.DisplayW, tv.DisplayH = 56, 56
				}
				tv.Width = max(tv.DisplayW, 60) + 6 // the border and padding
				tv.Tip = fmt.Sprintf("score %s, rank %d of %d, predicted %s", FormatScore(it.Score), it.Rank, it.Of, it.Pred)
				if it.Label != "" {
					tv.Tip += ", label " + it.Label
				}
				tv.Tip += ", " + it.Source
				if it.Problem != "" {
					tv.Tip += ": " + it.Problem
				}
				gv.Items = append(gv.Items, tv)
			}
			dv.Galleries = append(dv.Galleries, gv)
		}
		v.Dets = append(v.Dets, dv)
	}
	return v
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"mod2": func(i int) int { return i % 2 },
	"rate": func(n int, s float64) float64 { return float64(n) / s },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gaia ({{.Generator}})">
<title>{{.Title}}</title>
<style>
:root { --fg: #1d2127; --muted: #5f6670; --line: #d9dde3; --soft: #f4f6f8; --accent: #1f5fbf; --bad: #c62828; --best: #e6f4ea; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.dname { font-size: 15px; font-weight: 700; }
h4 { font-size: 13px; margin: 14px 0 2px; }
p { margin: 4px 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.sub { color: var(--muted); }
nav { margin: 10px 0 0; font-size: 13px; color: var(--muted); }
nav a { margin-right: 10px; }
table { border-collapse: collapse; }
table.metrics { font-variant-numeric: tabular-nums; font-size: 13px; }
table.metrics th, table.metrics td { padding: 3px 9px; border-bottom: 1px solid var(--line); }
table.metrics thead th { background: var(--soft); font-weight: 600; text-align: center; }
table.metrics thead tr:nth-child(2) th { font-weight: 500; color: var(--muted); font-size: 12px; }
table.metrics td.num { text-align: right; font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
table.metrics td.num.first, table.metrics th.first { border-left: 1px solid var(--line); }
table.metrics td.best { background: var(--best); font-weight: 700; }
table.metrics td.det { font-weight: 600; white-space: nowrap; }
table.metrics tbody tr:hover td { background: #eef3fb; }
table.metrics tbody tr:hover td.best { background: #cfe9d7; }
.note { color: var(--muted); font-size: 12px; max-width: 960px; }
table.kv th { text-align: left; vertical-align: top; padding: 3px 14px 3px 0; font-weight: 600; white-space: nowrap; font-size: 13px; }
table.kv td { padding: 3px 0; font-size: 13px; word-break: break-word; }
table.phases { font-variant-numeric: tabular-nums; font-size: 13px; }
table.phases th, table.phases td { padding: 2px 12px 2px 0; text-align: right; }
table.phases th:first-child, table.phases td:first-child { text-align: left; }
details > summary { cursor: pointer; }
.taps code { display: block; white-space: pre-wrap; color: var(--muted); margin: 2px 0 6px 16px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
.plots.small { grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); }
.plots figure { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: 6px; }
.plots img { width: 100%; height: auto; display: block; }
.plots figcaption { font-size: 12px; color: var(--muted); }
section.det { border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; padding: 8px 10px; }
section.det > details > summary { list-style-position: outside; }
section.det .summary { color: var(--muted); font-size: 13px; margin-left: 8px; }
.gallery { display: flex; flex-wrap: wrap; gap: 4px; }
.tile { border: 2px solid var(--line); border-radius: 3px; padding: 1px; font-size: 10px; line-height: 1.25; background: #fff; }
.tile.wrong { border-color: var(--bad); }
.tile img { display: block; margin: 0 auto; background: #000; }
.tile img.exact { image-rendering: pixelated; }
.tile .cap { font-variant-numeric: tabular-nums; overflow: hidden; }
.tile .cap span { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile .score { font-weight: 700; }
.tile .rank { color: var(--muted); font-weight: 400; }
.tile .src { color: var(--muted); }
.tile .mis { color: var(--bad); }
.noimg { background: var(--soft); color: var(--muted); display: flex; align-items: center; justify-content: center; text-align: center; font-size: 10px; }
.legend { font-size: 12px; color: var(--muted); }
.legend .sw { display: inline-block; width: 10px; height: 10px; line-height: 0; overflow: hidden; border: 2px solid var(--bad); vertical-align: middle; margin-right: 3px; }
</style>
</head>
<body>
<main>
<header>
<h1>{{.Title}}</h1>
{{if .Protocol}}<p class="sub">Protocol: {{.Protocol}}</p>{{end}}
<p class="sub">In-distribution: <b>{{.IDName}}</b>{{if .Accuracy}} (accuracy {{.Accuracy}}){{end}} · OOD: {{range $i, $s := .Table.SetNames}}{{if $i}}, {{end}}{{$s}}{{end}}{{if .Date}} · {{.Date}}{{end}}</p>
<nav><a href="#metrics">Metrics</a><a href="#setup">Setup</a><a href="#plots">Plots</a>{{if .Dets}}<a href="#galleries">Galleries</a>{{range .Dets}}<a href="#{{.Anchor}}">{{.Detector}}</a>{{end}}{{end}}</nav>
</header>

<section id="metrics">
<h2>Metrics</h2>
<table class="metrics">
<thead>
<tr><th rowspan="2">detector</th>{{range .Sets}}<th colspan="2" class="first">{{.}}</th>{{end}}</tr>
<tr>{{range .Sets}}<th class="first">FPR95 ↓</th><th>AUROC ↑</th>{{end}}</tr>
</thead>
<tbody>
{{range .Rows}}<tr><td class="det">{{if $.Dets}}<a href="#{{.Anchor}}">{{.Detector}}</a>{{else}}{{.Detector}}{{end}}</td>{{range $i, $c := .Cells}}<td class="num{{if $c.Best}} best{{end}}{{if eq (mod2 $i) 0}} first{{end}}">{{$c.Text}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
<p class="note">{{.FPRNote}} {{.BestNote}}</p>
</section>

<section id="setup">
<h2>Setup</h2>
<table class="kv">
{{range .Setup}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}<tr><th>FPR95 convention</th><td>{{.Table.FPRConvention}}</td></tr>
</table>
{{if .Taps}}<h4>Taps per detector</h4>
<div class="taps">{{range .Taps}}<details><summary><b>{{.Detector}}</b>: {{len .Taps}} taps</summary><code>{{range $i, $t := .Taps}}{{if $i}}, {{end}}{{$t}}{{end}}</code></details>
{{end}}</div>{{end}}
{{if .Phases}}<h4>Time per phase</h4>
<table class="phases">
<tr><th>phase</th><th>seconds</th><th>images</th><th>images/s</th></tr>
{{range .Phases}}<tr><td>{{.Name}}{{if .Reused}} (reused){{end}}</td><td>{{printf "%.1f" .Seconds}}</td><td>{{if .Images}}{{.Images}}{{end}}</td><td>{{if and .Images (not .Reused) (gt .Seconds 0.0)}}{{printf "%.1f" (rate .Images .Seconds)}}{{end}}</td></tr>
{{end}}</table>{{end}}
</section>

<section id="plots">
<h2>Plots</h2>
<div class="plots">
{{range .ROCs}}<figure><img src="{{.URL}}" alt="{{.Title}}" width="576" height="480"><figcaption>{{.Title}} ({{.File}})</figcaption></figure>
{{end}}</div>
<h4>Score histograms</h4>
<div class="plots small">
{{range .Hists}}<figure><img src="{{.URL}}" alt="{{.Title}}" width="576" height="384"><figcaption>{{.Title}} ({{.File}})</figcaption></figure>
{{end}}</div>
</section>

{{if .Dets}}<section id="galleries">
<h2>Galleries</h2>
<p class="legend">Per detector: the {{.Gallery}} {{.IDName}} images it scores as most out-of-distribution, then per OOD set the {{.Gallery}} images it scores as most in-distribution, each with its score, its rank in its set, predicted class (and label), and source. <span class="sw">&nbsp;</span>red: wrong at the FPR95 threshold (a false alarm, or a missed detection); a label in red: the model misclassifies the image. The images are the model's inputs before normalization.{{range .Notes}} {{.}}.{{end}}</p>
{{range .Dets}}<section class="det" id="{{.Anchor}}">
<details open>
<summary><span class="dname">{{.Detector}}</span><span class="summary">{{.Summary}}</span></summary>
{{range .Galleries}}<h4>{{.Title}}</h4>
<p class="note">{{.Note}}</p>
<div class="gallery">
{{range .Items}}<div class="tile{{if .Wrong}} wrong{{end}}" style="width:{{.Width}}px" title="{{.Tip}}">{{if .URL}}<img src="{{.URL}}" width="{{.DisplayW}}" height="{{.DisplayH}}" alt="sample {{.Index}}"{{if .Exact}} class="exact"{{end}}>{{else}}<div class="noimg" style="width:{{.DisplayW}}px;height:{{.DisplayH}}px">no image</div>{{end}}<div class="cap"><span class="score">{{.ScoreText}}</span><span><span class="rank">#{{.Rank}}</span> → {{.Pred}}</span>{{if .Label}}<span{{if .Misclassified}} class="mis"{{end}}>label {{.Label}}</span>{{end}}<span class="src">{{.SourceShort}}</span></div></div>
{{end}}</div>
{{end}}</details>
</section>
{{end}}</section>{{end}}
<p class="note">Made by gaia{{if .Date}} on {{.Date}}{{end}}; one file, readable offline.</p>
</main>
</body>
</html>
`))
