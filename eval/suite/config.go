package suite

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/attack"
	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
)

// Suite names.
const (
	Classify    = "classify"
	OOD         = "ood"
	Calibration = "calibration"
	Robustness  = "robustness"
)

// AllSuites lists every suite, in the order they run.
var AllSuites = []string{Classify, OOD, Calibration, Robustness}

// Score names besides eval's logqx and maxprob.
const ScoreGradNorm = attack.ScoreGradNorm

// AllScores lists the OOD scores; gradnorm needs the model, so it is exported with the logits.
var AllScores = []string{string(eval.ScoreLogQX), string(eval.ScoreMaxProb), string(eval.ScorePXSim), ScoreGradNorm}

// DefaultScores are the two scores of the paper's Table 1.
var DefaultScores = []string{string(eval.ScoreLogQX), string(eval.ScoreMaxProb)}

// Synthetic OOD sets, derived from the in-distribution test set or drawn at random.
const (
	SetInterp   = "interp"
	SetUniform  = "uniform"
	SetGaussian = "gaussian"
)

// TestSetName is the in-distribution set's name in the logits folder; no OOD set may take it.
const TestSetName = "test"

// Config is one evaluation. Either Checkpoint (evaluate a model) or Logits (re-score an earlier
// export) is set.
type Config struct {
	Checkpoint string // run directory or checkpoint file
	Logits     string // folder written by an earlier evaluation (OUT/logits)
	Out        string // where metrics.json, report.html, the PNGs and (when exporting) logits/ go
	// Samples is a folder written by `hdge-torch sample` to show in the report; "" looks in
	// RUN/samples and Out for one whose metrics.json has a generation section.
	Samples string

	DataDir  string    // searched first for named datasets (default: the run's data directory)
	Test     string    // in-distribution test set (default: the dataset the model was trained on)
	OOD      []SetSpec // nil: DefaultOOD for the test set, each skipped when its files are absent
	OODLimit int       // images per OOD set; 0 means as many as the test set has

	Suites []string // nil: every suite the data allows
	Scores []string // nil: DefaultScores
	// PXSimWhereQueued leaves pxsim out, with a log line, for a checkpoint that keeps no HDGE
	// queue instead of refusing it: an experiment's one list of scores covers runs of every
	// objective (CE, JEM, SupCon beside HDGE).
	PXSimWhereQueued bool

	PGD PGD

	BatchSize int
	Threads   int
	Device    string // "" keeps the run's device
	Seed      uint64 // test-time noise, Interp pairs, noise sets, PGD random starts
	// Precision of the logits export ("" or fp32, auto, bf16); attacks always run in fp32.
	Precision string

	Log *zap.Logger
	// Progress, when non-nil, receives progress bars (a terminal); otherwise progress is logged.
	Progress io.Writer
}

// PGD is the robustness sweep: every norm × ε × steps combination is one attack.
type PGD struct {
	Norms       []string             // "linf", "l2"
	Eps         map[string][]float64 // budgets per norm, in pixel space [0, 1]
	Steps       []int                // several values show whether more steps help (they must not)
	StepSize    float64              // 0: 2.5·ε/steps
	Restarts    int
	RandomStart bool
	Limit       int // test images attacked: the first Limit (0: all)
}

// DefaultPGD is a short sweep that runs in minutes on a CPU for a small model.
func DefaultPGD() PGD {
	return PGD{
		Norms: []string{"linf", "l2"},
		Eps: map[string][]float64{
			"linf": {0, 1.0 / 255, 2.0 / 255, 4.0 / 255, 8.0 / 255},
			"l2":   {0, 0.25, 0.5, 1},
		},
		Steps: []int{10}, Restarts: 1, RandomStart: true, Limit: 500,
	}
}

// InputError is a problem with what the user asked for (a flag's value, a file it names), as
// opposed to a failure while running.
type InputError struct {
	Flag string
	Err  error
}

