package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/hdge-torch/hdge-torch/gen"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

func sampleCommand() *cli.Command {
	d := gen.DefaultConfig()
	return &cli.Command{
		Name:  "sample",
		Usage: "draw images from a model's energy by SGLD: PNG grids, samples.npy, labels.npy, and IS / FD (or FID)",
		Description: `Runs JEM's SGLD on the model's log q(x) (unconditional) or log q(x, y) (--class N or all, one
grid row per class), from fresh U(-1, 1) noise or the checkpoint's replay buffer (--from-buffer,
jem and hdge-jem runs), for --rounds rounds of --steps steps. Writes OUT/samples.png, top.png (per
class, the samples the model is most confident of), samples.npy, labels.npy, top.json and
sample.json. With --feature-checkpoint RUN (a classifier of the same image shape, e.g. a CE run)
it adds "IS (classifier)" and "FD (classifier features)" against the test split to
OUT/metrics.json's generation section; with --fid-weights FILE (pytorch-fid's Inception-v3) the IS
and FID proper.

Example: hdge-torch sample --checkpoint runs/fashion-jem --out runs/fashion-jem/samples --class all --from-buffer --steps 20 --rounds 5 --feature-checkpoint runs/fashion-ce`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Category: "input", Usage: "run directory (its best.pt, else newest checkpoint) or checkpoint file"},
			&cli.StringFlag{Name: "out", Category: "input", Usage: "output directory (default: RUN/samples)"},
			&cli.StringFlag{Name: "class", Category: "sampling", Usage: "a class index, or all (one row per class); unset: unconditional"},
			&cli.BoolFlag{Name: "from-buffer", Category: "sampling", Usage: "start from the checkpoint's replay buffer (jem, hdge-jem) instead of noise"},
			&cli.IntFlag{Name: "steps", Value: d.Steps, Category: "sampling", Usage: "SGLD steps per round"},
			&cli.IntFlag{Name: "rounds", Value: d.Rounds, Category: "sampling", Usage: "rounds of --steps, each refining the same chains (JEM's evaluation)"},
			&cli.IntFlag{Name: "n", Value: d.N, Category: "sampling", Usage: "samples (per class with --class all)"},
			&cli.Float64Flag{Name: "sgld-lr", Category: "sampling", Usage: "SGLD step size (0 = the run's --sgld-lr, JEM's 1 for other runs)"},
			&cli.Float64Flag{Name: "sgld-std", Category: "sampling", Usage: "SGLD noise std (0 = the run's --sgld-std, JEM's 0.01 for other runs)"},
			&cli.IntFlag{Name: "top", Value: d.Top, Category: "sampling", Usage: "samples per class in the top-confidence selection (0 = none)"},
			&cli.StringFlag{Name: "feature-checkpoint", Category: "metrics", Usage: "classifier run for IS (classifier) and FD (classifier features)"},
			&cli.StringFlag{Name: "fid-weights", Category: "metrics", Usage: "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for IS and FID"},
			&cli.IntFlag{Name: "real-n", Category: "metrics", Usage: "real test images for the Fréchet distance (0 = all)"},
			&cli.IntFlag{Name: "batch-size", Value: d.BatchSize, Category: "run", Usage: "chains per SGLD batch"},
			&cli.Uint64Flag{Name: "seed", Value: d.Seed, Category: "run", Usage: "seed of the starting noise and SGLD's noise"},
			&cli.IntFlag{Name: "threads", Category: "run", Usage: "libtorch intra-op threads (0 = one per CPU)"},
			&cli.StringFlag{Name: "device", Category: "run", Usage: "cpu, cuda or cuda:N (default: the run's)"},
			&cli.StringFlag{Name: "log-format", Value: "console", Category: "run", Usage: "console or json"},
			&cli.BoolFlag{Name: "no-progress", Category: "run", Usage: "unused; accepted like the other commands"},
		},
		Action: runSample,
	}
}

func runSample(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("sample takes no arguments, got %q (flags start with --)", c.Args().First()), 2)
	}
	cfg := gen.Config{
		Checkpoint: c.String("checkpoint"), Out: c.String("out"), Class: c.String("class"), FromBuffer: c.Bool("from-buffer"),
		Steps: c.Int("steps"), Rounds: c.Int("rounds"), N: c.Int("n"), SGLDLR: c.Float64("sgld-lr"), SGLDStd: c.Float64("sgld-std"),
		Top: c.Int("top"), BatchSize: c.Int("batch-size"), Seed: c.Uint64("seed"), Device: c.String("device"),
		FeatureCheckpoint: c.String("feature-checkpoint"), FIDWeights: c.String("fid-weights"), RealN: c.Int("real-n"),
	}
	if cfg.Out == "" && cfg.Checkpoint != "" {
		cfg.Out = filepath.Join(model.RunDirOf(cfg.Checkpoint), "samples")
	}
	if c.Int("threads") < 0 {
		return cli.Exit(fmt.Sprintf("--threads must be zero or positive, got %d", c.Int("threads")), 2)
	}
	if err := cfg.Validate(); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if t := c.Int("threads"); t > 0 {
		torch.SetNumThreads(t)
	}
	log, _, err := commandLogging(c, "--out", cfg.Out, "sample.log")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg.Log = log
	res, err := gen.Run(cfg)
	if err != nil {
		var ie *gen.InputError
		if errors.As(err, &ie) {
			return cli.Exit(err.Error(), 2)
		}
		return cli.Exit(err.Error(), 1)
	}
	fmt.Printf("%d samples (mean log q(x) %.3f): %s\n", res.Info.N, res.Info.MeanEnergy, filepath.Join(cfg.Out, gen.GridFile))
	if res.Info.OutsideRange > 0.01 {
		fmt.Printf("%.1f %% of the sample values lie outside the data's range [-1, 1] (min %.2f, max %.2f): feature-space scores such as FD grow with them\n",
			100*res.Info.OutsideRange, res.Info.Min, res.Info.Max)
	}
	if g := res.Generation; g != nil {
		is, fd := g.Labels()
		fmt.Printf("%s %.3f ± %.3f, %s %.3f (%s, %d samples)\n", is, g.ISMean, g.ISStd, fd, g.FD, g.FeatureNet, g.N)
	}
	return nil
}
