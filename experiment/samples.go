package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/gen"
	"go.uber.org/zap"
)

// Metric keys of the samples in RUN/samples (`hdge-torch sample`), by the network that scored
// them: a classifier's softmax and features, or pytorch-fid's Inception-v3. The two kinds are
// kept apart so that a mean never mixes them.
const (
	KeyISClassifier = "is_classifier" // IS (classifier)
	KeyFDClassifier = "fd_classifier" // FD (classifier features)
	// KeyOffRange is the fraction of the samples' values outside the data's [-1, 1] (sample.json).
	KeyOffRange = "samples_off_range"
	KeyIS       = "is"  // IS, Inception-v3
	KeyFID      = "fid" // FID, Inception-v3
)

// SampleLinks are the picture files of one seed's samples, relative to the results' folder.
type SampleLinks struct {
	Seed       uint64 `json:"seed"`
	Grid       string `json:"grid"`
	Top        string `json:"top,omitempty"`
	FeatureNet string `json:"feature_net,omitempty"`
}

// generationKeys are the metric keys of a generation section's IS and Fréchet distance.
func generationKeys(g *eval.Generation) (is, fd string) {
	if g.FeatureNet == eval.FeatureNetInception {
		return KeyIS, KeyFID
	}
	return KeyISClassifier, KeyFDClassifier
}