func (e *InputError) Error() string { return "--" + e.Flag + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(flag, format string, args ...any) error {
	return &InputError{Flag: flag, Err: fmt.Errorf(format, args...)}
}

// SetSpec is one OOD set: a named dataset, FORMAT:PATH, or interp, uniform or gaussian.
type SetSpec struct {
	Name string // metrics key and file stem
	Spec string // what Load (or the synthetic generator) is given
	// Optional sets are skipped, with a log line, when their files are not found (the defaults).
	Optional bool
}

// Synthetic reports whether the set is derived rather than read from files.
func (s SetSpec) Synthetic() bool {
	return s.Spec == SetInterp || s.Spec == SetUniform || s.Spec == SetGaussian
}

var setName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// List splits a comma-separated flag value, dropping blanks.
func List(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseOOD reads --ood: comma-separated items, each a dataset name (mnist, cifar10, ...), FORMAT:PATH
// (idx:DIR, cifar10:DIR, cifar100:DIR, svhn:FILE, folder:DIR), interp, uniform or gaussian, and
// optionally NAME=SPEC to choose the name it is reported under. A FORMAT:PATH set is named after the
// last element of its path.
func ParseOOD(s string) ([]SetSpec, error) {
	var out []SetSpec
	for _, item := range List(s) {
		name, spec, named := strings.Cut(item, "=")
		if !named {
			spec = item
			name = item
			if format, path, ok := strings.Cut(item, ":"); ok && slices.Contains(data.KnownFormats(), format) {
				name = slug(lastElem(path))
			}
		}
		name, spec = strings.TrimSpace(name), strings.TrimSpace(spec)
		if spec == "" {
			return nil, inputErr("ood", "%q: empty dataset after %q", item, name+"=")
		}
		if !setName.MatchString(name) {
			return nil, inputErr("ood", "%q: set name %q must be lowercase letters, digits, '.', '_' or '-' (use NAME=SPEC)", item, name)
		}
		if name == TestSetName {
			return nil, inputErr("ood", "%q: the name %q is reserved for the in-distribution test set (use NAME=SPEC)", item, name)
		}
		for _, o := range out {
			if o.Name == name {
				return nil, inputErr("ood", "two sets are named %q (use NAME=SPEC to tell them apart)", name)
			}
		}
		out = append(out, SetSpec{Name: name, Spec: spec})
	}
	return out, nil
}

func lastElem(path string) string {
	path = strings.TrimRight(path, "/")
	if i := strings.LastIndex(path, "/"); i >= 0 {
		path = path[i+1:]
	}
	return strings.TrimSuffix(path, ".mat")
}

var notSlug = regexp.MustCompile(`[^a-z0-9_.-]+`)

func slug(s string) string {
	s = strings.Trim(notSlug.ReplaceAllString(strings.ToLower(s), "_"), "_.-")
	if s == "" {
		return "set"
	}
	return s
}

// DefaultOOD is the OOD list for an in-distribution dataset: the usual neighbours of the paper and
// JEM, then interp and both noise sets. The named datasets are optional: skipped when absent.
func DefaultOOD(testDataset string) []SetSpec {
	var named []string
	switch testDataset {
	case "fashion-mnist":
		named = []string{"mnist", "cifar10"}
	case "mnist":
		named = []string{"fashion-mnist", "cifar10"}
	case "cifar10":
		named = []string{"svhn", "cifar100"}
	case "cifar100":
		named = []string{"svhn", "cifar10"}
	case "svhn":
		named = []string{"cifar10", "cifar100"}
	}
	var out []SetSpec
	for _, n := range named {
		out = append(out, SetSpec{Name: n, Spec: n, Optional: true})
	}
	for _, n := range []string{SetInterp, SetUniform, SetGaussian} {
		out = append(out, SetSpec{Name: n, Spec: n})
	}
	return out
}

// ParseSuites reads --suites.
func ParseSuites(s string) ([]string, error) {
	out := List(s)
	if len(out) == 0 {
		return nil, inputErr("suites", "empty list (want some of %s)", strings.Join(AllSuites, ","))
	}
	for _, x := range out {
		if !slices.Contains(AllSuites, x) {
			return nil, inputErr("suites", "unknown suite %q (want some of %s)", x, strings.Join(AllSuites, ","))
		}
	}
	return out, nil
}

// ParseScores reads --scores.
func ParseScores(s string) ([]string, error) {
	out := List(s)
	if len(out) == 0 {
		return nil, inputErr("scores", "empty list (want some of %s)", strings.Join(AllScores, ","))
	}
	for _, x := range out {
		if !slices.Contains(AllScores, x) {
			return nil, inputErr("scores", "unknown score %q (want some of %s)", x, strings.Join(AllScores, ","))
		}
	}
	return out, nil
}

// ParseEps reads a list of budgets such as "0,1/255,2/255,0.5" for the named flag. Budgets must be
// finite and ≥ 0; they are returned sorted, without duplicates.
func ParseEps(flag, s string) ([]float64, error) {
	var out []float64
	for _, f := range List(s) {
		v, err := parseFraction(f)
		if err != nil || !(v >= 0) || math.IsInf(v, 0) {
			return nil, inputErr(flag, "%q is not a budget ≥ 0 (want numbers or fractions like 8/255)", f)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, inputErr(flag, "no budgets given")
	}
	slices.Sort(out)
	return out, nil
}

func parseFraction(s string) (float64, error) {
	num, den, ok := strings.Cut(s, "/")
	a, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || !ok {
		return a, err
	}
	b, err := strconv.ParseFloat(strings.TrimSpace(den), 64)
	if err != nil {
		return 0, err
	}
	if b == 0 {
		return 0, fmt.Errorf("division by zero")
	}
	return a / b, nil
}

// ParseSteps reads --pgd-steps: one or more step counts, such as "10,20".
func ParseSteps(s string) ([]int, error) {
	var out []int
	for _, f := range List(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, inputErr("pgd-steps", "%q is not a number of steps ≥ 1", f)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, inputErr("pgd-steps", "no step counts given")
	}
	slices.Sort(out)
	return out, nil
}

// ParseNorms reads --pgd-norms.
func ParseNorms(s string) ([]string, error) {
	out := List(s)
	if len(out) == 0 {
		return nil, inputErr("pgd-norms", "empty list (want linf, l2 or both)")
	}
	for _, n := range out {
		if !slices.Contains(attack.Norms, n) {
			return nil, inputErr("pgd-norms", "unknown norm %q (want linf or l2)", n)
		}
	}
	return out, nil
}

func (c *Config) suites() []string {
	if c.Suites == nil {
		return AllSuites
	}
	return c.Suites
}

func (c *Config) has(suite string) bool { return slices.Contains(c.suites(), suite) }

func (c *Config) scores() []string {
	if c.Scores == nil {
		return DefaultScores
	}
	return c.Scores
}

func (c *Config) validate() error {
	switch {
	case c.Checkpoint == "" && c.Logits == "":
		return inputErr("checkpoint", "give a run directory or checkpoint file (or --logits DIR to re-score an export)")
	case c.Checkpoint != "" && c.Logits != "":
		return inputErr("logits", "cannot be combined with --checkpoint: it re-scores an earlier export without the model")
	case c.Out == "":
		return inputErr("out", "an output directory is required")
	case c.OODLimit < 0:
		return inputErr("ood-limit", "%d must be ≥ 0", c.OODLimit)
	case c.BatchSize < 0:
		return inputErr("batch-size", "%d must be ≥ 0", c.BatchSize)
	case c.PGD.Limit < 0:
		return inputErr("pgd-limit", "%d must be ≥ 0", c.PGD.Limit)
	case c.PGD.Restarts < 0:
		return inputErr("pgd-restarts", "%d must be ≥ 0", c.PGD.Restarts)
	case !(c.PGD.StepSize >= 0) || math.IsInf(c.PGD.StepSize, 0):
		return inputErr("pgd-step-size", "%v must be a finite number ≥ 0", c.PGD.StepSize)
	}
	for _, s := range c.suites() {
		if !slices.Contains(AllSuites, s) {
			return inputErr("suites", "unknown suite %q", s)
		}
	}
	for _, s := range c.scores() {
		if !slices.Contains(AllScores, s) {
			return inputErr("scores", "unknown score %q", s)
		}
	}
	if c.Logits == "" && c.has(Robustness) {
		if len(c.PGD.Norms) == 0 || len(c.PGD.Steps) == 0 {
			return inputErr("pgd-norms", "the robustness suite needs at least one norm and one steps setting")
		}
		for _, n := range c.PGD.Norms {
			if len(c.PGD.Eps[n]) == 0 {
				return inputErr("pgd-"+n+"-eps", "no budgets for norm %s", n)
			}
			for _, e := range c.PGD.Eps[n] {
				cfg := attack.Config{Norm: n, Eps: e, Steps: c.PGD.Steps[0], StepSize: c.PGD.StepSize}
				if err := cfg.Validate(); err != nil {
					return &InputError{Flag: "pgd-" + n + "-eps", Err: err}
				}
			}
		}
	}
	return nil
}
