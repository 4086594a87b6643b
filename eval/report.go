package eval

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"gonum.org/v1/plot"
)

// Report gathers everything one evaluation produced. Build it with the Add methods, which compute
// the numbers and their figures, then write metrics.json (WriteJSON), the PNGs (WritePlots) and a
// self-contained report.html (WriteHTML).
type Report struct {
	Title   string
	Model   string // the evaluated model's name; robustness rows with this Model (or none) are checked against its clean accuracy
	Created time.Time
	Config  map[string]any

	Training       *TrainingLog
	Classification *Classification
	Calibration    *Calibration
	OOD            []OODRow
	Robustness     []RobustnessRow
	Figures        []*Figure
	Warnings       []string

	// RobustnessClean, when set, maps each robustness series (model) to the clean accuracy its
	// ε = 0 rows must reproduce, for attacks run on a subset of the test set or without the
	// test-time noise; otherwise the classification accuracy is used.
	RobustnessClean map[string]float64
	// RobustnessChecks are the sanity checks of the robustness curves, shown with them.
	RobustnessChecks []RobustnessCheck

	// Samples and Generation come from a folder written by `hdge-torch sample` (AddSamples).
	Samples    *Samples
	Generation *Generation
}

// RobustnessCheck is the outcome of one sanity check of the robustness results, such as "accuracy
// at ε = 0 equals clean accuracy".
type RobustnessCheck struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// OODRow is the OOD metrics of one score on one OOD set.
type OODRow struct {
	Set   string
	Score string
	OODMetrics
}

// Figure is a named plot; its PNG is rendered once, on first use.
type Figure struct {
	Name    string // file stem, unique in the report
	Title   string
	Section string // "training", "calibration", "ood", "robustness" or "other"
	File    string // set by WritePlots
	Plot    *plot.Plot
	png     []byte
}

// PNG renders the figure at the default size.
func (f *Figure) PNG() ([]byte, error) {
	if f.png == nil {
		b, err := RenderPNG(f.Plot, FigureWidth, FigureHeight, FigureDPI)
		if err != nil {
			return nil, fmt.Errorf("figure %s: %w", f.Name, err)
		}
		f.png = b
	}
	return f.png, nil
}

// NewReport starts a report; config is the run's configuration as JSON-able values.
func NewReport(title, model string, config map[string]any) *Report {
	return &Report{Title: title, Model: model, Created: time.Now().UTC(), Config: config}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a lowercase file-name-safe stem: "CIFAR-100" → "cifar_100".
func slug(s string) string {
	return strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "_"), "_")
}

// AddFigure adds a plot under a name unique within the report.
func (r *Report) AddFigure(name, title, section string, p *plot.Plot) *Figure {
	base := cmp.Or(slug(name), "figure")
	name = base
	for i := 2; slices.ContainsFunc(r.Figures, func(f *Figure) bool { return f.Name == name }); i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	f := &Figure{Name: name, Title: title, Section: section, Plot: p}
	r.Figures = append(r.Figures, f)
	return f
}

// AddTraining reads a metrics.jsonl and adds its curves.
func (r *Report) AddTraining(path string) error {
	t, err := ReadTrainingLog(path)
	if err != nil {
		return err
	}
	r.Training = t
	r.Warnings = append(r.Warnings, t.Warnings...)
	if len(t.Records) == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("training log %s has no records", path))
		return nil
	}
	plots, err := TrainingPlots(t)
	if err != nil {
		return err
	}
	for _, p := range plots {
		r.AddFigure("training "+p.Title.Text, p.Title.Text, "training", p)
	}
	return nil
}

// AddClassification computes accuracy, NLL and calibration with DefaultCalibrationBins bins, and
// adds a reliability diagram titled with name (e.g. "CIFAR-10 test").
func (r *Report) AddClassification(name string, l Logits, labels []int64) error {
	c, err := Classify(l, labels)
	if err != nil {
		return err
	}
	cal, err := Calibrate(l, labels, DefaultCalibrationBins)
	if err != nil {
		return err
	}
	r.Classification, r.Calibration = &c, &cal
	title := "Reliability diagram"
	if name != "" || r.Model != "" {
		title = strings.Trim(r.Model+", "+name, ", ")
	}
	p, err := ReliabilityPlot(cal, title)
	if err != nil {
		return err
	}
	r.AddFigure("reliability", "Reliability diagram", "calibration", p)
	return nil
}