// addSamples reads one done unit's samples folder, when it has one: the IS and Fréchet distance
// go to the run's metrics, the first seed's pictures to its links. A damaged folder is a note,
// not an error: the rest of the results stand without it.
func addSamples(out string, rr *RunResult, u Unit, evalStep int, add func(string, *float64)) {
	dir := filepath.Join(u.Dir, suite.SamplesDir)
	grid := filepath.Join(dir, gen.GridFile)
	if _, err := os.Stat(grid); err != nil {
		return
	}
	g, err := suite.ReadGeneration(filepath.Join(dir, gen.MetricsFile))
	if err != nil {
		rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d: samples left out: %v", u.Seed, err))
		return
	}
	if b, err := os.ReadFile(filepath.Join(dir, gen.InfoFile)); err == nil {
		var info gen.Info
		if json.Unmarshal(b, &info) == nil && info.Step > 0 && evalStep > 0 && info.Step != evalStep {
			rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d: the samples were drawn from the checkpoint of step %d, the evaluation's is of step %d", u.Seed, info.Step, evalStep))
		}
		var off struct {
			OutsideRange *float64 `json:"outside_data_range"` // absent in sample.json files of earlier versions
		}
		if json.Unmarshal(b, &off) == nil && off.OutsideRange != nil {
			add(KeyOffRange, off.OutsideRange)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d: %v", u.Seed, err))
	}
	if g != nil {
		is, fd := generationKeys(g)
		add(is, &g.ISMean)
		add(fd, &g.FD)
		if !slices.Contains(rr.FeatureNets, g.FeatureNet) {
			rr.FeatureNets = append(rr.FeatureNets, g.FeatureNet)
		}
	}
	if rr.Samples == nil {
		l := &SampleLinks{Seed: u.Seed, Grid: relLink(out, grid)}
		if top := filepath.Join(dir, gen.TopFile); exists(top) {
			l.Top = relLink(out, top)
		}
		if g != nil {
			l.FeatureNet = g.FeatureNet
		}
		rr.Samples = l
	}
}

// relLink names a file from the results' folder, with forward slashes, as markdown links want.
func relLink(out, path string) string {
	rel, err := filepath.Rel(out, path)
	if err != nil {
		return filepath.ToSlash(path)
	}
	return filepath.ToSlash(rel)
}

// samplesMarkdown is the results.md section of the runs that have samples: their IS and
// Fréchet distance under the names the feature network allows, and links to one seed's grids.
func (res *Results) samplesMarkdown(p func(string, ...any)) {
	type col struct{ title, key string }
	var cols []col
	has := func(k string) bool {
		return slices.ContainsFunc(res.Runs, func(r RunResult) bool { return r.Metrics[k] != nil })
	}
	if has(KeyISClassifier) || has(KeyFDClassifier) {
		cols = append(cols, col{"IS (classifier)", KeyISClassifier}, col{"FD (classifier features)", KeyFDClassifier})
	}
	if has(KeyIS) || has(KeyFID) {
		cols = append(cols, col{"IS", KeyIS}, col{"FID", KeyFID})
	}
	offRange := has(KeyOffRange)
	var runs []RunResult
	for _, r := range res.Runs {
		if r.Samples != nil || slices.ContainsFunc(cols, func(c col) bool { return r.Metrics[c.key] != nil }) {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return
	}
	p("### Samples\n\n")
	p("SGLD samples of each run's model (`hdge-torch sample`, written to RUN/seed-SEED/samples), scored against the test split: " +
		"mean ± sample standard deviation over the seeds sampled.")
	if has(KeyISClassifier) || has(KeyFDClassifier) {
		p(" IS (classifier) and FD (classifier features) are computed in a classifier's softmax and penultimate features, " +
			"not in pytorch-fid's Inception-v3: they rank the runs of this grid and are not comparable with published scores.")
	}
	if offRange {
		p(" Off range: the share of the samples' values outside the data's [−1, 1] (SGLD is not clamped); " +
			"chains that drift off it inflate the Fréchet distance.")
	}
	p("\n\n| run | seeds |")
	for _, c := range cols {
		p(" %s |", c.title)
	}
	extra := 0
	if offRange {
		p(" off range (%%) |")
		extra = 1
	}
	p(" samples |\n|---|---|%s---|\n", strings.Repeat("---|", len(cols)+extra))
	var nets []string
	for _, r := range runs {
		n := 0
		for _, c := range cols {
			if s := r.Metrics[c.key]; s != nil {
				n = max(n, s.N)
			}
		}
		p("| %s | %d |", r.Name, n)
		for _, c := range cols {
			p(" %s |", fmtStat(r.Metrics[c.key], 1, 2))
		}
		if offRange {
			p(" %s |", fmtStat(r.Metrics[KeyOffRange], 100, 1))
		}
		links := "–"
		if l := r.Samples; l != nil {
			links = fmt.Sprintf("[grid, seed %d](%s)", l.Seed, l.Grid)
			if l.Top != "" {
				links += fmt.Sprintf(", [most confident](%s)", l.Top)
			}
		}
		p(" %s |\n", links)
		for _, fn := range r.FeatureNets {
			nets = append(nets, r.Name+": "+fn)
		}
	}
	p("\n")
	if len(nets) > 0 {
		p("Feature networks: %s.\n\n", cell(strings.Join(nets, "; ")))
	}
}

// newSamples is the samples folder of a done evaluation whose report does not show them yet
// (samples drawn after the run was evaluated, or drawn again): named explicitly, or the run's
// RUN/samples when `hdge-torch sample` scored them. "" when there is nothing to add.
func newSamples(runDir, named, metrics string) string {
	dir := named
	if dir == "" {
		dir = filepath.Join(runDir, suite.SamplesDir)
	}
	if !exists(filepath.Join(dir, gen.GridFile)) {
		return ""
	}
	g, err := suite.ReadGeneration(filepath.Join(dir, gen.MetricsFile))
	if err != nil || g == nil && named == "" {
		return "" // left as it is; the evaluation itself would leave it out
	}
	m, err := readMetrics(metrics)
	if err != nil {
		return ""
	}
	if g == nil && m.Samples != nil || g != nil && m.Generation != nil && *m.Generation == *g {
		return ""
	}
	return dir
}

// addSamplesToEval re-scores a done evaluation's export with the samples in dir, so that its
// report.html and metrics.json show them; the model is not run again.
func (r *runner) addSamplesToEval(ctx context.Context, out, dir string, log *zap.Logger) error {
	elog, closeLog, err := teeFile(log, filepath.Join(out, "eval.log"))
	if err != nil {
		return err
	}
	defer closeLog()
	cfg := r.spec.eval.cfg
	cfg.Checkpoint, cfg.Logits, cfg.Out, cfg.Samples, cfg.Log, cfg.Progress = "", filepath.Join(out, suite.LogitsDir), out, dir, elog, r.opts.Progress
	cfg.OOD, cfg.PGD, cfg.Scores = nil, suite.PGD{}, nil // re-scored as exported (pxsim only where it was)
	log.Info("evaluation done before the samples: adding them to its report", zap.String("samples", dir))
	if _, err := suite.Run(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: adding the samples of %s", ErrInterrupted, dir)
		}
		// The evaluation stands as it was; only its report lacks the samples.
		log.Warn("the samples could not be added to the evaluation's report", zap.String("samples", dir), zap.Error(err))
	}
	return nil
}
