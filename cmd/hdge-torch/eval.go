package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/eval/suite"
)

// evalFlags are the declared evaluation settings (suite.Settings) and the command's own.
func evalFlags() []cli.Flag {
	own := []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Category: "input", Usage: "run directory (its best.pt, else newest checkpoint) or checkpoint file to evaluate; a file in the HDGE/JEM authors' released layout is read too (give --test)"},
		&cli.StringFlag{Name: "logits", Category: "input", Usage: "re-score the logits folder of an earlier evaluation (OUT/logits) without the model"},
		&cli.StringFlag{Name: "out", Category: "input", Usage: "output directory for metrics.json, report.html, PNGs and logits/ (default: RUN/eval)"},
	}
	return append(append(own, suite.Settings().Flags()...),
		&cli.StringFlag{Name: "log-format", Value: "console", Category: "run", Usage: "console or json"},
		&cli.BoolFlag{Name: "no-progress", Category: "run", Usage: "log lines instead of a progress bar even on a terminal"})
}

// modelFlags only mean something when a model is evaluated, not when an export is re-scored.
var modelFlags = []string{"checkpoint", "data-dir", "test", "ood", "ood-limit", "pgd-norms", "pgd-linf-eps", "pgd-l2-eps",
	"pgd-steps", "pgd-step-size", "pgd-restarts", "pgd-random-start", "pgd-limit", "batch-size", "threads", "device", "precision", "seed"}

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
	checkpoint, logits, out := c.String("checkpoint"), c.String("logits"), c.String("out")
	switch {
	case checkpoint == "" && logits == "":
		return suite.Config{}, cli.Exit("eval needs --checkpoint RUN_OR_FILE (or --logits DIR to re-score an earlier export)", 2)
	case logits != "":
		for _, f := range modelFlags {
			if c.IsSet(f) {
				return suite.Config{}, cli.Exit(fmt.Sprintf("--%s cannot be used with --logits: an export is re-scored as it was made (only --out, --suites, --scores and --samples apply)", f), 2)
			}
		}
		if out == "" {
			return suite.Config{}, cli.Exit("--out is required with --logits", 2)
		}
	}
	if checkpoint != "" {
		// Checked before anything is created, so a mistyped path does not leave RUN/eval behind.
		if _, err := os.Stat(checkpoint); err != nil {
			return suite.Config{}, cli.Exit(fmt.Sprintf("--checkpoint: %v", err), 2)
		}
	}
	if out == "" {
		run := checkpoint
		if st, err := os.Stat(run); err == nil && !st.IsDir() {
			if run = filepath.Dir(run); filepath.Base(run) == "checkpoints" {
				run = filepath.Dir(run)
			}
		}
		out = filepath.Join(run, "eval")
	}
	f := suite.DefaultFlags()
	if err := suite.Settings().FromFlags(c, &f, func(string) bool { return true }); err != nil {
		return suite.Config{}, cli.Exit(err.Error(), 2)
	}
	cfg, err := f.Config(c.IsSet)
	if err != nil {
		return cfg, err
	}
	cfg.Checkpoint, cfg.Logits, cfg.Out = checkpoint, logits, out
	if logits != "" {
		// A re-scored export keeps what it was made with; only the scores and suites asked for apply.
		if !c.IsSet("scores") {
			cfg.Scores = nil
		}
		cfg.OOD, cfg.PGD = nil, suite.PGD{}
	}
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
	if g := r.Generation; g != nil {
		is, fd := g.Labels()
		parts = append(parts, fmt.Sprintf("samples: %s %.3f, %s %.3f", is, g.ISMean, fd, g.FD))
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
