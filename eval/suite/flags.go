package suite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/internal/settings"
)

// Flags are the evaluation's settings as a user gives them: the eval command's flags, or an
// experiment spec's "eval" object, which take the same names. Each is declared once, in
// Settings; Config turns them into a Config.
type Flags struct {
	DataDir, Test, OOD string
	Samples            string
	OODLimit           int
	Suites, Scores     string
	PGDNorms           string
	PGDLinfEps         string
	PGDL2Eps           string
	PGDSteps           string
	PGDStepSize        float64
	PGDRestarts        int
	PGDRandomStart     bool
	PGDLimit           int
	BatchSize          int
	Threads            int
	Device             string
	Precision          string
	Seed               uint64
}

type flagSetting = settings.Setting[Flags]

// Settings is the table of evaluation settings (operational ones: an evaluation learns nothing).
func Settings() settings.Table[Flags] {
	p := DefaultPGD()
	op := settings.Operational
	return settings.Table[Flags]{
		settings.String("data-dir", "data", op, "", "directory searched first for named datasets (default: the run's, then $HDGE_DATA, the per-user cache, /usr/share/datasets)",
			func(f *Flags) *string { return &f.DataDir }),
		settings.String("test", "data", op, "", "in-distribution test set: a name or FORMAT:PATH (default: the dataset the model was trained on)",
			func(f *Flags) *string { return &f.Test }),
		settings.String("ood", "data", op, "", "comma-separated OOD sets: names (mnist, cifar10, cifar100, svhn, fashion-mnist), FORMAT:PATH (idx:DIR, cifar10:DIR, cifar100:DIR, svhn:FILE, folder:DIR), interp, uniform, gaussian; NAME=SPEC names a set. Converted to the test set's image shape. Default for fashion-mnist: mnist,cifar10,interp,uniform,gaussian; for cifar10: svhn,cifar100,interp,uniform,gaussian (named defaults are skipped when absent)",
			func(f *Flags) *string { return &f.OOD }),
		settings.String("samples", "data", op, "", "folder written by hdge-torch sample whose grids and IS / FD go in the report and metrics.json (default: RUN/samples when its metrics.json has them; in an experiment spec, relative to each run's folder)",
			func(f *Flags) *string { return &f.Samples }),
		settings.Int("ood-limit", "data", op, 0, "images per OOD set (0 = as many as the test set)",
			func(f *Flags) *int { return &f.OODLimit }, settings.AtLeast(0)),
		settings.String("suites", "suites", op, strings.Join(AllSuites, ","), "comma-separated suites to run: "+strings.Join(AllSuites, ", "),
			func(f *Flags) *string { return &f.Suites }),
		settings.String("scores", "suites", op, strings.Join(DefaultScores, ","), "OOD scores: logqx (logsumexp of the logits), maxprob (max softmax), pxsim (HDGE's contrastive score against the checkpoint's queue, with the predicted class), gradnorm (JEM's −‖∇ₓ log q(x)‖, needs the model)",
			func(f *Flags) *string { return &f.Scores }),
		settings.String("pgd-norms", "robustness", op, strings.Join(p.Norms, ","), "PGD threat models: linf, l2",
			func(f *Flags) *string { return &f.PGDNorms }),
		settings.String("pgd-linf-eps", "robustness", op, epsText(p.Eps["linf"]), "L∞ budgets in pixel space [0, 1]; fractions allowed",
			func(f *Flags) *string { return &f.PGDLinfEps }),
		settings.String("pgd-l2-eps", "robustness", op, epsText(p.Eps["l2"]), "L2 budgets in pixel space [0, 1]",
			func(f *Flags) *string { return &f.PGDL2Eps }),
		settings.String("pgd-steps", "robustness", op, intsText(p.Steps), "PGD steps; several (e.g. 10,20) check that more steps do not help the model",
			func(f *Flags) *string { return &f.PGDSteps }),
		settings.Float("pgd-step-size", "robustness", op, p.StepSize, "PGD step size in pixel space (0 = 2.5·ε/steps)",
			func(f *Flags) *float64 { return &f.PGDStepSize }, settings.NonNegative),
		settings.Int("pgd-restarts", "robustness", op, p.Restarts, "random restarts; an image counts as robust only if it survives all",
			func(f *Flags) *int { return &f.PGDRestarts }, settings.AtLeast(0)),
		settings.Bool("pgd-random-start", "robustness", op, p.RandomStart, "start each restart at a uniform point of the ε-ball (--pgd-random-start=false starts at the image)",
			func(f *Flags) *bool { return &f.PGDRandomStart }),
		settings.Int("pgd-limit", "robustness", op, p.Limit, "test images attacked, the first N (0 = all)",
			func(f *Flags) *int { return &f.PGDLimit }, settings.AtLeast(0)),
		settings.Int("batch-size", "run", op, 0, "images per forward pass (0 = 256 for logits, 100 for PGD)",
			func(f *Flags) *int { return &f.BatchSize }, settings.AtLeast(0)),
		settings.Int("threads", "run", op, 0, "libtorch intra-op threads (0 = one per CPU)",
			func(f *Flags) *int { return &f.Threads }, settings.AtLeast(0)),
		settings.String("device", "run", op, "", "cpu, cuda or cuda:N (default: the run's)",
			func(f *Flags) *string { return &f.Device }),
		settings.String("precision", "run", op, "fp32", "precision of the logits export: fp32, auto (bf16 where native), bf16; PGD and gradnorm always compute in fp32",
			func(f *Flags) *string { return &f.Precision }, settings.OneOf("fp32", "auto", "bf16")),
		settings.Uint64("seed", "run", op, 1, "seed for test-time noise, interp pairs, noise sets and PGD random starts",
			func(f *Flags) *uint64 { return &f.Seed }),
	}
}

