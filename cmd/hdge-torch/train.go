package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/hdge-torch/hdge-torch/trainer"
)

func trainFlags(d trainer.Config) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dataset", Value: d.Dataset, Category: "data", Usage: "fashion-mnist, mnist, cifar10, cifar100, svhn, or FORMAT:PATH (idx:DIR, cifar10:DIR, cifar100:DIR, svhn:FILE, folder:DIR)"},
		&cli.StringFlag{Name: "data-dir", Category: "data", Usage: "directory with datasets (default: $HDGE_DATA, then the per-user cache, then /usr/share/datasets)"},
		&cli.IntFlag{Name: "val-size", Value: d.ValSize, Category: "data", Usage: "training images held out for validation (fixed by --seed)"},
		&cli.Float64Flag{Name: "noise", Value: d.Noise, Category: "data", Usage: "std of Gaussian noise added to inputs in [-1,1], at train and test time as in JEM (0 = off)"},
		&cli.StringFlag{Name: "flip", Value: d.Flip, Category: "data", Usage: "random horizontal flip: auto (off for digits), on, off"},
		&cli.IntFlag{Name: "crop", Value: d.Crop, Category: "data", Usage: "reflect-pad by this many pixels, then random crop back (0 = off; -1 = auto: 4 for 32×32 images, 0 for 28×28)"},
		&cli.IntFlag{Name: "workers", Value: d.Workers, Category: "data", Usage: "goroutines preparing batches"},

		&cli.StringFlag{Name: "model", Value: d.Model, Category: "model", Usage: "WideResNet as wrn-DEPTH-WIDTH (the paper: wrn-28-10)"},
		&cli.StringFlag{Name: "norm", Value: d.Norm, Category: "model", Usage: "normalisation in the blocks: none (JEM/HDGE) or batch"},
		&cli.Float64Flag{Name: "dropout", Value: d.Dropout, Category: "model", Usage: "dropout rate between the two convs of a block"},

		&cli.StringFlag{Name: "objective", Value: d.Objective, Category: "objective", Usage: "ce (cross-entropy), hdge (queue of past logits), hdge-simclr (in-batch negatives)"},
		&cli.Float64Flag{Name: "alpha", Value: d.Alpha, Category: "objective", Usage: "weight of log q(y|x); 1-alpha weighs log q(x|y) (1 = plain CE, 0 = log q(x|y) only)"},
		&cli.IntFlag{Name: "queue-size", Value: d.QueueSize, Category: "objective", Usage: "K, past logits kept as negatives (any batch size works)"},
		&cli.Float64Flag{Name: "temperature", Value: d.Temperature, Category: "objective", Usage: "tau of the contrastive term"},
		&cli.StringFlag{Name: "contrast", Value: d.Contrast, Category: "objective", Usage: "form of log q(x|y): official (the released code) or eq13 (the paper)"},
		&cli.BoolFlag{Name: "norm-logits", Value: d.NormLogits, Category: "objective", Usage: "L2-normalise logits before contrasting (--norm-logits=false is the paper's ablation)"},
		&cli.Float64Flag{Name: "label-smoothing", Value: d.LabelSmoothing, Category: "objective", Usage: "label smoothing epsilon for both terms"},

		&cli.StringFlag{Name: "optimizer", Value: d.Optimizer, Category: "optimisation", Usage: "adam or sgd"},
		&cli.Float64Flag{Name: "lr", Value: d.LR, Category: "optimisation", Usage: "learning rate (the paper: 1e-4 with adam)"},
		&cli.Float64Flag{Name: "momentum", Value: d.Momentum, Category: "optimisation", Usage: "SGD momentum"},
		&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay, Category: "optimisation", Usage: "L2 weight decay"},
		&cli.IntFlag{Name: "warmup", Value: d.Warmup, Category: "optimisation", Usage: "linear learning-rate warm-up, in steps"},
		&cli.StringFlag{Name: "schedule", Value: d.Schedule, Category: "optimisation", Usage: "after warm-up: step (multiply by --decay-rate at --decay-epochs, as JEM) or cosine (down to 0 at the last step)"},
		&cli.StringFlag{Name: "decay-epochs", Value: joinInts(d.DecayEpochs), Category: "optimisation", Usage: "comma-separated epochs at which lr is multiplied by --decay-rate (JEM: 160,180 of 200)"},
		&cli.Float64Flag{Name: "decay-rate", Value: d.DecayRate, Category: "optimisation", Usage: "lr factor at each decay epoch (JEM: 0.3 with adam; 0.2 with sgd)"},
		&cli.IntFlag{Name: "batch-size", Value: d.BatchSize, Category: "optimisation", Usage: "images per step"},
		&cli.IntFlag{Name: "epochs", Value: d.Epochs, Category: "optimisation", Usage: "passes over the training split"},
		&cli.IntFlag{Name: "steps", Category: "optimisation", Usage: "stop after this many steps in all (overrides --epochs)"},

		&cli.Uint64Flag{Name: "seed", Value: d.Seed, Category: "run", Usage: "seed for initialisation, data order, augmentation and the queue"},
		&cli.IntFlag{Name: "threads", Category: "run", Usage: "libtorch intra-op threads (0 = one per CPU)"},
		&cli.StringFlag{Name: "device", Value: d.Device, Category: "run", Usage: "cpu, cuda or cuda:N"},
		&cli.BoolFlag{Name: "channels-last", Value: d.ChannelsLast, Category: "run", Usage: "lay weights and activations out NHWC: faster convolutions, same results (--channels-last=false: NCHW)"},
		&cli.StringFlag{Name: "out", Category: "run", Usage: "run directory (default runs/DATASET-OBJECTIVE-TIME)"},
		&cli.StringFlag{Name: "resume", Category: "run", Usage: "continue a run: its directory or a checkpoint file"},
		&cli.IntFlag{Name: "keep-last", Value: d.KeepLast, Category: "run", Usage: "step checkpoints to keep (best.pt is kept besides)"},
		&cli.IntFlag{Name: "ckpt-every", Value: d.CkptEvery, Category: "run", Usage: "steps between checkpoints (also at each epoch end)"},
		&cli.IntFlag{Name: "val-every", Category: "run", Usage: "steps between validations (0 = at each epoch end)"},
		&cli.IntFlag{Name: "log-every", Value: d.LogEvery, Category: "run", Usage: "steps between log lines and metrics records"},
		&cli.StringFlag{Name: "log-format", Value: "console", Category: "run", Usage: "console or json"},
		&cli.BoolFlag{Name: "no-progress", Category: "run", Usage: "log lines instead of a progress bar even on a terminal"},
		&cli.BoolFlag{Name: "skip-test", Category: "run", Usage: "skip the test-set evaluation at the end"},
	}
}

