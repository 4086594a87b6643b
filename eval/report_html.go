package eval

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"image/png"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// WriteHTML writes a self-contained report: styles inline and figures embedded as base64 data:
// URIs, so the one file can be mailed or archived and opens without network access.
func (r *Report) WriteHTML(path string) error {
	b, err := r.HTML()
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

type htmlFigure struct {
	Name, Title string
	Src         template.URL
}

// sampleFigure is a sample grid shown at a whole multiple of its size (pixels stay square and
// sharp), as large as fits the page up to 4×.
type sampleFigure struct {
	htmlFigure
	Width int
}

func sampleWidth(b []byte) int {
	c, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil || c.Width <= 0 || c.Height <= 0 {
		return 0
	}
	k := max(1, min(4, 1160/c.Width, 720/c.Height))
	return k * c.Width
}

type kv struct{ Key, Value string }

// HTML renders the report page.
func (r *Report) HTML() ([]byte, error) {
	figs := map[string][]htmlFigure{}
	for _, f := range r.Figures {
		b, err := f.PNG()
		if err != nil {
			return nil, err
		}
		figs[f.Section] = append(figs[f.Section], htmlFigure{f.Name, f.Title,
			template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b))})
	}
	var cfg []kv
	flattenConfig("", r.Config, &cfg)
	var final []kv
	if r.Training != nil {
		f := r.Training.Final()
		for _, k := range r.Training.Keys {
			final = append(final, kv{k, formatNumber(f[k])})
		}
	}
	var samples []sampleFigure
	if r.Samples != nil {
		for _, im := range r.Samples.Images {
			samples = append(samples, sampleFigure{htmlFigure{slug(im.File), im.Title,
				template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(im.PNG))}, sampleWidth(im.PNG)})
		}
	}
	ood := slices.Clone(r.OOD)
	slices.SortStableFunc(ood, func(a, b OODRow) int { return strings.Compare(a.Set, b.Set) })
	data := map[string]any{
		"R": r, "Created": r.Created.Format(time.RFC1123), "Config": cfg, "Final": final,
		"Figures": figs, "OOD": ood, "Cards": r.headlineCards(), "Robustness": r.Robustness, "RobustTables": robustnessTables(r.Robustness),
		"SampleFigures": samples, "Gen": generationView(r.Generation), "FIDEps": fmt.Sprintf("%g", FIDEps),
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type card struct{ Key, Value, Note string }

// genView is the generation section with the names its numbers may be given: IS and FID only in
// pytorch-fid's Inception-v3, otherwise the classifier-feature labels.
type genView struct {
	Generation
	ISLabel, FDLabel string
	Inception        bool
}

func generationView(g *Generation) *genView {
	if g == nil {
		return nil
	}
	is, fd := g.Labels()
	return &genView{Generation: *g, ISLabel: is, FDLabel: fd, Inception: g.FeatureNet == FeatureNetInception}
}

// headlineCards are the OOD and robustness figures a reader looks for first: the best AUROC over
// every set and score, and per norm the evaluated model's accuracy at its largest budget.
func (r *Report) headlineCards() []card {
	var cards []card
	best := -1
	for i, o := range r.OOD {
		if !math.IsNaN(o.AUROC) && (best < 0 || o.AUROC > r.OOD[best].AUROC) {
			best = i
		}
	}
	if best >= 0 {
		o := r.OOD[best]
		cards = append(cards, card{"Best OOD AUROC", fmt.Sprintf("%.4f", o.AUROC), o.Set + ", " + scoreLabel(o.Score)})
	}
	for _, t := range robustnessTables(r.headlineRobustness()) {
		var top RobustnessRow
		found := false
		for _, row := range r.headlineRobustness() {
			if row.Norm == t.Norm && (!found || row.Eps > top.Eps || row.Eps == top.Eps && row.Steps > top.Steps) {
				top, found = row, true
			}
		}
		if found && top.Eps > 0 {
			cards = append(cards, card{"PGD " + t.NormName + " accuracy", fmt.Sprintf("%.2f%%", 100*top.Accuracy),
				fmt.Sprintf("ε = %s, %d steps", epsLabel(top.Eps), top.Steps)})
		}
	}
	if g := generationView(r.Generation); g != nil {
		cards = append(cards, card{g.ISLabel, fmt.Sprintf("%.2f", g.ISMean), fmt.Sprintf("± %.2f, %d samples", g.ISStd, g.N)},
			card{g.FDLabel, fmt.Sprintf("%.2f", g.FD), g.FeatureNet})
	}
	return cards
}

// headlineRobustness is the rows of the evaluated model; other series are there for comparison.
func (r *Report) headlineRobustness() []RobustnessRow {
	var own []RobustnessRow
	for _, row := range r.Robustness {
		if row.Model == "" || row.Model == r.Model {
			own = append(own, row)
		}
	}
	return own
}

type robustTable struct {
	Norm, NormName string
	Eps            []float64
	Rows           []robustTableRow
}

type robustTableRow struct {
	Label string
	Cells []string
}

// robustnessTables pivots the rows into one table per norm: a row per series (model and steps),
// a column per ε, as the curves are read.
func robustnessTables(rows []RobustnessRow) []robustTable {
	var tables []robustTable
	sorted := sortRobustness(rows)
	for _, r := range sorted {
		if !slices.ContainsFunc(tables, func(t robustTable) bool { return t.Norm == r.Norm }) {
			tables = append(tables, robustTable{Norm: r.Norm, NormName: map[string]string{"linf": "L∞", "l2": "L2"}[r.Norm]})
		}
	}
	slices.SortStableFunc(tables, func(a, b robustTable) int {
		return cmp.Or(cmp.Compare(NormRank(a.Norm), NormRank(b.Norm)), cmp.Compare(a.Norm, b.Norm))
	})
	for ti := range tables {
		t := &tables[ti]
		t.NormName = cmp.Or(t.NormName, t.Norm)
		models, steps := map[string]bool{}, map[int]bool{}
		for _, r := range sorted {
			if r.Norm == t.Norm {
				models[r.Model], steps[r.Steps] = true, true
				if !slices.Contains(t.Eps, r.Eps) {
					t.Eps = append(t.Eps, r.Eps)
				}
			}
		}
		slices.Sort(t.Eps)
		idx := map[string]int{}
		for _, r := range sorted {
			if r.Norm != t.Norm {
				continue
			}
			label := robustnessSeriesName(r, len(models) > 1, len(steps) > 1)
			i, ok := idx[label]
			if !ok {
				i = len(t.Rows)
				idx[label] = i
				cells := make([]string, len(t.Eps))
				for c := range cells {
					cells[c] = "–"
				}
				t.Rows = append(t.Rows, robustTableRow{Label: label, Cells: cells})
			}
			t.Rows[i].Cells[slices.Index(t.Eps, r.Eps)] = fmt.Sprintf("%.2f%%", 100*r.Accuracy)
		}
	}
	return tables
}

// flattenConfig lists nested config values as dotted keys, sorted, for a two-column table.
func flattenConfig(prefix string, v any, out *[]kv) {
	switch m := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			flattenConfig(strings.TrimPrefix(prefix+"."+k, "."), m[k], out)
		}
	case nil:
		if prefix != "" {
			*out = append(*out, kv{prefix, "null"})
		}
	default:
		s, err := json.Marshal(v)
		if err != nil {
			s = []byte(fmt.Sprint(v))
		}
		*out = append(*out, kv{prefix, strings.Trim(string(s), `"`)})
	}
}