// DefaultFlags is every evaluation setting at its default.
func DefaultFlags() Flags {
	var f Flags
	Settings().Apply(&f)
	return f
}

// Config is the evaluation the flags describe, without the model, the logits folder or the
// output folder. given reports whether the user gave a setting: an absent --ood means the test
// set's defaults and an empty one means none; an absent --suites means everything the data
// allows.
func (f Flags) Config(given func(name string) bool) (Config, error) {
	if err := Settings().Validate(&f); err != nil {
		return Config{}, err
	}
	cfg := Config{DataDir: f.DataDir, Test: f.Test, Samples: f.Samples, OODLimit: f.OODLimit, BatchSize: f.BatchSize,
		Threads: f.Threads, Device: f.Device, Seed: f.Seed, Precision: f.Precision}
	var err error
	if cfg.Suites, err = ParseSuites(f.Suites); err != nil {
		return cfg, err
	}
	if !given("suites") {
		cfg.Suites = nil // the default: everything the data allows
	}
	if cfg.Scores, err = ParseScores(f.Scores); err != nil {
		return cfg, err
	}
	if given("ood") {
		if cfg.OOD, err = ParseOOD(f.OOD); err != nil {
			return cfg, err
		}
		if cfg.OOD == nil {
			cfg.OOD = []SetSpec{} // "" asks for none
		}
	}
	p := PGD{StepSize: f.PGDStepSize, Restarts: f.PGDRestarts, RandomStart: f.PGDRandomStart, Limit: f.PGDLimit,
		Eps: map[string][]float64{}}
	if p.Norms, err = ParseNorms(f.PGDNorms); err != nil {
		return cfg, err
	}
	eps := map[string]string{"linf": f.PGDLinfEps, "l2": f.PGDL2Eps}
	for _, n := range p.Norms {
		if p.Eps[n], err = ParseEps("pgd-"+n+"-eps", eps[n]); err != nil {
			return cfg, err
		}
	}
	if p.Steps, err = ParseSteps(f.PGDSteps); err != nil {
		return cfg, err
	}
	cfg.PGD = p
	return cfg, nil
}

// epsText writes budgets as the flags take them: whole grey levels as k/255.
func epsText(v []float64) string {
	s := make([]string, len(v))
	for i, e := range v {
		s[i] = strconv.FormatFloat(e, 'g', -1, 64)
		if k := e * 255; e > 0 && k == float64(int(k)) && e < 1 {
			s[i] = fmt.Sprintf("%d/255", int(k))
		}
	}
	return strings.Join(s, ",")
}

func intsText(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
