package experiment

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// Output files in the spec's out folder.
const (
	ResultsMarkdown = "results.md"
	ResultsJSON     = "results.json"
)

// Unit states in the results.
const (
	StatusDone      = "done"        // trained and evaluated with the spec's settings: in the tables
	StatusMissing   = "missing"     // not started
	StatusTraining  = "training"    // started, not complete (interrupted, or running now)
	StatusTrained   = "trained"     // complete, not (or not currently) evaluated
	StatusFailed    = "failed"      // the last attempt failed; see the note
	StatusOutOfDate = "out-of-date" // trained with other settings than the spec now gives
)

// Stat is a metric over the seeds of a run.
type Stat struct {
	Mean   float64   `json:"mean"`
	Std    *float64  `json:"std"` // sample standard deviation (n−1); null with one seed
	N      int       `json:"n"`
	Values []float64 `json:"values"`
	Seeds  []uint64  `json:"seeds"`
}

// Delta is a run's difference from the baseline run in one metric.
type Delta struct {
	Diff float64  `json:"diff"` // mean of the run − mean of the baseline
	SE   *float64 `json:"se"`   // √(s²_a/n_a + s²_b/n_b); null unless both have two seeds or more
}

// UnitStatus is where one seed of a run stands.
type UnitStatus struct {
	Seed   uint64 `json:"seed"`
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
}

// RunResult is one run of the grid over its seeds.
type RunResult struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Set         map[string]any   `json:"set"`
	Units       []UnitStatus     `json:"units"`
	Metrics     map[string]*Stat `json:"metrics"`
	Notes       []string         `json:"notes"`
	// Samples links one seed's sample grids (RUN/seed-SEED/samples); FeatureNets are the
	// networks that scored the samples of every seed.
	Samples     *SampleLinks `json:"samples,omitempty"`
	FeatureNets []string     `json:"feature_nets,omitempty"`
}

// PGDColumn is one attack setting of the robustness table.
type PGDColumn struct {
	Key   string  `json:"key"`
	Norm  string  `json:"norm"`
	Eps   float64 `json:"eps"`
	Label string  `json:"label"`
	Steps int     `json:"steps"`
}

// Results is what Aggregate writes to results.json, and renders as results.md.
type Results struct {
	SchemaVersion int               `json:"schema_version"`
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	Spec          string            `json:"spec"`
	Commands      map[string]string `json:"commands"`
	Generated     string            `json:"generated"`
	Out           string            `json:"out"`
	Base          map[string]any    `json:"base"`
	Seeds         []uint64          `json:"seeds"`
	Eval          map[string]any    `json:"eval"`
	Hardware      []string          `json:"hardware"`
	// Tables are the spec's tables in a paper's layout, written into results.md from Runs.
	Tables []PaperTable `json:"tables,omitempty"`
	// Wall times in seconds over every sitting recorded in the run directories, failed ones too.
	TrainSeconds float64 `json:"train_seconds"`
	// Diverged is whether any unit (done or not) rolled back from a divergence: the tables then
	// count each run's restarts.
	Diverged    bool    `json:"diverged"`
	EvalSeconds float64 `json:"eval_seconds"`
	FirstStart  string  `json:"first_start,omitempty"`
	LastEnd     string  `json:"last_end,omitempty"`
	Done        int     `json:"done"`
	Total       int     `json:"total"`

	OODSets   []string    `json:"ood_sets"`
	Scores    []string    `json:"scores"`
	PGD       []PGDColumn `json:"pgd"`
	PGDImages int         `json:"pgd_images"`

	Baseline string                       `json:"baseline,omitempty"`
	Runs     []RunResult                  `json:"runs"`
	Deltas   map[string]map[string]*Delta `json:"deltas,omitempty"`

	// Figures compare the runs side by side (OUT/figures); FigureNotes say why one is missing.
	Figures     []FigureResult `json:"figures,omitempty"`
	FigureNotes []string       `json:"figure_notes,omitempty"`

	trainCommand, evalCommand string
}

// Metric keys of RunResult.Metrics besides the per-set and per-attack ones.
const (
	KeyAccuracy     = "accuracy"      // classification.accuracy, a fraction
	KeyECE          = "ece"           // calibration.ece
	KeyNLL          = "nll"           // classification.nll
	KeyBrier        = "brier"         // calibration.brier
	KeyTrainSeconds = "train_seconds" // wall time of training, over all sittings
	KeyEvalSeconds  = "eval_seconds"
	KeyTrainImgPerS = "train_img_per_s" // images trained on / training wall time (validation included)
	KeyBestValAcc   = "best_val_acc"
	KeyEvalStep     = "eval_checkpoint_step" // step of the checkpoint evaluated
	KeyRestarts     = "restarts"             // divergences the run rolled back from (--on-divergence restart)
	KeyLogitNorm    = "final_logit_norm"     // mean ‖f(x)‖ of the last logged training step
)

