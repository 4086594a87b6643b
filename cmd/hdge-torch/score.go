package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/hdge-torch/hdge-torch/eval/score"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

func scoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "score",
		Usage:     "apply a trained model to images: class, confidence, log q(x), an OOD score and an in/out decision for each",
		ArgsUsage: "INPUT... (image files, folders, FORMAT:PATH datasets such as idx:DIR, cifar10:DIR, folder:DIR, .npy files of images)",
		Description: `For every image, in the model's input space: the predicted class and its name, the max softmax
probability, log q(x) (logsumexp of the logits), the chosen --score and a decision, "in" when the score
is at least a threshold set so that --tpr of the run's held-out validation images are "in". The
threshold is set on first use and cached in RUN/` + score.ThresholdsFile + ` (--threshold gives one instead).
Images of another size or channel count are converted as eval's OOD sets are, and the row says so.
An image that cannot be read is a row with status "error"; the others are still scored, and the
exit status is 1 when any failed.

Example: hdge-torch score --checkpoint runs/fashion-hdge photos/ idx:/data/mnist --format jsonl --out scores.jsonl`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "run directory (its best.pt, else newest checkpoint), checkpoint file, or a file in the released code's layout"},
			&cli.StringFlag{Name: "score", Value: "logqx", Usage: "score deciding in/out: logqx, maxprob or pxsim (HDGE's contrastive score, needs the checkpoint's queue)"},
			&cli.Float64Flag{Name: "tpr", Value: score.DefaultTPR, Usage: "share of the run's validation images that must be decided \"in\"; sets the threshold"},
			&cli.Float64Flag{Name: "threshold", Usage: "decide with this score threshold instead of one set for --tpr"},
			&cli.StringFlag{Name: "format", Value: score.FormatCSV, Usage: "csv or jsonl (one JSON object a line)"},
			&cli.StringFlag{Name: "out", Usage: "write to this file (atomically) instead of stdout"},
			&cli.StringFlag{Name: "dataset", Usage: "the model's training data (a name or FORMAT:PATH), for a released checkpoint, which does not record it: input shape and class names"},
			&cli.StringFlag{Name: "data-dir", Usage: "directory searched first for the run's dataset (its image shape, class names and validation split)"},
			&cli.IntFlag{Name: "batch-size", Usage: "images per forward pass (0 = 256)"},
			&cli.IntFlag{Name: "threads", Usage: "libtorch intra-op threads (0 = one per CPU)"},
			&cli.StringFlag{Name: "device", Usage: "cpu, cuda or cuda:N (default: the run's)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for the run's test-time noise"},
			&cli.StringFlag{Name: "log-format", Value: "console", Usage: "console or json"},
			&cli.BoolFlag{Name: "no-progress", Usage: "no progress bar even on a terminal"},
		},
		Action: runScore,
	}
}

func runScore(c *cli.Context) error {
	cfg := score.Config{
		Checkpoint: c.String("checkpoint"), Inputs: c.Args().Slice(), Score: c.String("score"), TPR: c.Float64("tpr"),
		DataDir: c.String("data-dir"), Dataset: c.String("dataset"), Format: c.String("format"), BatchSize: c.Int("batch-size"),
		Threads: c.Int("threads"), Device: c.String("device"), Seed: c.Uint64("seed"),
	}
	if cfg.Checkpoint == "" {
		return cli.Exit("score needs --checkpoint RUN_OR_FILE", 2)
	}
	for _, in := range cfg.Inputs {
		// The command line stops reading flags at the first input, so a flag after one would be
		// scored as a file name.
		if strings.HasPrefix(in, "-") {
			return cli.Exit(fmt.Sprintf("%s comes after the inputs: flags go before them (hdge-torch score --checkpoint RUN [flags] INPUT...)", in), 2)
		}
	}
	if _, err := os.Stat(cfg.Checkpoint); err != nil {
		return cli.Exit(fmt.Sprintf("--checkpoint: %v", err), 2)
	}
	if len(cfg.Inputs) == 0 {
		return cli.Exit("score needs images after the flags: image files, folders, FORMAT:PATH datasets or .npy files", 2)
	}
	if c.IsSet("threshold") {
		v := c.Float64("threshold")
		cfg.Threshold = &v
	}
	log, err := newLogger(c.String("log-format"), "")
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	defer func() { _ = log.Sync() }()
	cfg.Log = log
	if !c.Bool("no-progress") && term.IsTerminal(int(os.Stderr.Fd())) && c.String("log-format") == "console" {
		cfg.Progress = os.Stderr
	}
	var sum *score.Summary
	run := func(w io.Writer) error {
		cfg.Out = w
		sum, err = score.Run(c.Context, cfg)
		return err
	}
	if out := c.String("out"); out != "" {
		err = atomicfile.Write(out, run)
	} else {
		err = run(os.Stdout)
	}
	if err != nil {
		return exitFor(err)
	}
	if sum.Failed > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d images could not be scored (their rows have status \"error\")", sum.Failed, sum.Images), 1)
	}
	return nil
}
