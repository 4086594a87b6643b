package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/eval/suite"
)

func evalFlags() []cli.Flag {
	p := suite.DefaultPGD()
	epsText := func(v []float64) string {
		s := make([]string, len(v))
		for i, e := range v {
			s[i] = strconv.FormatFloat(e, 'g', -1, 64)
			if k := e * 255; e > 0 && k == float64(int(k)) && e < 1 {
				s[i] = fmt.Sprintf("%d/255", int(k))
			}
		}
		return strings.Join(s, ",")
	}
	steps := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		steps[i] = strconv.Itoa(s)
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Category: "input", Usage: "run directory (its best.pt, else newest checkpoint) or checkpoint file to evaluate; a file in the HDGE/JEM authors' released layout is read too (give --test)"},
		&cli.StringFlag{Name: "logits", Category: "input", Usage: "re-score the logits folder of an earlier evaluation (OUT/logits) without the model"},
		&cli.StringFlag{Name: "out", Category: "input", Usage: "output directory for metrics.json, report.html, PNGs and logits/ (default: RUN/eval)"},

		&cli.StringFlag{Name: "data-dir", Category: "data", Usage: "directory searched first for named datasets (default: the run's, then $HDGE_DATA, the per-user cache, /usr/share/datasets)"},
		&cli.StringFlag{Name: "test", Category: "data", Usage: "in-distribution test set: a name or FORMAT:PATH (default: the dataset the model was trained on)"},
		&cli.StringFlag{Name: "ood", Category: "data", Usage: "comma-separated OOD sets: names (mnist, cifar10, cifar100, svhn, fashion-mnist), FORMAT:PATH (idx:DIR, cifar10:DIR, cifar100:DIR, svhn:FILE, folder:DIR), interp, uniform, gaussian; NAME=SPEC names a set. Converted to the test set's image shape. Default for fashion-mnist: mnist,cifar10,interp,uniform,gaussian; for cifar10: svhn,cifar100,interp,uniform,gaussian (named defaults are skipped when absent)"},
		&cli.IntFlag{Name: "ood-limit", Category: "data", Usage: "images per OOD set (0 = as many as the test set)"},

		&cli.StringFlag{Name: "suites", Value: strings.Join(suite.AllSuites, ","), Category: "suites", Usage: "comma-separated suites to run: " + strings.Join(suite.AllSuites, ", ")},
		&cli.StringFlag{Name: "scores", Value: strings.Join(suite.DefaultScores, ","), Category: "suites", Usage: "OOD scores: logqx (logsumexp of the logits), maxprob (max softmax), pxsim (HDGE's contrastive score against the checkpoint's queue, with the predicted class), gradnorm (JEM's −‖∇ₓ log q(x)‖, needs the model)"},

		&cli.StringFlag{Name: "pgd-norms", Value: strings.Join(p.Norms, ","), Category: "robustness", Usage: "PGD threat models: linf, l2"},
		&cli.StringFlag{Name: "pgd-linf-eps", Value: epsText(p.Eps["linf"]), Category: "robustness", Usage: "L∞ budgets in pixel space [0, 1]; fractions allowed"},
		&cli.StringFlag{Name: "pgd-l2-eps", Value: epsText(p.Eps["l2"]), Category: "robustness", Usage: "L2 budgets in pixel space [0, 1]"},
		&cli.StringFlag{Name: "pgd-steps", Value: strings.Join(steps, ","), Category: "robustness", Usage: "PGD steps; several (e.g. 10,20) check that more steps do not help the model"},
		&cli.Float64Flag{Name: "pgd-step-size", Category: "robustness", Usage: "PGD step size in pixel space (0 = 2.5·ε/steps)"},
		&cli.IntFlag{Name: "pgd-restarts", Value: p.Restarts, Category: "robustness", Usage: "random restarts; an image counts as robust only if it survives all"},
		&cli.BoolFlag{Name: "pgd-random-start", Value: p.RandomStart, Category: "robustness", Usage: "start each restart at a uniform point of the ε-ball (--pgd-random-start=false starts at the image)"},
		&cli.IntFlag{Name: "pgd-limit", Value: p.Limit, Category: "robustness", Usage: "test images attacked, the first N (0 = all)"},

		&cli.IntFlag{Name: "batch-size", Category: "run", Usage: "images per forward pass (0 = 256 for logits, 100 for PGD)"},
		&cli.IntFlag{Name: "threads", Category: "run", Usage: "libtorch intra-op threads (0 = one per CPU)"},
		&cli.StringFlag{Name: "device", Category: "run", Usage: "cpu, cuda or cuda:N (default: the run's)"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Category: "run", Usage: "seed for test-time noise, interp pairs, noise sets and PGD random starts"},
		&cli.StringFlag{Name: "log-format", Value: "console", Category: "run", Usage: "console or json"},
		&cli.BoolFlag{Name: "no-progress", Category: "run", Usage: "log lines instead of a progress bar even on a terminal"},
	}
}

// modelFlags only mean something when a model is evaluated, not when an export is re-scored.
var modelFlags = []string{"checkpoint", "data-dir", "test", "ood", "ood-limit", "pgd-norms", "pgd-linf-eps", "pgd-l2-eps",
	"pgd-steps", "pgd-step-size", "pgd-restarts", "pgd-random-start", "pgd-limit", "batch-size", "threads", "device", "seed"}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "evaluate a checkpoint: accuracy, calibration, OOD detection, PGD robustness, metrics.json and report.html",
		Description: `Runs the model over the in-distribution test set, the OOD sets and PGD attacks, writes every
logit to OUT/logits/*.npy (numpy.load reads them; index.json says which is which), then computes
all metrics from those files into OUT/metrics.json, OUT/report.html and PNG plots.
--logits OUT/logits re-scores an export without the model or libtorch doing any work.

Example: hdge-torch eval --checkpoint runs/fashion-hdge --out runs/fashion-hdge/eval --pgd-steps 10,20`,
		Flags:  evalFlags(),
		Action: runEval,
	}
}

