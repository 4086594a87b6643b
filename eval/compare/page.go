package compare

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gonum.org/v1/plot"

	"github.com/hdge-torch/hdge-torch/eval"
)

// PageFile is the comparison page inside the output folder; each figure is also written beside
// it as a PNG, and the summary table's numbers go to SummaryFile.
const (
	PageFile    = "compare.html"
	SummaryFile = "compare.json"
)

// Figure is one rendered plot of the page.
type Figure struct {
	Name, Title string
	PNG         []byte
}

// Group is a row of figures shown side by side or one overlaid figure.
type Group struct {
	Title   string
	Figures []Figure
}

// Page is everything the comparison shows.
type Page struct {
	Runs        []*Run
	Summary     []Metric
	Calibration []Figure
	ROC         []Figure
	Histograms  []Group
	Robustness  []Figure
	Training    []Figure
	Warnings    []string
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "_"), "_")
}

func render(name, title string, p *plot.Plot) (Figure, error) {
	b, err := eval.RenderPNG(p, eval.FigureWidth, eval.FigureHeight, eval.FigureDPI)
	if err != nil {
		return Figure{}, fmt.Errorf("figure %s: %w", title, err)
	}
	return Figure{Name: slug(name), Title: title, PNG: b}, nil
}

func seedNote(n int) string {
	if n > 1 {
		return fmt.Sprintf(" (%d seeds)", n)
	}
	return ""
}

