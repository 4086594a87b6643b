package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/experiment"
)

func experimentCommand() *cli.Command {
	out := &cli.StringFlag{Name: "out", Usage: "folder for the runs and results (default: the spec's \"out\")"}
	return &cli.Command{
		Name:  "experiment",
		Usage: "train and evaluate a grid of runs × seeds from a spec file; tabulate mean ± std",
		Description: `A spec (JSON) names the runs of a grid and the seeds each is trained with:

  {"name": "...", "description": "...",
   "base": {"dataset": "fashion-mnist", "epochs": 2},      train flags shared by every run
   "runs": [{"name": "ce", "set": {"objective": "ce"}},    each run's own train flags
            {"name": "hdge", "set": {"objective": "hdge"}}],
   "seeds": [1, 2, 3],
   "eval": {"ood": "mnist,interp", "pgd-linf-eps": "2/255,8/255", "pgd-limit": 500},   eval flags
   "baseline": "ce",                                         runs are compared with it
   "out": "experiments/out/NAME"}

Keys are the train and eval commands' flag names. Each run and seed trains into OUT/RUN/seed-N and
is evaluated into OUT/RUN/seed-N/eval. Finished work is skipped and an interrupted run resumes from
its checkpoint, so Ctrl-C and running the same command again completes a grid over several sittings.
OUT/results.md and OUT/results.json hold mean ± standard deviation over the seeds done; OUT/figures
holds the robustness curves, reliability diagrams and log q(x) histograms of the runs side by side.`,
		Subcommands: []*cli.Command{
			{
				Name:      "run",
				Usage:     "train and evaluate what is not done yet, then write the results",
				ArgsUsage: "SPEC",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "only", Usage: "comma-separated runs to work on (default: all)"},
					&cli.StringFlag{Name: "seeds", Usage: "comma-separated seeds, among the spec's, to work on (default: all)"},
					&cli.IntFlag{Name: "jobs", Value: 1, Usage: "units (run × seed) trained and evaluated at once; give each run cores/jobs threads in the spec"},
					out,
					&cli.StringFlag{Name: "log-format", Value: "console", Usage: "console or json"},
					&cli.BoolFlag{Name: "no-progress", Usage: "log lines instead of progress bars even on a terminal"},
				},
				Action: runExperiment,
			},
			{
				Name:      "aggregate",
				Usage:     "write OUT/results.md, OUT/results.json and OUT/figures from the runs done so far, training nothing; print the markdown",
				ArgsUsage: "SPEC",
				Flags:     []cli.Flag{out},
				Action:    aggregateExperiment,
			},
		},
	}
}

func loadSpec(c *cli.Context) (*experiment.Spec, error) {
	if c.NArg() != 1 {
		hint := ""
		if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
			hint = "; flags go before the spec file"
		}
		return nil, cli.Exit(fmt.Sprintf("experiment %s needs one spec file, e.g. experiments/fashion-grid.json (got %d arguments%s)", c.Command.Name, c.NArg(), hint), 2)
	}
	s, err := experiment.Load(c.Args().First())
	if err != nil {
		return nil, cli.Exit(err.Error(), 2)
	}
	if o := c.String("out"); o != "" {
		s.Out = o
	}
	return s, nil
}

func runExperiment(c *cli.Context) error {
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	opts := experiment.Options{Only: suite.List(c.String("only")), Jobs: c.Int("jobs")}
	if opts.Jobs < 1 {
		return cli.Exit(fmt.Sprintf("--jobs must be at least 1, got %d", opts.Jobs), 2)
	}
	if c.IsSet("only") && opts.Only == nil {
		return cli.Exit("--only: empty list of runs", 2)
	}
	for _, f := range suite.List(c.String("seeds")) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--seeds: %q is not a seed (want e.g. 1,2)", f), 2)
		}
		opts.Seeds = append(opts.Seeds, v)
	}
	if c.IsSet("seeds") && opts.Seeds == nil {
		return cli.Exit("--seeds: empty list", 2)
	}
	log, progress, err := commandLogging(c, "out "+s.Out, s.Out, "experiment.log")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	opts.Log, opts.Progress = log, progress
	res, err := experiment.Run(c.Context, s, opts)
	if res != nil {
		fmt.Printf("results: %s (%d of %d runs × seeds done)\n", filepath.Join(s.Out, experiment.ResultsMarkdown), res.Done, res.Total)
	}
	var se *experiment.SpecError
	switch {
	case errors.Is(err, experiment.ErrInterrupted):
		return cli.Exit(fmt.Sprintf("%v; run the same command again to continue", err), exitInterrupted)
	case errors.As(err, &se):
		return cli.Exit(err.Error(), 2)
	case err != nil:
		return cli.Exit(err.Error(), 1)
	}
	return nil
}

func aggregateExperiment(c *cli.Context) error {
	s, err := loadSpec(c)
	if err != nil {
		return err
	}
	res, err := experiment.Aggregate(s)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Print(res.Markdown())
	fmt.Fprintf(os.Stderr, "wrote %s and %s (%d of %d runs × seeds done)", filepath.Join(s.Out, experiment.ResultsMarkdown),
		filepath.Join(s.Out, experiment.ResultsJSON), res.Done, res.Total)
	if len(res.Figures) > 0 {
		fmt.Fprintf(os.Stderr, ", %d figures in %s", len(res.Figures), filepath.Join(s.Out, experiment.FiguresDir))
	}
	fmt.Fprintln(os.Stderr)
	return nil
}