func evalConfig(c *cli.Context) (suite.Config, error) {
	cfg := suite.Config{
		Checkpoint: c.String("checkpoint"), Logits: c.String("logits"), Out: c.String("out"),
		DataDir: c.String("data-dir"), Test: c.String("test"), OODLimit: c.Int("ood-limit"),
		BatchSize: c.Int("batch-size"), Threads: c.Int("threads"), Device: c.String("device"), Seed: c.Uint64("seed"),
	}
	switch {
	case cfg.Checkpoint == "" && cfg.Logits == "":
		return cfg, cli.Exit("eval needs --checkpoint RUN_OR_FILE (or --logits DIR to re-score an earlier export)", 2)
	case cfg.Logits != "":
		for _, f := range modelFlags {
			if c.IsSet(f) {
				return cfg, cli.Exit(fmt.Sprintf("--%s cannot be used with --logits: an export is re-scored as it was made (only --out, --suites and --scores apply)", f), 2)
			}
		}
		if cfg.Out == "" {
			return cfg, cli.Exit("--out is required with --logits", 2)
		}
	}
	if cfg.Checkpoint != "" {
		// Checked before anything is created, so a mistyped path does not leave RUN/eval behind.
		if _, err := os.Stat(cfg.Checkpoint); err != nil {
			return cfg, cli.Exit(fmt.Sprintf("--checkpoint: %v", err), 2)
		}
	}
	if cfg.Out == "" {
		run := cfg.Checkpoint
		if st, err := os.Stat(run); err == nil && !st.IsDir() {
			if run = filepath.Dir(run); filepath.Base(run) == "checkpoints" {
				run = filepath.Dir(run)
			}
		}
		cfg.Out = filepath.Join(run, "eval")
	}
	var err error
	if c.IsSet("suites") || cfg.Logits == "" {
		if cfg.Suites, err = suite.ParseSuites(c.String("suites")); err != nil {
			return cfg, err
		}
		if !c.IsSet("suites") {
			cfg.Suites = nil // the default: everything the data allows
		}
	}
	if c.IsSet("scores") || cfg.Logits == "" {
		if cfg.Scores, err = suite.ParseScores(c.String("scores")); err != nil {
			return cfg, err
		}
	}
	if cfg.Logits != "" {
		return cfg, nil
	}
	if c.IsSet("ood") {
		if cfg.OOD, err = suite.ParseOOD(c.String("ood")); err != nil {
			return cfg, err
		}
		if cfg.OOD == nil {
			cfg.OOD = []suite.SetSpec{} // --ood "" asks for none
		}
	}
	p := suite.PGD{StepSize: c.Float64("pgd-step-size"), Restarts: c.Int("pgd-restarts"), RandomStart: c.Bool("pgd-random-start"),
		Limit: c.Int("pgd-limit"), Eps: map[string][]float64{}}
	if p.Norms, err = suite.ParseNorms(c.String("pgd-norms")); err != nil {
		return cfg, err
	}
	for _, n := range p.Norms {
		if p.Eps[n], err = suite.ParseEps("pgd-"+n+"-eps", c.String("pgd-"+n+"-eps")); err != nil {
			return cfg, err
		}
	}
	if p.Steps, err = suite.ParseSteps(c.String("pgd-steps")); err != nil {
		return cfg, err
	}
	cfg.PGD = p
	return cfg, nil
}

func runEval(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("eval takes no arguments, got %q (flags start with --)", c.Args().First()), 2)
	}
	cfg, err := evalConfig(c)
	if err != nil {
		return exitFor(err)
	}
	log, progress, err := commandLogging(c, "--out", cfg.Out, "eval.log")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg.Log, cfg.Progress = log, progress
	r, err := suite.Run(c.Context, cfg)
	if err != nil {
		return exitFor(err)
	}
	var parts []string
	if r.Classification != nil {
		parts = append(parts, fmt.Sprintf("accuracy %.2f%%", 100*r.Classification.Accuracy))
	}
	if r.Calibration != nil {
		parts = append(parts, fmt.Sprintf("ECE %.2f%%", 100*r.Calibration.ECE))
	}
	for _, o := range r.OOD {
		if o.Score == "logqx" {
			parts = append(parts, fmt.Sprintf("AUROC %s %.3f", o.Set, o.AUROC))
		}
	}
	failed := 0
	for _, ch := range r.RobustnessChecks {
		if !ch.Passed {
			failed++
		}
	}
	if len(r.RobustnessChecks) > 0 {
		parts = append(parts, fmt.Sprintf("PGD sanity checks %d/%d passed", len(r.RobustnessChecks)-failed, len(r.RobustnessChecks)))
	}
	if len(parts) > 0 {
		fmt.Println(strings.Join(parts, ", "))
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	fmt.Printf("metrics: %s\nreport: %s\n", filepath.Join(cfg.Out, suite.MetricsFile), filepath.Join(cfg.Out, suite.ReportFile))
	return nil
}

// exitFor maps errors to exit codes: 2 for bad input (naming the flag), 130 when interrupted, 1 else.
func exitFor(err error) error {
	var ie *suite.InputError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ec):
		return err
	case errors.As(err, &ie):
		return cli.Exit(err.Error(), 2)
	case errors.Is(err, context.Canceled):
		return cli.Exit("interrupted", exitInterrupted)
	}
	return cli.Exit(err.Error(), 1)
}