// epsLabel writes budgets that are whole grey levels as k/255, the way L∞ budgets are quoted.
func epsLabel(v float64) string {
	if k := math.Round(v * 255); v > 0 && v < 1 && math.Abs(v*255-k) < 1e-9 {
		return fmt.Sprintf("%.0f/255", k)
	}
	return fmt.Sprintf("%g", v)
}

func formatNumber(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) < 1e-3 || math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.3e", v)
	}
	return fmt.Sprintf("%.4f", v)
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":  func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
	"f4":   func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"num":  formatNumber,
	"eps":  epsLabel,
	"slbl": scoreLabel,
	// The bar in the bin table shows accuracy against confidence at a glance.
	"barw": func(v float64) string { return fmt.Sprintf("%.1f", 100*v) },
}).Parse(reportHTML))

const reportHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.R.Title}}</title>
<style>
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --accent:#1f77b4; --bg:#f7f8fa; --warn:#b44d12; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 "Liberation Sans", "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:var(--bg); }
header { background:#1f2933; color:#fff; padding:28px 40px 22px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:600; }
header .meta { color:#cbd2d9; font-size:13px; }
main { max-width:1240px; margin:0 auto; padding:24px 40px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:20px 24px; margin:0 0 22px; }
h2 { margin:0 0 14px; font-size:19px; font-weight:600; border-bottom:2px solid var(--accent); display:inline-block; padding-bottom:3px; }
h3 { font-size:15px; margin:18px 0 8px; color:var(--muted); font-weight:600; }
.cards { display:flex; flex-wrap:wrap; gap:14px; margin:0 0 22px; }
.card { flex:1 1 150px; background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 18px; }
.card .v { font-size:26px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.card .note { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; margin:4px 0 8px; }
th, td { padding:5px 14px 5px 0; text-align:left; border-bottom:1px solid var(--line); font-size:14px; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
td.n, th.n { text-align:right; padding-left:14px; }
th.eps { text-transform:none; }
tr:last-child td { border-bottom:none; }
.figs { display:grid; grid-template-columns:repeat(auto-fill, minmax(520px, 1fr)); gap:16px; margin-top:10px; }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; display:block; }
.samples { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; margin-top:12px; }
.samples figure { max-width:100%; }
.samples img { width:auto; max-width:100%; height:auto; image-rendering:pixelated; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.warnings { background:#fff4e5; border:1px solid #f0b37e; border-radius:8px; padding:12px 18px; margin:0 0 22px; color:var(--warn); }
.warnings ul { margin:6px 0 0; padding-left:20px; }
.bar { position:relative; width:160px; height:10px; background:#eef2f6; border-radius:2px; }
.bar span { position:absolute; left:0; top:0; bottom:0; background:var(--accent); border-radius:2px; }
.bar i { position:absolute; top:-2px; bottom:-2px; width:2px; background:#d62728; }
details summary { cursor:pointer; color:var(--accent); margin-top:8px; }
code { font-family:"Liberation Mono", Menlo, monospace; font-size:13px; }
.cols { display:flex; flex-wrap:wrap; gap:28px; align-items:flex-start; }
footer { color:var(--muted); font-size:12px; text-align:center; padding-bottom:24px; }
</style>
</head>
<body>
<header>
<h1>{{.R.Title}}</h1>
<div class="meta">{{with .R.Model}}model <b>{{.}}</b> · {{end}}generated {{.Created}}</div>
</header>
<main>
{{with .R.Warnings}}<div class="warnings" id="warnings"><b>Warnings</b><ul>{{range .}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{if or .R.Classification .R.Calibration .Cards}}<div class="cards" id="summary">
{{with .R.Classification}}<div class="card"><div class="k">Accuracy</div><div class="v">{{pct .Accuracy}}</div></div>
<div class="card"><div class="k">NLL</div><div class="v">{{f4 .NLL}}</div></div>{{end}}
{{with .R.Calibration}}<div class="card"><div class="k">ECE (M={{len .Bins}})</div><div class="v">{{pct .ECE}}</div></div>
<div class="card"><div class="k">Brier</div><div class="v">{{f4 .Brier}}</div></div>{{end}}
{{range .Cards}}<div class="card"><div class="k">{{.Key}}</div><div class="v">{{.Value}}</div>{{with .Note}}<div class="note">{{.}}</div>{{end}}</div>
{{end}}</div>{{end}}






{{if .OOD}}<section id="ood"><h2>Out-of-distribution detection</h2>
<p>In-distribution samples are the positive class; a higher score means more in-distribution. FPR95 is the false-positive rate at the first threshold where the true-positive rate reaches 95%.</p>
<table id="ood-table"><tr><th>OOD set</th><th>score</th><th class="n">AUROC</th><th class="n">AUPR-in</th><th class="n">AUPR-out</th><th class="n">FPR95</th><th class="n">n in</th><th class="n">n out</th></tr>
{{range .OOD}}<tr><td>{{.Set}}</td><td>{{slbl .Score}}</td><td class="n">{{f4 .AUROC}}</td><td class="n">{{f4 .AUPRIn}}</td><td class="n">{{f4 .AUPROut}}</td><td class="n">{{f4 .FPR95}}</td><td class="n">{{.NIn}}</td><td class="n">{{.NOut}}</td></tr>
{{end}}</table>
<div class="figs">{{range index $.Figures "ood"}}<figure><img id="fig-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
</section>{{end}}

{{if or .R.Classification .R.Calibration}}<section id="calibration"><h2>Classification and calibration</h2>
<div class="cols"><div>
<table id="classification-table"><tr><th>metric</th><th class="n">value</th></tr>
{{with .R.Classification}}<tr><td>samples</td><td class="n">{{.N}}</td></tr>
<tr><td>classes</td><td class="n">{{.NumClasses}}</td></tr>
<tr><td>top-1 accuracy</td><td class="n">{{pct .Accuracy}}</td></tr>
<tr><td>NLL</td><td class="n">{{f4 .NLL}}</td></tr>{{end}}
{{with .R.Calibration}}<tr><td>ECE</td><td class="n">{{pct .ECE}}</td></tr>
<tr><td>MCE</td><td class="n">{{pct .MCE}}</td></tr>
<tr><td>Brier score</td><td class="n">{{f4 .Brier}}</td></tr>{{end}}
</table>
{{with .R.Calibration}}<details><summary>Per-bin table ({{len .Bins}} bins, a sample falls in (lo, hi])</summary>
<table id="calibration-table"><tr><th>bin</th><th class="n">count</th><th class="n">accuracy</th><th class="n">confidence</th><th>accuracy vs confidence</th></tr>
{{range .Bins}}<tr><td>({{printf "%.2f" .Lo}}, {{printf "%.2f" .Hi}}]</td><td class="n">{{.Count}}</td>{{if .Count}}<td class="n">{{pct .Accuracy}}</td><td class="n">{{pct .Confidence}}</td><td><div class="bar"><span style="width:{{barw .Accuracy}}%"></span><i style="left:{{barw .Confidence}}%"></i></div></td>{{else}}<td class="n">–</td><td class="n">–</td><td></td>{{end}}</tr>
{{end}}</table></details>{{end}}
</div>
<div class="figs" style="flex:1 1 520px">{{range index $.Figures "calibration"}}<figure><img id="fig-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
</div></section>{{end}}

{{if .Robustness}}<section id="robustness"><h2>Adversarial robustness (PGD)</h2>
<div class="figs">{{range index $.Figures "robustness"}}<figure><img id="fig-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
{{range .RobustTables}}<h3>Accuracy under {{.NormName}} attacks</h3>
<table id="robustness-table-{{.Norm}}"><tr><th>series</th>{{range .Eps}}<th class="n eps">ε = {{eps .}}</th>{{end}}</tr>
{{range .Rows}}<tr><td>{{.Label}}</td>{{range .Cells}}<td class="n">{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{with .R.RobustnessChecks}}<h3>Sanity checks</h3>
<table id="robustness-checks"><tr><th>check</th><th>result</th><th>detail</th></tr>
{{range .}}<tr><td><code>{{.Name}}</code></td><td>{{if .Passed}}pass{{else}}<b style="color:var(--warn)">FAIL</b>{{end}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>{{end}}
</section>{{end}}

{{if or .Gen .SampleFigures}}<section id="samples"><h2>Samples</h2>
{{with .R.Samples}}<p>From <code>{{.Dir}}</code>{{with .Caption}}: {{.}}{{end}}.</p>{{end}}
{{with .Gen}}<table id="generation-table"><tr><th>metric</th><th class="n">value</th></tr>
<tr><td>{{.ISLabel}}</td><td class="n">{{printf "%.3f" .ISMean}} ± {{printf "%.3f" .ISStd}}</td></tr>
<tr><td>{{.FDLabel}}</td><td class="n">{{printf "%.3f" .FD}}</td></tr>
<tr><td>samples scored</td><td class="n">{{.N}}</td></tr>
<tr><td>feature network</td><td class="n"><code>{{.FeatureNet}}</code></td></tr>
</table>
{{if not .Inception}}<p>Scored in the features and softmax of a classifier, not pytorch-fid's Inception-v3: comparable between models of this dataset scored by the same classifier, not with the Inception-v3 scores of the literature.</p>{{end}}
{{if .EpsUsed}}<p>The covariance product was singular; the Fréchet distance was computed with {{$.FIDEps}}·I added.</p>{{end}}{{end}}
<div class="samples">{{range .SampleFigures}}<figure><img id="samples-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"{{with .Width}} style="width:{{.}}px"{{end}}><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
</section>{{end}}

{{with .R.Training}}<section id="training"><h2>Training</h2>
<p>{{len .Records}} records from <code>{{.Source}}</code>.</p>
<table id="training-table"><tr><th>field</th><th class="n">final value</th></tr>
{{range $.Final}}<tr><td><code>{{.Key}}</code></td><td class="n">{{.Value}}</td></tr>
{{end}}</table>
<div class="figs">{{range index $.Figures "training"}}<figure><img id="fig-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
</section>{{end}}

{{with index $.Figures "other"}}<section id="other"><h2>Other figures</h2>
<div class="figs">{{range .}}<figure><img id="fig-{{.Name}}" src="{{.Src}}" alt="{{.Title}}"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
</section>{{end}}

{{if .Config}}<section id="config"><details id="config-details"><summary><h2>Configuration</h2> ({{len .Config}} settings)</summary>
<table id="config-table"><tr><th>key</th><th>value</th></tr>
{{range .Config}}<tr><td><code>{{.Key}}</code></td><td><code>{{.Value}}</code></td></tr>
{{end}}</table></details></section>{{end}}
</main>
<footer>hdge-torch evaluation report · numbers also in metrics.json</footer>
</body>
</html>
`