// resumable lists the flags a resumed run may change; the rest come from the run's config.
var resumable = map[string]bool{"epochs": true, "steps": true, "threads": true, "device": true, "workers": true, "channels-last": true,
	"log-every": true, "log-format": true, "no-progress": true, "resume": true, "skip-test": true, "keep-last": true,
	"ckpt-every": true, "val-every": true, "data-dir": true}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// configFromFlags applies the train flags to cfg through trainer.SetOption, the one mapping from
// flag names to Config fields (experiment specs use it too). With only == nil every flag applies,
// defaults included; otherwise only the flags set on the command line that only accepts.
func configFromFlags(c *cli.Context, cfg trainer.Config, only func(string) bool) (trainer.Config, error) {
	for _, name := range trainer.OptionNames() {
		if only != nil && !(c.IsSet(name) && only(name)) {
			continue
		}
		if err := trainer.SetOption(&cfg, name, c.Value(name)); err != nil {
			return cfg, fmt.Errorf("--%s: %w", name, err)
		}
	}
	return cfg, nil
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a classifier (HDGE by default) and save checkpoints to a run directory",
		Description: `Trains a WideResNet with cross-entropy or HDGE and writes a run directory with config.json,
metrics.jsonl, train.log and checkpoints/ (step-N.pt, best.pt; torch.load reads them).
Ctrl-C saves a checkpoint and exits; --resume RUN continues exactly where it stopped.

Example: hdge-torch train --dataset fashion-mnist --objective hdge --epochs 2`,
		Flags:  trainFlags(trainer.Defaults()),
		Action: runTrain,
	}
}