// Build computes the table and draws every figure.
func Build(runs []*Run) (*Page, error) {
	pg := &Page{Runs: runs, Summary: Summarize(runs)}
	for _, r := range runs {
		for _, s := range r.Seeds {
			if s.Eval == nil {
				pg.Warnings = append(pg.Warnings, fmt.Sprintf("%s: %s", r.Name, s.Reason))
			}
		}
	}
	steps := []func(*Page) error{(*Page).calibration, (*Page).ood, (*Page).robustness, (*Page).training}
	for _, f := range steps {
		if err := f(pg); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

func (pg *Page) calibration() error {
	for _, r := range pg.Runs {
		cal, n, ok := PoolCalibration(r.Present())
		if !ok {
			continue
		}
		p, err := eval.ReliabilityPlot(cal, r.Name+seedNote(n))
		if err != nil {
			return err
		}
		f, err := render("reliability "+r.Name, r.Name+seedNote(n), p)
		if err != nil {
			return err
		}
		pg.Calibration = append(pg.Calibration, f)
	}
	return nil
}

// oodPairs lists every (set, score) any run's metrics.json reports.
func (pg *Page) oodPairs() [][2]string {
	var pairs [][2]string
	for _, r := range pg.Runs {
		for _, e := range r.Present() {
			for _, set := range sortedKeys(e.Metrics.OOD) {
				for _, score := range sortedKeys(e.Metrics.OOD[set]) {
					if p := [2]string{set, score}; !slices.Contains(pairs, p) {
						pairs = append(pairs, p)
					}
				}
			}
		}
	}
	return pairs
}

func (pg *Page) ood() error {
	for _, pair := range pg.oodPairs() {
		set, score := pair[0], pair[1]
		title := fmt.Sprintf("ROC: %s, %s", set, scoreLabel(score))
		var bands []eval.Band
		group := Group{Title: fmt.Sprintf("%s: in-distribution vs %s", scoreLabel(score), set)}
		for ri, r := range pg.Runs {
			var curves []map[float64]float64
			var pooledIn, pooledOut []float64
			var aurocs []float64
			for _, e := range r.Present() {
				in, out, err := e.Scores(set, score)
				if err != nil {
					continue // no logits for this set: the table still has its AUROC
				}
				pos := make([]bool, len(in)+len(out))
				for i := range in {
					pos[i] = true
				}
				fpr, tpr, _, err := eval.ROCCurve(append(slices.Clone(in), out...), pos, false)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", e.Dir, title, err)
				}
				curves = append(curves, ROCAt(fpr, tpr))
				pooledIn, pooledOut = append(pooledIn, in...), append(pooledOut, out...)
				if m, ok := e.Metrics.OOD[set][score]; ok {
					aurocs = append(aurocs, m.AUROC)
				}
			}
			if len(curves) == 0 {
				pg.Warnings = append(pg.Warnings, fmt.Sprintf("%s: no exported scores for %s, %s: ROC curve and histogram left out", r.Name, set, score))
				continue
			}
			c := Aggregate(curves)
			bands = append(bands, eval.Band{Name: r.Name + seedNote(c.Seeds), X: c.X, Mean: c.Mean, Std: c.Std, Palette: ri + 1})
			h, err := eval.NewHistograms(60, eval.NamedScores{Name: "in", Scores: pooledIn}, eval.NamedScores{Name: set, Scores: pooledOut})
			if err != nil {
				return fmt.Errorf("%s, %s: %w", r.Name, title, err)
			}
			p, err := eval.ScoreHistogramPlot(h, scoreLabel(score), MeanStd(aurocs).Mean)
			if err != nil {
				return err
			}
			p.Title.Text = r.Name + seedNote(len(curves)) + ": " + p.Title.Text
			f, err := render("hist "+set+" "+score+" "+r.Name, r.Name, p)
			if err != nil {
				return err
			}
			group.Figures = append(group.Figures, f)
		}
		if len(bands) == 0 {
			continue
		}
		p, err := eval.BandPlot(title, "false-positive rate (OOD kept)", "true-positive rate (in-distribution kept)", bands, eval.BandOptions{Diagonal: true})
		if err != nil {
			return err
		}
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
		f, err := render("roc "+set+" "+score, title, p)
		if err != nil {
			return err
		}
		pg.ROC = append(pg.ROC, f)
		pg.Histograms = append(pg.Histograms, group)
	}
	return nil
}

func (pg *Page) robustness() error {
	var norms []string
	for _, r := range pg.Runs {
		for _, e := range r.Present() {
			for _, row := range e.Metrics.Robustness {
				if !slices.Contains(norms, row.Norm) {
					norms = append(norms, row.Norm)
				}
			}
		}
	}
	slices.SortFunc(norms, func(a, b string) int { return eval.NormRank(a) - eval.NormRank(b) })
	for _, norm := range norms {
		var bands []eval.Band
		for ri, r := range pg.Runs {
			// Each seed's curve at its strongest attack (most steps) per ε.
			var curves []map[float64]float64
			for _, e := range r.Present() {
				best := map[float64]eval.RobustnessRow{}
				for _, row := range e.Metrics.Robustness {
					if b, ok := best[row.Eps]; row.Norm == norm && (!ok || row.Steps > b.Steps) {
						best[row.Eps] = row
					}
				}
				if len(best) == 0 {
					continue
				}
				c := map[float64]float64{}
				for eps, row := range best {
					c[eps] = row.Accuracy
				}
				curves = append(curves, c)
			}
			if len(curves) == 0 {
				continue
			}
			c := Aggregate(curves)
			bands = append(bands, eval.Band{Name: r.Name + seedNote(c.Seeds), X: c.X, Mean: c.Mean, Std: c.Std, Palette: ri + 1})
		}
		title := fmt.Sprintf("PGD robustness (%s)", eval.NormTitle(norm))
		p, err := eval.BandPlot(title, fmt.Sprintf("ε (%s)", eval.NormTitle(norm)), "accuracy (%)", bands, eval.BandOptions{Scale: 100})
		if err != nil {
			return err
		}
		p.Y.Min, p.Y.Max, p.X.Min = 0, 100, 0
		f, err := render("robustness "+norm, title, p)
		if err != nil {
			return err
		}
		pg.Robustness = append(pg.Robustness, f)
	}
	return nil
}

// trainingKeys is the fields drawn: the total loss first, then every other loss and accuracy.
func (pg *Page) trainingKeys() []string {
	var keys []string
	for _, r := range pg.Runs {
		for _, e := range r.Present() {
			if t := e.Training; t != nil {
				for _, k := range append(t.LossKeys(), t.AccuracyKeys()...) {
					if !slices.Contains(keys, k) {
						keys = append(keys, k)
					}
				}
			}
		}
	}
	return keys
}

func (pg *Page) training() error {
	for _, key := range pg.trainingKeys() {
		var bands []eval.Band
		xLabel := ""
		for ri, r := range pg.Runs {
			var curves []map[float64]float64
			for _, e := range r.Present() {
				t := e.Training
				if t == nil || !t.Has(key) {
					continue
				}
				xLabel = t.XKey()
				x, y := t.Series(key)
				if len(y) > 60 {
					y = smooth(y, max(5, len(y)/40))
				}
				c := map[float64]float64{}
				for i := range x {
					c[x[i]] = y[i]
				}
				curves = append(curves, c)
			}
			if len(curves) == 0 {
				continue
			}
			c := Aggregate(curves)
			bands = append(bands, eval.Band{Name: r.Name + seedNote(c.Seeds), X: c.X, Mean: c.Mean, Std: c.Std, Palette: ri + 1})
		}
		if len(bands) == 0 {
			continue
		}
		scale, yLabel := 1.0, key
		if strings.Contains(key, "acc") {
			scale, yLabel = 100, key+" (%)"
		}
		title := "Training: " + key
		p, err := eval.BandPlot(title, xLabel, yLabel, bands, eval.BandOptions{Scale: scale, LegendBottom: scale == 100})
		if err != nil {
			return err
		}
		f, err := render("training "+key, title, p)
		if err != nil {
			return err
		}
		pg.Training = append(pg.Training, f)
	}
	return nil
}

// smooth is a centred moving average, as the report's training plots use for per-step losses.
func smooth(y []float64, w int) []float64 {
	out := make([]float64, len(y))
	for i := range y {
		lo, hi := max(0, i-w/2), min(len(y), i+w/2+1)
		var s float64
		for _, v := range y[lo:hi] {
			s += v
		}
		out[i] = s / float64(hi-lo)
	}
	return out
}

// Write renders the page into dir: compare.html with every figure embedded, and the PNGs.
func (pg *Page) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	figs := slices.Concat(pg.Calibration, pg.ROC, pg.Robustness, pg.Training)
	for _, g := range pg.Histograms {
		figs = append(figs, g.Figures...)
	}
	for _, f := range figs {
		if err := writeAtomic(filepath.Join(dir, f.Name+".png"), f.PNG); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(pg.summaryJSON(), "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, SummaryFile), append(js, '\n')); err != nil {
		return err
	}
	b, err := pg.HTML()
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, PageFile), b)
}

