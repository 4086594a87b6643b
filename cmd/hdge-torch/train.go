package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// cliOnlyTrainFlags are the train flags that are not part of a run's configuration.
var cliOnlyTrainFlags = []cli.Flag{
	&cli.StringFlag{Name: "resume", Category: "run", Usage: "continue a run: its directory or a checkpoint file"},
	&cli.StringFlag{Name: "regime", Value: "cpu", Category: "run", Usage: "starting point of the settings, which flags set here override: cpu (the defaults: batch norm, Adam 1e-3, a 200-step warm-up; best accuracy and calibration in short CPU runs) or paper (the paper's and JEM's set-up: --norm none --lr 1e-4 --warmup 1000, σ 0.03, batch 64; what the paper's OOD, calibration and generation results use, and what JEM needs)"},
	&cli.StringFlag{Name: "log-format", Value: "console", Category: "run", Usage: "console or json"},
	&cli.BoolFlag{Name: "no-progress", Category: "run", Usage: "log lines instead of a progress bar even on a terminal"},
	&cli.BoolFlag{Name: "skip-test", Category: "run", Usage: "skip the test-set evaluation at the end"},
}

// trainFlags are the declared settings' flags (trainer.Settings) and the CLI's own.
func trainFlags() []cli.Flag { return append(trainer.Settings().Flags(), cliOnlyTrainFlags...) }

// resumeConflicts lists the flags set on the command line that would change what a resumed run
// learns: a flag that repeats the run's own value is no change.
func resumeConflicts(c *cli.Context, base trainer.Config) ([]string, error) {
	var bad []string
	for _, st := range trainer.Settings() {
		if !c.IsSet(st.Name) || st.Kind != settings.Learnt {
			continue
		}
		probe := base
		if err := trainer.SetOption(&probe, st.Name, c.Value(st.Name)); err != nil {
			return nil, fmt.Errorf("--%s: %w", st.Name, err)
		}
		if fmt.Sprint(st.Get(&probe)) != fmt.Sprint(st.Get(&base)) {
			bad = append(bad, fmt.Sprintf("--%s (the run has %s)", st.Name, settings.Text(st.Get(&base))))
		}
	}
	return bad, nil
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a classifier (HDGE by default) and save checkpoints to a run directory",
		Description: `Trains a WideResNet or ResNet with an objective (HDGE by default; ` + strings.Join(trainer.ObjectiveNames(), ", ") + `)
and writes a run directory with config.json, metrics.jsonl, train.log, tensorboard/ and checkpoints/
(step-N.pt, best.pt; torch.load reads them).
Ctrl-C saves a checkpoint and exits; --resume RUN continues exactly where it stopped.

Example: hdge-torch train --dataset fashion-mnist --objective hdge --epochs 2`,
		Flags:        trainFlags(),
		Action:       runTrain,
		OnUsageError: trainUsageError,
	}
}

// trainUsageError answers a bare --channels-last at the end of the line (it was a bool flag) with
// the spelling to use; other usage errors print as urfave/cli prints them.
func trainUsageError(c *cli.Context, err error, _ bool) error {
	if strings.Contains(err.Error(), "flag needs an argument: -channels-last") {
		return cli.Exit("--channels-last takes a value (auto, true or false): write --channels-last=true", 2)
	}
	fmt.Fprintf(c.App.Writer, "Incorrect Usage: %s\n\n", err)
	_ = cli.ShowSubcommandHelp(c)
	return err
}

func runTrain(c *cli.Context) error {
	// --channels-last was a bool flag: a bare --channels-last now takes the next argument as its
	// value, which would otherwise surface as a stray argument or an unknown value.
	if v := c.String("channels-last"); strings.HasPrefix(v, "-") {
		return cli.Exit(fmt.Sprintf("--channels-last takes a value (auto, true or false) and took the next argument %q: write --channels-last=true", v), 2)
	}
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("train takes no arguments, got %q (flags start with --)", c.Args().First()), 2)
	}
	w, launched, ddpErr := startDataParallel(c) // cmd/hdge-torch/ddp.go
	if launched || ddpErr != nil {
		return ddpErr
	}
	defer w.close()
	var cfg trainer.Config
	var err error
	if r := c.String("resume"); r != "" {
		if c.IsSet("regime") {
			return cli.Exit("--regime cannot be used with --resume: a resumed run keeps its own settings", 2)
		}
		dir := r
		if st, err := os.Stat(r); err == nil && !st.IsDir() {
			dir = filepath.Dir(filepath.Dir(r))
		}
		base, err := trainer.ReadConfig(dir)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--resume %s: %v", r, err), 2)
		}
		bad, err := resumeConflicts(c, base)
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if len(bad) > 0 {
			return cli.Exit(fmt.Sprintf("%s cannot change when resuming: the run's own config is used (a resumed run may change its length, --epochs or --steps, and how it runs: threads, device, workers, logging, checkpoints)",
				strings.Join(bad, ", ")), 2)
		}
		cfg, err = configFromFlags(c, base, func(n string) bool {
			k, _ := trainer.OptionKind(n)
			return k != settings.Learnt
		})
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		cfg.Out = dir
	} else {
		base, err := trainer.Regime(c.String("regime"))
		if err != nil {
			return cli.Exit("--regime: "+err.Error(), 2)
		}
		cfg, err = configFromFlags(c, base, func(string) bool { return true })
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if cfg.Out == "" {
			name := strings.NewReplacer("/", "_", ":", "_").Replace(cfg.Dataset)
			cfg.Out = filepath.Join("runs", fmt.Sprintf("%s-%s-%s", name, cfg.Objective, time.Now().Format("20060102-150405")))
		}
	}
	w.prepare(&cfg)
	if err := cfg.Validate(); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	log, progress, err := w.logging(c, cfg.Out)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if _, warning, old := trainer.DeprecatedObjective(c.String("objective")); old && c.IsSet("objective") {
		log.Warn(warning)
	}
	opts := trainer.Options{Log: log, Progress: progress, Resume: c.String("resume"), SkipTest: c.Bool("skip-test"), Group: w.trainGroup()}
	sum, err := trainer.Train(c.Context, cfg, opts)
	if errors.Is(err, trainer.ErrInterrupted) && !w.leader() {
		return cli.Exit("", exitInterrupted)
	}
	if errors.Is(err, trainer.ErrInterrupted) {
		fmt.Fprintf(os.Stderr, "interrupted at step %d; checkpoint %s\nresume with: hdge-torch train --resume %s\n", sum.Steps, sum.Checkpoint, cfg.Out)
		return cli.Exit("", exitInterrupted)
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if !w.leader() {
		return nil
	}
	if sum.AlreadyDone {
		fmt.Printf("run %s was already complete at step %d; nothing was trained. Last checkpoint: %s\n", sum.RunDir, sum.Steps, sum.Checkpoint)
		return nil
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

// configFromFlags applies the train flags to cfg through the declared settings, the one mapping
// from flag names to Config fields (experiment specs use it too). With only == nil every flag
// applies, defaults included; otherwise only the flags set on the command line that only accepts.
func configFromFlags(c *cli.Context, cfg trainer.Config, only func(string) bool) (trainer.Config, error) {
	err := trainer.Settings().FromFlags(c, &cfg, only)
	return cfg, err
}
