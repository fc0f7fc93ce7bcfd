package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/metrics"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/scorefile"
)

// fixture is a folder of n 40x40 RGB PNGs (each its own colour pattern)
// and a score file of two detectors over it, with provenance saying a
// 3x32x32 model saw them center-cropped.
type fixture struct {
	dir, scores string
	rows        []gaia.ScoreRow
	meta        *gaia.ScoreMeta
}

func makeFixture(t *testing.T, name string, n int, seed int64) *fixture {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	f := &fixture{dir: filepath.Join(t.TempDir(), name)}
	require.NoError(t, os.MkdirAll(filepath.Join(f.dir, "c"), 0o755))
	for i := 0; i < n; i++ {
		img := image.NewRGBA(image.Rect(0, 0, 40, 40))
		for y := 0; y < 40; y++ {
			for x := 0; x < 40; x++ {
				img.Set(x, y, color.RGBA{uint8(i * 7), uint8(x * 6), uint8(y*5 + int(seed)), 255})
			}
		}
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, img))
		require.NoError(t, os.WriteFile(filepath.Join(f.dir, "c", fmt.Sprintf("%03d.png", i)), b.Bytes(), 0o644))
	}
	f.scores = filepath.Join(t.TempDir(), name+".csv")
	sw, err := scorefile.Create(f.scores, []string{"det-a", "det-b"}, nil)
	require.NoError(t, err)
	require.NoError(t, sw.WithSidecar())
	for i := 0; i < n; i++ {
		s := []float64{r.NormFloat64() + float64(seed), float64(r.Intn(5))} // det-b: many ties
		if i == 3 && seed == 0 {
			s[0] = math.NaN() // ranks as the most OOD
		}
		f.rows = append(f.rows, gaia.ScoreRow{Index: i, Source: filepath.Join(f.dir, "c", fmt.Sprintf("%03d.png", i)), Label: 0, Pred: i % 2, Scores: s})
	}
	require.NoError(t, sw.Append(f.rows))
	f.meta = &gaia.ScoreMeta{Model: "m.pt", ModelSHA256: "ab12", Data: "folder:" + f.dir + ",center-crop=32", Detectors: []string{"det-a", "det-b"}, Settings: gaia.Settings{},
		Input: []int{3, 32, 32}, ClassNames: []string{"cat", "dog"}, Taps: map[string][]string{"det-a": {"layer1", "layer2"}}}
	raw, err := outfile.JSON(f.meta)
	require.NoError(t, err)
	require.NoError(t, sw.CommitWith(raw))
	return f
}

func (f *fixture) set(t *testing.T, name string) Set {
	sf, err := gaia.ReadScoreFile(f.scores)
	require.NoError(t, err)
	meta, err := gaia.ReadScoreMeta(f.scores)
	require.NoError(t, err)
	return Set{Name: name, Scores: sf, Meta: meta}
}

func decodeURL(t *testing.T, url string) image.Image {
	t.Helper()
	raw, ok := strings.CutPrefix(url, "data:image/png;base64,")
	require.True(t, ok, "a PNG data URL")
	b, err := base64.StdEncoding.DecodeString(raw)
	require.NoError(t, err)
	img, err := png.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	return img
}