func runTrain(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("train takes no arguments, got %q (flags start with --)", c.Args().First()), 2)
	}
	var cfg trainer.Config
	var err error
	if r := c.String("resume"); r != "" {
		dir := r
		if st, err := os.Stat(r); err == nil && !st.IsDir() {
			dir = filepath.Dir(filepath.Dir(r))
		}
		base, err := trainer.ReadConfig(dir)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--resume %s: %v", r, err), 2)
		}
		for _, f := range c.FlagNames() {
			if c.IsSet(f) && !resumable[f] {
				return cli.Exit(fmt.Sprintf("--%s cannot change when resuming: the run's own config is used (resumable: --epochs, --steps, --threads, --device, --workers, logging flags)", f), 2)
			}
		}
		cfg, err = configFromFlags(c, base, func(n string) bool { return resumable[n] })
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		cfg.Out = dir
	} else {
		cfg, err = configFromFlags(c, trainer.Defaults(), nil)
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if cfg.Out == "" {
			name := strings.NewReplacer("/", "_", ":", "_").Replace(cfg.Dataset)
			cfg.Out = filepath.Join("runs", fmt.Sprintf("%s-%s-%s", name, cfg.Objective, time.Now().Format("20060102-150405")))
		}
	}
	if err := cfg.Validate(); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	log, progress, err := commandLogging(c, "--out", cfg.Out, "train.log")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	opts := trainer.Options{Log: log, Progress: progress, Resume: c.String("resume"), SkipTest: c.Bool("skip-test")}
	sum, err := trainer.Train(c.Context, cfg, opts)
	if errors.Is(err, trainer.ErrInterrupted) {
		fmt.Fprintf(os.Stderr, "interrupted at step %d; checkpoint %s\nresume with: hdge-torch train --resume %s\n", sum.Steps, sum.Checkpoint, cfg.Out)
		return cli.Exit("", exitInterrupted)
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Printf("run %s: %d steps, best val acc %.4f, test acc %.4f, %.0f img/s, checkpoint %s\n",
		sum.RunDir, sum.Steps, sum.BestValAcc, sum.TestAcc, sum.ImgPerSec, sum.Checkpoint)
	return nil
}

// commandLogging makes a command's output folder, its logger (console or JSON on stderr, JSON in
// dir/file) and, when stderr is a terminal showing console logs, the writer for progress bars.
// what names the folder in errors (a flag or a spec key).
func commandLogging(c *cli.Context, what, dir, file string) (*zap.Logger, io.Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, cli.Exit(fmt.Sprintf("%s: %v", what, err), 2)
	}
	log, err := newLogger(c.String("log-format"), filepath.Join(dir, file))
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), 2)
	}
	var progress io.Writer
	if !c.Bool("no-progress") && term.IsTerminal(int(os.Stderr.Fd())) && c.String("log-format") == "console" {
		progress = os.Stderr
	}
	return log, progress, nil
}

// newLogger logs to stderr (console or JSON) and, as JSON, to a file in the run directory.
func newLogger(format, file string) (*zap.Logger, error) {
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	default:
		return nil, fmt.Errorf("--log-format: unknown value %q (want console or json)", format)
	}
	cores := []zapcore.Core{zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zap.InfoLevel)}
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		cores = append(cores, zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(f), zap.DebugLevel))
	}
	return zap.New(zapcore.NewTee(cores...)), nil
}