// OODKey is the metric key of an OOD score's AUROC (what = "auroc") or FPR at 95% TPR ("fpr95").
func OODKey(set, score, what string) string { return "ood." + set + "." + score + "." + what }

// PGDKey is the metric key of PGD accuracy under one attack.
func PGDKey(norm string, eps float64, steps int) string {
	return fmt.Sprintf("pgd.%s.eps=%s.steps=%d", norm, epsText(eps), steps)
}

// epsText writes budgets of whole 255ths as k/255, the way the paper and the eval flags do.
func epsText(e float64) string {
	if k := e * 255; e > 0 && e < 1 && math.Abs(k-math.Round(k)) < 1e-9 {
		return fmt.Sprintf("%d/255", int(math.Round(k)))
	}
	return strconv.FormatFloat(e, 'g', -1, 64)
}

// metricsFile is eval's metrics.json (its one schema, eval.MetricsJSON), with the part of its
// "config" section (which the evaluation suite defines) that the tables use.
type metricsFile struct {
	eval.MetricsJSON
	Config struct {
		Eval struct {
			OOD  []string `json:"ood"`
			Test string   `json:"test"`
			PGD  struct {
				Images int `json:"images"`
			} `json:"pgd"`
		} `json:"eval"`
		Checkpoint struct {
			Step int `json:"step"`
		} `json:"checkpoint"`
	} `json:"config"`
}

