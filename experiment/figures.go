package experiment

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/suite"
)

// FiguresDir is the folder of the side-by-side figures in the spec's out folder.
const FiguresDir = "figures"

// Kinds of figure.
const (
	FigureRobustness  = "robustness"  // accuracy against ε, one line per run (the paper's Figure 4)
	FigureReliability = "reliability" // one reliability diagram per run (Figure 2)
	FigureLogQX       = "logqx"       // log q(x) histograms, in-distribution against one OOD set, one panel per run (Figure 1)
)

// FigureResult is one figure that compares the runs: its file, relative to the results' folder,
// what it shows, the runs drawn (in order) and those left out, with why.
type FigureResult struct {
	Kind    string   `json:"kind"`
	File    string   `json:"file"`
	Title   string   `json:"title"`
	Caption string   `json:"caption"`
	Runs    []string `json:"runs"`
	LeftOut []string `json:"left_out,omitempty"`
	// Panels and Columns give the layout of a figure with one panel per run.
	Panels  int `json:"panels"`
	Columns int `json:"columns"`
}

// figure files are named by these patterns only, so that one no longer drawn can be removed
// without touching anything else a user put in the folder.
var figurePatterns = []string{"robustness_*.png", "reliability.png", "logqx_*.png"}

// figureRun is what one run contributes to the figures.
type figureRun struct {
	name   string
	colour int
	seeds  []uint64 // the seeds done, in spec order
	dir    func(seed uint64) string
}

// leftOut gathers the runs left out of one figure by reason, for its caption.
type leftOut struct {
	order   []string
	reasons map[string][]string
}

func (l *leftOut) add(reason, run string) {
	if l.reasons == nil {
		l.reasons = map[string][]string{}
	}
	if _, ok := l.reasons[reason]; !ok {
		l.order = append(l.order, reason)
	}
	l.reasons[reason] = append(l.reasons[reason], run)
}

func (l leftOut) clone() leftOut {
	c := leftOut{order: slices.Clone(l.order), reasons: map[string][]string{}}
	for k, v := range l.reasons {
		c.reasons[k] = slices.Clone(v)
	}
	return c
}

func (l *leftOut) list() []string {
	var out []string
	for _, r := range l.order {
		for _, n := range l.reasons[r] {
			out = append(out, n+" ("+r+")")
		}
	}
	return out
}