// AddOOD computes the OOD metrics of one score on one OOD set and adds the score histogram of the
// in-distribution set (named inName) against it.
func (r *Report) AddOOD(inName, set, score string, in, out []float64) error {
	p, m, err := OODHistogramPlot(inName, set, score, in, out)
	if err != nil {
		return err
	}
	r.OOD = slices.DeleteFunc(r.OOD, func(o OODRow) bool { return o.Set == set && o.Score == score })
	r.OOD = append(r.OOD, OODRow{Set: set, Score: score, OODMetrics: m})
	r.AddFigure("hist "+set+" "+score, fmt.Sprintf("%s: %s vs %s", scoreLabel(score), cmp.Or(inName, "in"), set), "ood", p)
	return nil
}

// OODHistogramPlot computes the OOD metrics of one score on one OOD set and draws the figure
// AddOOD adds to a report: the score's histogram over the in-distribution set (named inName)
// against the OOD set, each normalised to a density, with the AUROC in the title.
func OODHistogramPlot(inName, set, score string, in, out []float64) (*plot.Plot, OODMetrics, error) {
	if set == "" || score == "" {
		return nil, OODMetrics{}, fmt.Errorf("OOD: set and score names must not be empty (got %q, %q)", set, score)
	}
	m, err := OOD(in, out)
	if err != nil {
		return nil, OODMetrics{}, fmt.Errorf("OOD set %s, score %s: %w", set, score, err)
	}
	h, err := NewHistograms(60, NamedScores{cmp.Or(inName, "in-distribution"), in}, NamedScores{set, out})
	if err != nil {
		return nil, OODMetrics{}, fmt.Errorf("OOD set %s, score %s: %w", set, score, err)
	}
	p, err := ScoreHistogramPlot(h, scoreLabel(score), m.AUROC)
	if err != nil {
		return nil, OODMetrics{}, err
	}
	return p, m, nil
}

// scoreLabel is the axis label for a score name.
func scoreLabel(score string) string {
	switch Score(score) {
	case ScoreLogQX:
		return "log q(x)"
	case ScoreMaxProb:
		return "max p(y|x)"
	}
	return score
}

// AddOODLogits adds both standard scores (log q(x) and max p(y|x)) of an OOD set's logits.
func (r *Report) AddOODLogits(inName string, in Logits, set string, out Logits) error {
	if in.C != out.C {
		return fmt.Errorf("OOD set %s: %s has %d classes but %s has %d", set, in.name(), in.C, out.name(), out.C)
	}
	for _, s := range []Score{ScoreLogQX, ScoreMaxProb} {
		si, err := Scores(in, s)
		if err != nil {
			return err
		}
		so, err := Scores(out, s)
		if err != nil {
			return fmt.Errorf("OOD set %s: %w", set, err)
		}
		if err := r.AddOOD(inName, set, string(s), si, so); err != nil {
			return err
		}
	}
	return nil
}

// AddRobustness appends robustness rows, records CheckRobustness's warnings (against the clean
// accuracy from AddClassification for rows of r.Model) and redraws one plot per norm.
func (r *Report) AddRobustness(rows []RobustnessRow) error {
	if len(rows) == 0 {
		return fmt.Errorf("robustness: no rows")
	}
	r.Robustness = append(r.Robustness, rows...)
	clean := r.RobustnessClean
	if clean == nil && r.Classification != nil {
		clean = map[string]float64{r.Model: r.Classification.Accuracy}
		if r.Model != "" {
			clean[""] = r.Classification.Accuracy
		}
	}
	r.Warnings = slices.DeleteFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "robustness: ") })
	for _, w := range CheckRobustness(r.Robustness, clean, 0) {
		r.Warnings = append(r.Warnings, "robustness: "+w)
	}
	r.Figures = slices.DeleteFunc(r.Figures, func(f *Figure) bool { return f.Section == "robustness" })
	var norms []string
	for _, row := range r.Robustness {
		if !slices.Contains(norms, row.Norm) {
			norms = append(norms, row.Norm)
		}
	}
	slices.SortFunc(norms, func(a, b string) int { return cmp.Or(cmp.Compare(NormRank(a), NormRank(b)), cmp.Compare(a, b)) })
	for _, n := range norms {
		p, err := RobustnessPlot(r.Robustness, n)
		if err != nil {
			return err
		}
		r.AddFigure("robustness "+n, p.Title.Text, "robustness", p)
	}
	return nil
}