// The galleries hold the K most OOD ID samples and the K least OOD OOD
// samples, in order, marked against the FPR95 threshold, each thumbnail the
// model's input (the center crop) pixel for pixel.
func TestGalleries(t *testing.T) {
	id, ood := makeFixture(t, "id", 60, 0), makeFixture(t, "ood", 30, 1)
	idSet, oodSet := id.set(t, "ID"), ood.set(t, "Far")
	page, err := Build(Input{ID: idSet, OOD: []Set{oodSet}, Gallery: 5})
	require.NoError(t, err)
	require.Len(t, page.Detectors, 2)
	for d, det := range []string{"det-a", "det-b"} {
		g := page.Detectors[d]
		idScores := column(idSet.Scores.Rows, d)
		th := metrics.Threshold95(idScores)
		assert.Equal(t, th, g.Threshold)
		want := rankedIndices(idScores, true)[:5]
		var got []int
		for _, it := range g.ID.Items {
			got = append(got, it.Index)
			assert.Equal(t, math.IsNaN(it.Score) || it.Score > th, it.Wrong, "%s ID %d", det, it.Index)
		}
		assert.Equal(t, want, got, det)
		if d == 0 {
			assert.Equal(t, 3, got[0], "a NaN score is the most OOD")
		}
		oodScores := column(oodSet.Scores.Rows, d)
		want = rankedIndices(oodScores, false)[:5]
		got = nil
		for i, it := range g.OOD[0].Items {
			got = append(got, it.Index)
			assert.Equal(t, i+1, it.Rank)
			assert.Equal(t, 30, it.Of)
			assert.Equal(t, it.Score <= th, it.Wrong, "%s OOD %d", det, it.Index)
		}
		assert.Equal(t, want, got, det)
		m, err := metrics.Compute(idScores, oodScores)
		require.NoError(t, err)
		assert.Contains(t, g.OOD[0].Note, fmt.Sprintf("(%.1f%%, the FPR95)", 100*m.FPR95))
	}
	// The thumbnail is the 32x32 center crop of the 40x40 PNG.
	it := page.Detectors[0].ID.Items[1]
	assert.Equal(t, []string{"cat", "dog"}[it.Index%2], it.Pred)
	for _, it := range page.Detectors[0].ID.Items {
		assert.Equal(t, "cat", it.Label)
		assert.Equal(t, it.Index%2 == 1, it.Misclassified, "label 0, predicted %d", it.Index%2)
	}
	for _, it := range page.Detectors[0].OOD[0].Items {
		assert.Empty(t, it.Label, "an OOD set's labels are not the model's classes")
	}
	img := decodeURL(t, it.Image)
	require.Equal(t, image.Rect(0, 0, 32, 32), img.Bounds())
	for _, p := range [][2]int{{0, 0}, {31, 31}, {5, 17}} {
		r, g, b, _ := img.At(p[0], p[1]).RGBA()
		x, y := p[0]+4, p[1]+4
		assert.Equal(t, []uint32{uint32(uint8(it.Index * 7)), uint32(x * 6), uint32(y * 5)}, []uint32{r >> 8, g >> 8, b >> 8}, "pixel %v", p)
	}
	assert.Empty(t, page.Notes)
	// The page says what it holds.
	html, err := HTML(page)
	require.NoError(t, err)
	s := string(html)
	assert.Equal(t, 4, strings.Count(s, `<div class="gallery">`))
	assert.Equal(t, 20+3, strings.Count(s, `<img src="data:image/png;base64,`), "20 thumbnails, 1 ROC, 2 histograms")
	assert.Contains(t, s, "layer1, layer2")
	assert.NotContains(t, s, "ZgotmplZ") // a URL html/template refused
	assert.NotContains(t, s, "<script")
}

func column(rows []gaia.ScoreRow, d int) []float64 {
	var v []float64
	for _, r := range rows {
		v = append(v, r.Scores[d])
	}
	return v
}

// rankedIndices sorts the indices by score (NaN as +Inf), ties by index.
func rankedIndices(s []float64, descending bool) []int {
	idx := make([]int, len(s))
	for i := range idx {
		idx[i] = i
	}
	v := func(i int) float64 {
		if math.IsNaN(s[i]) {
			return math.Inf(1)
		}
		return s[i]
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if v(idx[a]) != v(idx[b]) {
			return (v(idx[a]) > v(idx[b])) == descending
		}
		return idx[a] < idx[b]
	})
	return idx
}

// The best value of each column is marked, every tie, in the table as
// printed (2 decimals).
func TestBestPerColumn(t *testing.T) {
	id, ood := makeFixture(t, "id", 40, 0), makeFixture(t, "ood", 40, 2)
	page, err := Build(Input{ID: id.set(t, "ID"), OOD: []Set{ood.set(t, "Far")}, Gallery: -1})
	require.NoError(t, err)
	assert.Empty(t, page.Detectors)
	v := view(page)
	require.Len(t, v.Rows, 2)
	for c := range v.Rows[0].Cells {
		a, b := v.Rows[0].Cells[c], v.Rows[1].Cells[c]
		var x, y float64
		fmt.Sscan(a.Text, &x)
		fmt.Sscan(b.Text, &y)
		lowerBetter := c%2 == 0
		switch {
		case x == y:
			assert.True(t, a.Best && b.Best, "column %d: a tie marks both", c)
		case (x < y) == lowerBetter:
			assert.True(t, a.Best && !b.Best, "column %d: %v vs %v", c, x, y)
		default:
			assert.True(t, !a.Best && b.Best, "column %d: %v vs %v", c, x, y)
		}
	}
}