type seedJSON struct {
	Seed      int    `json:"seed"` // -1 for a folder that is not seed-N
	Dir       string `json:"dir"`
	Evaluated bool   `json:"evaluated"`
	Missing   string `json:"missing,omitempty"`
}

type statJSON struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	N    int     `json:"n"`
}

// summaryJSON is compare.json: runs[].{name,path,seeds[].{seed,dir,evaluated,missing}} and
// metrics[].{key,label,values.<run>.{mean,std,n}}, a run without the metric left out of values.
func (pg *Page) summaryJSON() any {
	type runJSON struct {
		Name  string     `json:"name"`
		Path  string     `json:"path"`
		Seeds []seedJSON `json:"seeds"`
	}
	type metricJSON struct {
		Key    string              `json:"key"`
		Label  string              `json:"label"`
		Values map[string]statJSON `json:"values"`
	}
	var out struct {
		Runs    []runJSON    `json:"runs"`
		Metrics []metricJSON `json:"metrics"`
	}
	for _, r := range pg.Runs {
		rj := runJSON{Name: r.Name, Path: r.Path}
		for _, s := range r.Seeds {
			rj.Seeds = append(rj.Seeds, seedJSON{s.Seed, s.Dir, s.Eval != nil, s.Reason})
		}
		out.Runs = append(out.Runs, rj)
	}
	for _, m := range pg.Summary {
		mj := metricJSON{Key: m.Key, Label: m.Label, Values: map[string]statJSON{}}
		for i, c := range m.Cells {
			if !c.Missing && !math.IsNaN(c.Mean) {
				mj.Values[pg.Runs[i].Name] = statJSON{c.Mean, c.Std, c.N}
			}
		}
		out.Metrics = append(out.Metrics, mj)
	}
	return out
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// HTML renders the page.
func (pg *Page) HTML() ([]byte, error) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Text formats the cell as the table shows it: mean ± std, or "missing".
func (c Cell) Text(percent bool) string {
	if c.Missing || math.IsNaN(c.Mean) {
		return "missing"
	}
	scale, f := 1.0, "%.4f"
	if percent {
		scale, f = 100, "%.2f"
	}
	s := fmt.Sprintf(f, scale*c.Mean)
	if c.N > 1 {
		s += fmt.Sprintf(" ± "+f, scale*c.Std)
	}
	if percent {
		s += "%"
	}
	return s
}

var pageTemplate = template.Must(template.New("compare").Funcs(template.FuncMap{
	"src": func(f Figure) template.URL {
		return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(f.PNG))
	},
	"present": func(r *Run) int { return len(r.Present()) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hdge-torch comparison</title>
<style>
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --accent:#1f77b4; --bg:#f7f8fa; --warn:#b44d12; }
body { margin:0; font:15px/1.5 "Liberation Sans", "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:var(--bg); }
header { background:#1f2933; color:#fff; padding:24px 40px 18px; }
header h1 { margin:0; font-size:24px; font-weight:600; }
main { max-width:1400px; margin:0 auto; padding:24px 40px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:20px 24px; margin:0 0 22px; }
h2 { margin:0 0 14px; font-size:19px; font-weight:600; border-bottom:2px solid var(--accent); display:inline-block; padding-bottom:3px; }
h3 { font-size:15px; margin:18px 0 8px; color:var(--muted); font-weight:600; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { padding:5px 14px; text-align:right; border-bottom:1px solid var(--line); font-size:14px; }
th:first-child, td:first-child { text-align:left; padding-left:0; }
th { color:var(--muted); font-weight:600; font-size:13px; }
td.best { font-weight:700; }
td.missing { color:var(--muted); font-style:italic; }
#runs-table td, #runs-table th { text-align:left; }
.figs { display:grid; grid-template-columns:repeat(auto-fill, minmax(440px, 1fr)); gap:16px; margin-top:10px; }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; display:block; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.warnings { background:#fff4e5; border:1px solid #f0b37e; border-radius:8px; padding:12px 18px; margin:0 0 22px; color:var(--warn); }
code { font-family:"Liberation Mono", Menlo, monospace; font-size:13px; }
</style>
</head>
<body>
<header><h1>Comparison of {{len .Runs}} runs</h1></header>
<main>
{{with .Warnings}}<div class="warnings" id="warnings"><b>Missing</b><ul>{{range .}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
<section id="summary"><h2>Summary</h2>
<p>Mean ± standard deviation over each run's seeds; the best run of each row in bold.</p>
<table id="summary-table"><tr><th>metric</th>{{range .Runs}}<th>{{.Name}}</th>{{end}}</tr>
{{range .Summary}}{{$m := .}}<tr data-key="{{.Key}}"><td>{{.Label}}</td>{{range .Cells}}<td class="{{if .Missing}}missing{{else if .Best}}best{{end}}">{{.Text $m.Percent}}</td>{{end}}</tr>
{{end}}</table></section>

{{with .Calibration}}<section id="calibration"><h2>Reliability diagrams</h2>
<p>Seeds pooled: each bin holds every seed's test samples.</p>
<div class="figs">{{range .}}<figure><img id="fig-{{.Name}}" src="{{src .}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div></section>{{end}}

{{with .ROC}}<section id="ood"><h2>Out-of-distribution detection</h2>
<p>ROC curves averaged over seeds at fixed false-positive rates; the band is ± one standard deviation.</p>
<div class="figs">{{range .}}<figure><img id="fig-{{.Name}}" src="{{src .}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
{{range $.Histograms}}<h3>{{.Title}}</h3><div class="figs">{{range .Figures}}<figure><img id="fig-{{.Name}}" src="{{src .}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>{{end}}
</section>{{end}}

{{with .Robustness}}<section id="robustness"><h2>Adversarial robustness (PGD)</h2>
<div class="figs">{{range .}}<figure><img id="fig-{{.Name}}" src="{{src .}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div></section>{{end}}

{{with .Training}}<section id="training"><h2>Training curves</h2>
<div class="figs">{{range .}}<figure><img id="fig-{{.Name}}" src="{{src .}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div></section>{{end}}

<section id="runs"><h2>Runs</h2>
<table id="runs-table"><tr><th>run</th><th>folder</th><th>evaluations</th></tr>
{{range .Runs}}<tr><td>{{.Name}}</td><td><code>{{.Path}}</code></td><td>{{present .}} of {{len .Seeds}}</td></tr>
{{end}}</table></section>
</main>
</body>
</html>
`