func (l *leftOut) sentence() string {
	var parts []string
	for _, r := range l.order {
		parts = append(parts, r+": "+strings.Join(l.reasons[r], ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return " Left out, " + strings.Join(parts, "; ") + "."
}

// writeFigures draws the figures that compare the runs into OUT/figures from the evaluations of
// the units done, records them in res.Figures and removes figures no longer drawn. A figure that
// cannot be drawn from damaged files becomes a note; only failing to write is an error.
func (res *Results) writeFigures(s *Spec) error {
	dir := filepath.Join(s.Out, FiguresDir)
	var runs []figureRun
	var notYet leftOut
	for i, r := range res.Runs {
		fr := figureRun{name: r.Name, colour: i, dir: func(seed uint64) string { return s.RunDir(r.Name, seed) }}
		for _, u := range r.Units {
			if u.Status == StatusDone {
				fr.seeds = append(fr.seeds, u.Seed)
			}
		}
		if len(fr.seeds) == 0 {
			notYet.add("not yet evaluated", r.Name)
		}
		runs = append(runs, fr)
	}
	var figs []drawnFigure
	note := func(format string, args ...any) {
		res.FigureNotes = append(res.FigureNotes, fmt.Sprintf(format, args...))
	}

	for _, norm := range pgdNorms(res.PGD) {
		f, err := res.robustnessFigure(runs, notYet, norm)
		if err != nil {
			note("robustness figure (%s) left out: %v", norm, err)
		} else if f != nil {
			figs = append(figs, *f)
		}
	}
	if f, err := res.reliabilityFigure(runs, notYet); err != nil {
		note("reliability figure left out: %v", err)
	} else if f != nil {
		figs = append(figs, *f)
	}
	hist, err := res.logQXFigures(runs, notYet)
	if err != nil {
		note("log q(x) figures left out: %v", err)
	}
	figs = append(figs, hist...)

	res.Figures = nil
	keep := map[string]bool{}
	if len(figs) > 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, f := range figs {
		path := filepath.Join(dir, filepath.Base(f.File))
		keep[filepath.Base(f.File)] = true
		// Unchanged figures are not rewritten, so that aggregating again changes nothing on disk.
		if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, f.png) {
			if err := writeFileAtomic(path, f.png); err != nil {
				return err
			}
		}
		res.Figures = append(res.Figures, f.FigureResult)
	}
	for _, pat := range figurePatterns {
		old, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range old {
			if !keep[filepath.Base(p)] {
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("removing a figure no longer drawn: %w", err)
				}
			}
		}
	}
	return nil
}

func pgdNorms(cols []PGDColumn) []string {
	var norms []string
	for _, c := range cols {
		if !slices.Contains(norms, c.Norm) {
			norms = append(norms, c.Norm)
		}
	}
	return norms
}

func figureFile(name string) string { return FiguresDir + "/" + name }

// drawnFigure is a figure and its PNG, before it is written.
type drawnFigure struct {
	FigureResult
	png []byte
}

// robustnessFigure draws the robustness table's numbers of one norm: each run's mean over its
// seeds, a band of ±1 std where two seeds or more are done.
func (res *Results) robustnessFigure(runs []figureRun, notYet leftOut, norm string) (*drawnFigure, error) {
	var cols []PGDColumn
	for _, c := range res.PGD {
		if c.Norm == norm {
			cols = append(cols, c)
		}
	}
	var steps []int
	for _, c := range cols {
		if !slices.Contains(steps, c.Steps) {
			steps = append(steps, c.Steps)
		}
	}
	slices.Sort(steps)
	left := notYet.clone()
	var curves []eval.RobustnessCurve
	var drawnRuns []string
	for i, r := range runs {
		if len(r.seeds) == 0 {
			continue
		}
		rr := res.Runs[i]
		found := false
		for _, st := range steps {
			c := eval.RobustnessCurve{Name: r.name, Steps: st, Colour: r.colour}
			n := 0
			for _, col := range cols {
				m := rr.Metrics[col.Key]
				if col.Steps != st || m == nil || m.N == 0 {
					continue
				}
				pt := eval.RobustnessPoint{Eps: col.Eps, Accuracy: m.Mean, N: m.N, Std: math.NaN()}
				if m.Std != nil {
					pt.Std = *m.Std
				}
				n = max(n, m.N)
				c.Points = append(c.Points, pt)
			}
			if len(c.Points) > 0 {
				c.Name = fmt.Sprintf("%s (%s)", r.name, plural(n, "seed"))
				curves = append(curves, c)
				found = true
			}
		}
		if found {
			drawnRuns = append(drawnRuns, r.name)
		} else {
			left.add("no "+eval.NormTitle(norm)+" PGD results", r.name)
		}
	}
	if len(curves) == 0 {
		return nil, nil
	}
	p, err := eval.RobustnessComparePlot(curves, norm)
	if err != nil {
		return nil, err
	}
	b, err := eval.RenderPNG(p, eval.FigureWidth, eval.FigureHeight, eval.FigureDPI)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("PGD accuracy (%%) under %s attacks", eval.NormTitle(norm))
	if len(steps) == 1 {
		what = fmt.Sprintf("%d-step %s", steps[0], what)
	}
	if res.PGDImages > 0 {
		what += fmt.Sprintf(" on the first %d test images", res.PGDImages)
	}
	f := FigureResult{Kind: FigureRobustness, File: figureFile("robustness_" + norm + ".png"),
		Title: "Robustness, PGD " + eval.NormTitle(norm), Runs: drawnRuns, LeftOut: left.list(), Panels: 1, Columns: 1}
	f.Caption = fmt.Sprintf("%s against ε, one line per run: the mean over the seeds done (counted in the legend), "+
		"with a band (a bar for a single ε) of ±1 sample standard deviation where two seeds or more are done; "+
		"the numbers of the robustness table, from robustness in RUN/seed-SEED/eval/metrics.json.%s", what, left.sentence())
	return &drawnFigure{f, b}, nil
}

// reliabilityFigure draws one reliability diagram per run from the bins in metrics.json, pooled
// over the seeds done.
func (res *Results) reliabilityFigure(runs []figureRun, notYet leftOut) (*drawnFigure, error) {
	left := notYet.clone()
	var plots []*plot.Plot
	var drawnRuns, how []string
	testSet, numBins := "", 0
	for _, r := range runs {
		if len(r.seeds) == 0 {
			continue
		}
		var cals []eval.Calibration
		var seeds []uint64
		for _, seed := range r.seeds {
			m, err := readMetrics(filepath.Join(r.dir(seed), evalDir, suite.MetricsFile))
			if err != nil {
				return nil, err
			}
			if m.Calibration == nil || len(m.Calibration.Bins) == 0 {
				continue
			}
			cals = append(cals, m.Calibration.Calibration)
			seeds = append(seeds, seed)
			if testSet == "" {
				testSet = m.Config.Eval.Test
			}
		}
		if len(cals) == 0 {
			left.add("no calibration bins", r.name)
			continue
		}
		c, err := eval.PoolCalibration(cals...)
		used := seeds
		if err != nil {
			// Bins of other edges cannot be added up: show the first seed alone and say so.
			c, used = cals[0], seeds[:1]
			how = append(how, fmt.Sprintf("%s shows seed %d alone (%v)", r.name, seeds[0], err))
		}
		numBins = max(numBins, len(c.Bins))
		title := fmt.Sprintf("%s, %s: ECE %.2f%%", r.name, seedList(used), 100*c.ECE)
		p, err := eval.ReliabilityPlot(c, title)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		plots = append(plots, p)
		drawnRuns = append(drawnRuns, r.name)
	}
	if len(plots) == 0 {
		return nil, nil
	}
	cols := eval.PanelColumns(len(plots))
	b, err := eval.RenderPanels(plots, cols, eval.FigureWidth, eval.FigureHeight, eval.FigureDPI)
	if err != nil {
		return nil, err
	}
	of := "test images"
	if testSet != "" {
		of = testSet + " test images"
	}
	f := FigureResult{Kind: FigureReliability, File: figureFile("reliability.png"), Title: "Reliability diagrams",
		Runs: drawnRuns, LeftOut: left.list(), Panels: len(plots), Columns: cols}
	f.Caption = fmt.Sprintf("Reliability diagrams of the %s, one panel per run: the accuracy in each of %d confidence bins (blue bars, red the gap "+
		"to the bin's mean confidence) against the diagonal of perfect calibration, from calibration.bins in RUN/seed-SEED/eval/metrics.json "+
		"pooled over the seeds done (bin counts added up; the ECE in each title is recomputed from the pooled bins).", of, numBins)
	if len(how) > 0 {
		f.Caption += " " + strings.Join(how, "; ") + "."
	}
	f.Caption += left.sentence()
	return &drawnFigure{f, b}, nil
}

// logQXFigures draws, for each OOD set, one panel per run with the histogram of log q(x) over the
// in-distribution test images against the set, from the logits the first done seed exported, with
// the same code that draws each evaluation's hist_<set>_logqx.png.
func (res *Results) logQXFigures(runs []figureRun, notYet leftOut) ([]drawnFigure, error) {
	if len(res.OODSets) == 0 {
		return nil, nil
	}
	type source struct {
		seed uint64
		dir  string
		idx  *suite.Index
		in   []float64
		name string
	}
	srcs := map[string]*source{}
	left := notYet.clone()
	for _, r := range runs {
		if len(r.seeds) == 0 {
			continue
		}
		// The first seed done that kept its export: an evaluation re-scored with --logits, or one
		// whose logits were deleted to save space, has none.
		seed, dir := uint64(0), ""
		for _, sd := range r.seeds {
			if d := filepath.Join(r.dir(sd), evalDir, suite.LogitsDir); exists(filepath.Join(d, suite.IndexFile)) {
				seed, dir = sd, d
				break
			}
		}
		if dir == "" {
			left.add("no exported logits", r.name)
			continue
		}
		idx, err := suite.ReadIndex(dir)
		if err != nil {
			return nil, err
		}
		in, err := idx.SetLogits(dir, suite.TestSetName)
		if err != nil {
			return nil, err
		}
		sIn, err := eval.LogQX(in)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Source, err)
		}
		srcs[r.name] = &source{seed: seed, dir: dir, idx: idx, in: sIn, name: idx.Test.Dataset + " (in)"}
	}
	var out []drawnFigure
	for _, set := range res.OODSets {
		setLeft := left.clone()
		var plots []*plot.Plot
		var drawnRuns, used []string
		testSet := ""
		for _, r := range runs {
			src := srcs[r.name]
			if src == nil {
				continue
			}
			if !slices.ContainsFunc(src.idx.OOD, func(e suite.SetEntry) bool { return e.Name == set }) {
				setLeft.add(fmt.Sprintf("seed %d has no logits of %s", src.seed, set), r.name)
				continue
			}
			l, err := src.idx.SetLogits(src.dir, set)
			if err != nil {
				return nil, err
			}
			sOut, err := eval.LogQX(l)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", l.Source, err)
			}
			p, m, err := eval.OODHistogramPlot(src.name, set, string(eval.ScoreLogQX), src.in, sOut)
			if err != nil {
				return nil, fmt.Errorf("%s seed %d: %w", r.name, src.seed, err)
			}
			p.Title.Text = fmt.Sprintf("%s, seed %d: AUROC %.3f", r.name, src.seed, m.AUROC)
			plots = append(plots, p)
			drawnRuns = append(drawnRuns, r.name)
			used = append(used, fmt.Sprintf("%s seed %d", r.name, src.seed))
			testSet = cmp.Or(src.idx.Test.Dataset, "in-distribution")
		}
		if len(plots) == 0 {
			continue
		}
		cols := eval.PanelColumns(len(plots))
		b, err := eval.RenderPanels(plots, cols, eval.FigureWidth, eval.FigureHeight, eval.FigureDPI)
		if err != nil {
			return nil, err
		}
		f := FigureResult{Kind: FigureLogQX, File: figureFile("logqx_" + set + ".png"), Title: "log q(x): " + testSet + " against " + set,
			Runs: drawnRuns, LeftOut: setLeft.list(), Panels: len(plots), Columns: cols}
		f.Caption = fmt.Sprintf("Histograms of log q(x), the logsumexp of the logits, over the %s test images (blue) against %s (orange), "+
			"each normalised to a density, one panel per run with the AUROC of log q(x) in its title; from the logits exported by the first seed done "+
			"of each run (%s: RUN/seed-SEED/eval/logits/test.npy and %s.npy).%s",
			testSet, set, strings.Join(used, ", "), set, setLeft.sentence())
		out = append(out, drawnFigure{f, b})
	}
	return out, nil
}

func seedList(seeds []uint64) string {
	parts := make([]string, len(seeds))
	for i, s := range seeds {
		parts[i] = strconv.FormatUint(s, 10)
	}
	if len(seeds) == 1 {
		return "seed " + parts[0]
	}
	return "seeds " + strings.Join(parts, ", ") + " pooled"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// figuresMarkdown is the results.md section of the figures: each one's caption, then the image.
func (res *Results) figuresMarkdown(p func(string, ...any)) {
	if len(res.Figures) == 0 && len(res.FigureNotes) == 0 {
		return
	}
	p("### Figures\n\n")
	for _, f := range res.Figures {
		p("%s\n\n![%s](%s)\n\n", f.Caption, f.Title, f.File)
	}
	for _, n := range res.FigureNotes {
		p("- %s\n", cell(n))
	}
	if len(res.FigureNotes) > 0 {
		p("\n")
	}
}