// WritePlots renders every figure into dir as <name>.png and records the file names for
// metrics.json.
func (r *Report) WritePlots(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	for _, f := range r.Figures {
		b, err := f.PNG()
		if err != nil {
			return err
		}
		path := filepath.Join(dir, f.Name+".png")
		if err := writeFileAtomic(path, b); err != nil {
			return err
		}
		f.File = path
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error { return atomicfile.WriteFile(path, b) }

// jsonFloat keeps NaN and ±Inf (which encoding/json rejects) out of metrics.json as null.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// MetricsJSON is the layout of metrics.json. Keys are stable snake_case; sections that were not
// computed are omitted. See WriteJSON.
type MetricsJSON struct {
	SchemaVersion  int                              `json:"schema_version"`
	Title          string                           `json:"title,omitempty"`
	Model          string                           `json:"model,omitempty"`
	Created        string                           `json:"created"`
	Config         map[string]any                   `json:"config,omitempty"`
	Classification *Classification                  `json:"classification,omitempty"`
	Calibration    *calibrationJSON                 `json:"calibration,omitempty"`
	OOD            map[string]map[string]OODMetrics `json:"ood,omitempty"`
	Robustness     []RobustnessRow                  `json:"robustness,omitempty"`
	RobustChecks   []RobustnessCheck                `json:"robustness_checks,omitempty"`
	Training       *trainingJSON                    `json:"training,omitempty"`
	Plots          []plotJSON                       `json:"plots,omitempty"`
	Generation     *Generation                      `json:"generation,omitempty"`
	Samples        *samplesJSON                     `json:"samples,omitempty"`
	Warnings       []string                         `json:"warnings"`
}

type calibrationJSON struct {
	Calibration
	NumBins int `json:"num_bins"`
}

type trainingJSON struct {
	Source  string               `json:"source"`
	Records int                  `json:"records"`
	XKey    string               `json:"x_key"`
	Final   map[string]jsonFloat `json:"final"`
}

type plotJSON struct {
	Name    string `json:"name"`
	Title   string `json:"title"`
	Section string `json:"section"`
	File    string `json:"file,omitempty"`
}

// Metrics returns the report's numbers in the metrics.json layout.
func (r *Report) Metrics() MetricsJSON {
	m := MetricsJSON{SchemaVersion: 1, Title: r.Title, Model: r.Model, Config: r.Config,
		Created: r.Created.Format(time.RFC3339), Classification: r.Classification,
		Robustness: r.Robustness, RobustChecks: r.RobustnessChecks, Warnings: append([]string{}, r.Warnings...),
		Generation: r.Generation, Samples: r.Samples.json()}
	if r.Calibration != nil {
		m.Calibration = &calibrationJSON{*r.Calibration, len(r.Calibration.Bins)}
	}
	if len(r.OOD) > 0 {
		m.OOD = map[string]map[string]OODMetrics{}
		for _, o := range r.OOD {
			if m.OOD[o.Set] == nil {
				m.OOD[o.Set] = map[string]OODMetrics{}
			}
			m.OOD[o.Set][o.Score] = o.OODMetrics
		}
	}
	if t := r.Training; t != nil {
		final := map[string]jsonFloat{}
		for k, v := range t.Final() {
			final[k] = jsonFloat(v)
		}
		m.Training = &trainingJSON{Source: t.Source, Records: len(t.Records), XKey: t.XKey(), Final: final}
	}
	for _, f := range r.Figures {
		m.Plots = append(m.Plots, plotJSON{Name: f.Name, Title: f.Title, Section: f.Section, File: f.File})
	}
	return m
}

// WriteJSON writes metrics.json, atomically. The keys, all stable snake_case:
//
//	schema_version                      1
//	title, model, created               strings (created is RFC 3339, UTC)
//	config                              the run's configuration, as given
//	classification.{accuracy,nll,n,num_classes}
//	calibration.{ece,mce,brier,nll,accuracy,n,num_bins}
//	calibration.bins[].{lo,hi,count,accuracy,confidence}   bins are (lo, hi]
//	ood.<set>.<score>.{auroc,aupr_in,aupr_out,fpr95,n_in,n_out}   score: "logqx", "maxprob", ...
//	robustness[].{model,norm,eps,steps,accuracy}           norm: "linf" or "l2"
//	robustness_checks[].{name,passed,detail}               sanity checks of the robustness rows
//	training.{source,records,x_key,final}                  final: last value of each logged field
//	plots[].{name,title,section,file}
//	generation.{feature_net,is_mean,is_std,fd,n,fd_eps_used}   from the samples folder (Generation)
//	samples.{dir,caption,files}                           the samples folder shown in the report
//	warnings                                               list of strings, possibly empty
//
// Accuracies, ECE, MCE and rates are fractions in [0, 1], not percentages.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r.Metrics(), "", "  ")
	if err != nil {
		return fmt.Errorf("metrics for %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}