// Without provenance, or when the data changed since scoring, the page is
// made without those images and says why; a detector a set lacks is an
// error naming the set.
func TestGalleryProblems(t *testing.T) {
	id, ood := makeFixture(t, "id", 20, 0), makeFixture(t, "ood", 20, 1)
	bare := ood.set(t, "Far")
	bare.Meta = nil
	page, err := Build(Input{ID: id.set(t, "ID"), OOD: []Set{bare}, Gallery: 3})
	require.NoError(t, err)
	for _, it := range page.Detectors[0].OOD[0].Items {
		assert.Empty(t, it.Image)
		assert.Contains(t, it.Problem, "no provenance")
	}
	assert.NotEmpty(t, page.Detectors[0].ID.Items[0].Image)
	require.NotEmpty(t, page.Notes)

	// A file renamed since scoring: sample i is another file now.
	require.NoError(t, os.Rename(filepath.Join(id.dir, "c", "000.png"), filepath.Join(id.dir, "c", "zzz.png")))
	page, err = Build(Input{ID: id.set(t, "ID"), OOD: []Set{ood.set(t, "Far")}, Gallery: 20})
	require.NoError(t, err)
	changed := 0
	for _, it := range page.Detectors[0].ID.Items {
		if strings.Contains(it.Problem, "data changed") {
			changed++
		}
	}
	assert.Equal(t, 20, changed, "every index moved by one")
	assert.True(t, slicesHas(page.Notes, "the data changed since it was scored"))

	html, err := HTML(page)
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`<div class="noimg"[^>]*>no image</div>`), string(html))

	_, err = Build(Input{ID: id.set(t, "ID"), OOD: []Set{ood.set(t, "Far")}, Detectors: []string{"det-a", "gaia-z"}})
	assert.ErrorContains(t, err, "set ID")
	assert.ErrorContains(t, err, "no scores of gaia-z")
}

func slicesHas(notes []string, sub string) bool {
	for _, n := range notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

// Inputs above 64 pixels a side are shown resized to 96 (JPEG), from a
// record source (seeded noise) as from files.
func TestLargeThumbnails(t *testing.T) {
	dir := t.TempDir()
	set := func(name string, shift float64) Set {
		path := filepath.Join(dir, name+".csv")
		sw, err := scorefile.Create(path, []string{"d"}, nil)
		require.NoError(t, err)
		for i := 0; i < 6; i++ {
			require.NoError(t, sw.Append([]gaia.ScoreRow{{Index: i, Source: fmt.Sprintf("uniform-noise#%d", i), Label: -1, Scores: []float64{float64(i) + shift}}}))
		}
		require.NoError(t, sw.Commit())
		sf, err := gaia.ReadScoreFile(path)
		require.NoError(t, err)
		return Set{Name: name, Scores: sf, Meta: &gaia.ScoreMeta{Data: "noise:uniform,n=6,shape=3x100x120,seed=4,resize=100x120", Input: []int{3, 100, 120}}}
	}
	page, err := Build(Input{ID: set("a", 0), OOD: []Set{set("b", 0.5)}, Gallery: 2})
	require.NoError(t, err)
	it := page.Detectors[0].ID.Items[0]
	require.Empty(t, it.Problem)
	raw, ok := strings.CutPrefix(it.Image, "data:image/jpeg;base64,")
	require.True(t, ok, it.Image[:30])
	b, err := base64.StdEncoding.DecodeString(raw)
	require.NoError(t, err)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	require.NoError(t, err)
	assert.Equal(t, [2]int{96, 80}, [2]int{cfg.Width, cfg.Height}, "120x100 fitted into 96")
	assert.Equal(t, [2]int{96, 80}, [2]int{it.W, it.H})
	assert.True(t, slicesHas(page.Notes, "shown resized to 96 pixels"))
}