// Aggregate reads every run directory of the spec (training nothing), writes OUT/results.md and
// OUT/results.json, and returns the results. Only units trained and evaluated with the spec's
// current settings enter the tables; the others are listed with their state.
func Aggregate(s *Spec) (*Results, error) {
	res := &Results{SchemaVersion: 1, Name: s.Name, Description: s.Description, Spec: displayPath(s.Path),
		Generated: time.Now().UTC().Format(time.RFC3339), Out: s.Out, Base: s.Base, Seeds: s.Seeds, Eval: s.Eval,
		Baseline: s.Baseline, Commands: map[string]string{}, Tables: s.Tables}
	args := shellWord(res.Spec)
	if s.Out != s.fileOut {
		args += " --out " + shellWord(s.Out)
	}
	res.Commands["run"] = "hdge-torch experiment run " + args
	res.Commands["aggregate"] = "hdge-torch experiment aggregate " + args
	hw := map[string]bool{}
	var first, last time.Time
	span := func(start time.Time, secs float64) {
		if start.IsZero() {
			return
		}
		if first.IsZero() || start.Before(first) {
			first = start
		}
		if end := start.Add(time.Duration(secs * float64(time.Second))); end.After(last) {
			last = end
		}
	}
	setOrder, pgdSeen := []string{}, map[string]PGDColumn{}
	key := s.evalKey()
	for _, r := range s.Runs {
		rr := RunResult{Name: r.Name, Description: r.Description, Set: r.Set, Metrics: map[string]*Stat{}, Notes: []string{}}
		for _, seed := range s.RunSeeds(r) {
			res.Total++
			cfg, err := s.config(r, seed)
			if err != nil {
				return nil, err
			}
			u := Unit{Run: r.Name, Seed: seed, Dir: cfg.Out, cfg: cfg}
			st, err := readState(u.Dir)
			if err != nil {
				return nil, err
			}
			if st != nil {
				for _, g := range st.Segments {
					res.TrainSeconds += g.Seconds
					hw[g.Hardware.String()] = true
					span(g.Started, g.Seconds)
				}
				if st.Eval != nil {
					res.EvalSeconds += st.Eval.Seconds
					hw[st.Eval.Hardware.String()] = true
					span(st.Eval.Started, st.Eval.Seconds)
				}
			}
			us := unitStatus(u, st, key)
			tlog, err := trainer.ReadTrainingLog(u.Dir)
			if err != nil {
				return nil, err
			}
			restarts := len(tlog.Restarts)
			if restarts > 0 {
				res.Diverged = true
			}
			rr.Units = append(rr.Units, us)
			if us.Status != StatusMissing {
				// Counted for runs still training or failed too: a divergence is news either way.
				if rr.Metrics[KeyRestarts] == nil {
					rr.Metrics[KeyRestarts] = &Stat{}
				}
				rr.Metrics[KeyRestarts].Values = append(rr.Metrics[KeyRestarts].Values, float64(restarts))
				rr.Metrics[KeyRestarts].Seeds = append(rr.Metrics[KeyRestarts].Seeds, seed)
			}
			if us.Status != StatusDone {
				if us.Status != StatusMissing {
					rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d %s: %s", seed, us.Status, us.Note))
				}
				continue
			}
			res.Done++
			m, err := readMetrics(filepath.Join(u.Dir, evalDir, suite.MetricsFile))
			if err != nil {
				return nil, err
			}
			sum, err := readSummary(u.Dir)
			if err != nil {
				return nil, err
			}
			if d := sum.Diverged; d != nil {
				rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d ended by divergence at step %d (%s) after %d restarts; it is in the tables at its best-validation checkpoint (validation accuracy %.2f %%)",
					seed, d.Step, d.Reason, d.Restarts, 100*sum.BestValAcc))
			}
			add := func(k string, v *float64) {
				if v == nil || math.IsNaN(*v) {
					return
				}
				if rr.Metrics[k] == nil {
					rr.Metrics[k] = &Stat{}
				}
				rr.Metrics[k].Values = append(rr.Metrics[k].Values, *v)
				rr.Metrics[k].Seeds = append(rr.Metrics[k].Seeds, seed)
			}
			if c := m.Classification; c != nil {
				add(KeyAccuracy, &c.Accuracy)
				add(KeyNLL, &c.NLL)
			}
			if c := m.Calibration; c != nil {
				add(KeyECE, &c.ECE)
				add(KeyBrier, &c.Brier)
			}
			for _, item := range m.Config.Eval.OOD {
				name, _, _ := strings.Cut(item, "=")
				if !slices.Contains(setOrder, name) {
					setOrder = append(setOrder, name)
				}
			}
			for _, set := range sortedKeys(m.OOD) {
				if !slices.Contains(setOrder, set) {
					setOrder = append(setOrder, set)
				}
				for score, o := range m.OOD[set] {
					if !slices.Contains(res.Scores, score) {
						res.Scores = append(res.Scores, score)
					}
					add(OODKey(set, score, "auroc"), &o.AUROC)
					add(OODKey(set, score, "fpr95"), &o.FPR95)
				}
			}
			for _, row := range m.Robustness {
				k := PGDKey(row.Norm, row.Eps, row.Steps)
				pgdSeen[k] = PGDColumn{Key: k, Norm: row.Norm, Eps: row.Eps, Label: epsText(row.Eps), Steps: row.Steps}
				add(k, &row.Accuracy)
			}
			res.PGDImages = max(res.PGDImages, m.Config.Eval.PGD.Images)
			for _, ch := range m.RobustChecks {
				if !ch.Passed {
					rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d: robustness check failed: %s (%s)", seed, ch.Name, ch.Detail))
				}
			}
			for _, w := range m.Warnings {
				rr.Notes = append(rr.Notes, fmt.Sprintf("seed %d: evaluation warning: %s", seed, w))
			}
			step := float64(m.Config.Checkpoint.Step)
			add(KeyEvalStep, &step)
			add(KeyBestValAcc, &sum.BestValAcc)
			secs := sum.Seconds
			imgs := float64(sum.Steps * cfg.BatchSize)
			if st.TrainSeconds() > 0 {
				secs, imgs = st.TrainSeconds(), float64(st.TrainImages())
			}
			add(KeyTrainSeconds, &secs)
			if secs > 0 && imgs > 0 {
				ips := imgs / secs
				add(KeyTrainImgPerS, &ips)
			}
			add(KeyEvalSeconds, &st.Eval.Seconds)
			add(KeyLogitNorm, tlog.LastLogitNorm)
			addSamples(s.Out, &rr, u, m.Config.Checkpoint.Step, add)
		}
		for _, st := range rr.Metrics {
			st.finish()
		}
		res.Runs = append(res.Runs, rr)
	}
	res.OODSets = setOrder
	slices.SortFunc(res.Scores, func(a, b string) int { return scoreRank(a) - scoreRank(b) })
	for _, c := range pgdSeen {
		res.PGD = append(res.PGD, c)
	}
	slices.SortFunc(res.PGD, func(a, b PGDColumn) int {
		if a.Norm != b.Norm {
			return normRank(a.Norm) - normRank(b.Norm)
		}
		if a.Eps != b.Eps {
			return cmpFloat(a.Eps, b.Eps)
		}
		return a.Steps - b.Steps
	})
	for h := range hw {
		res.Hardware = append(res.Hardware, h)
	}
	slices.Sort(res.Hardware)
	if !first.IsZero() {
		res.FirstStart, res.LastEnd = first.Format(time.RFC3339), last.Format(time.RFC3339)
	}
	if s.Baseline != "" {
		res.deltas()
	}
	res.trainCommand, res.evalCommand = commandTemplates(s)
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return nil, err
	}
	if err := res.writeFigures(s); err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(s.Out, ResultsJSON), res); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(s.Out, ResultsMarkdown), []byte(res.Markdown())); err != nil {
		return nil, err
	}
	return res, nil
}

// unitStatus says whether a unit's results are current for the spec, and if not why.
func unitStatus(u Unit, st *State, evalKey string) UnitStatus {
	us := UnitStatus{Seed: u.Seed}
	old, err := readConfigIfAny(u.Dir)
	switch {
	case err != nil:
		us.Status, us.Note = StatusFailed, err.Error()
		return us
	case old == nil:
		us.Status = StatusMissing
		if st != nil && st.Failed != "" {
			us.Status, us.Note = StatusFailed, st.Failed
		}
		return us
	}
	if diff := configDiff(*old, u.cfg); len(diff) > 0 {
		us.Status, us.Note = StatusOutOfDate, "trained with other settings: "+strings.Join(diff, "; ")
		return us
	}
	sum, err := readSummary(u.Dir)
	switch {
	case !old.SameLength(u.cfg):
		us.Status = StatusOutOfDate
		how := "run again to lengthen it"
		if why := lengthChange(*old, u.cfg); why != "" {
			how = why + ": move the folder away and run again"
		}
		us.Note = fmt.Sprintf("trained for --epochs %d --steps %d, the spec asks --epochs %d --steps %d (%s)", old.Epochs, old.Steps, u.cfg.Epochs, u.cfg.Steps, how)
	case err != nil && st != nil && st.Failed != "":
		us.Status, us.Note = StatusFailed, st.Failed
	case err != nil:
		us.Status, us.Note = StatusTraining, "no summary.json yet (interrupted, or training now)"
	case st != nil && st.Failed != "" && (st.Eval == nil || !exists(filepath.Join(u.Dir, evalDir, suite.MetricsFile))):
		us.Status, us.Note = StatusFailed, st.Failed
	case !exists(filepath.Join(u.Dir, evalDir, suite.MetricsFile)):
		us.Status, us.Note = StatusTrained, "not evaluated yet"
	case st == nil || st.Eval == nil:
		us.Status, us.Note = StatusTrained, "evaluated outside the runner (no record in "+StateFile+"); run the spec again to evaluate it with its settings"
	case st.Eval.Settings != evalKey:
		us.Status, us.Note = StatusTrained, "evaluated with other eval settings than the spec now gives"
	case st.Eval.TrainSteps != sum.Steps:
		us.Status, us.Note = StatusTrained, fmt.Sprintf("evaluated at step %d, trained to step %d since", st.Eval.TrainSteps, sum.Steps)
	default:
		us.Status = StatusDone
	}
	return us
}

// readConfigIfAny returns nil, nil for a run directory without config.json.
func readConfigIfAny(dir string) (*trainer.Config, error) {
	c, err := trainer.ReadConfig(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func readMetrics(path string) (*metricsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m metricsFile
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

func (st *Stat) finish() {
	n := len(st.Values)
	st.N = n
	var sum float64
	for _, v := range st.Values {
		sum += v
	}
	st.Mean = sum / float64(n)
	if n > 1 {
		var ss float64
		for _, v := range st.Values {
			ss += (v - st.Mean) * (v - st.Mean)
		}
		sd := math.Sqrt(ss / float64(n-1))
		st.Std = &sd
	}
}

func (res *Results) run(name string) *RunResult {
	for i := range res.Runs {
		if res.Runs[i].Name == name {
			return &res.Runs[i]
		}
	}
	return nil
}

func (res *Results) deltas() {
	base := res.run(res.Baseline)
	res.Deltas = map[string]map[string]*Delta{}
	for _, r := range res.Runs {
		if r.Name == res.Baseline {
			continue
		}
		d := map[string]*Delta{}
		for k, a := range r.Metrics {
			b := base.Metrics[k]
			if b == nil {
				continue
			}
			dd := &Delta{Diff: a.Mean - b.Mean}
			if a.Std != nil && b.Std != nil {
				se := math.Sqrt(*a.Std**a.Std/float64(a.N) + *b.Std**b.Std/float64(b.N))
				dd.SE = &se
			}
			d[k] = dd
		}
		res.Deltas[r.Name] = d
	}
}

func scoreRank(s string) int {
	switch s {
	case "logqx":
		return 0
	case "maxprob":
		return 1
	}
	return 2
}

func normRank(n string) int {
	if n == "linf" {
		return 0
	}
	if n == "l2" {
		return 1
	}
	return 2
}

func cmpFloat(a, b float64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// displayPath shows a spec path relative to the working folder when it lies inside it, as the
// command that produced the results would have been typed from there.
func displayPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}
