package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// ErrInterrupted is returned when the context was cancelled: the training run in progress saved a
// checkpoint, and running the same spec again continues where this sitting stopped.
var ErrInterrupted = errors.New("experiment interrupted")

// Options are the parts of a sitting that do not change its results.
type Options struct {
	Log *zap.Logger
	// Progress, when non-nil, receives progress bars (a terminal); otherwise progress is logged.
	Progress io.Writer
	// Only restricts the sitting to these runs (nil: all).
	Only []string
	// Seeds restricts the sitting to these of the spec's seeds (nil: all).
	Seeds []uint64
	// Jobs is how many units train and evaluate at once, in one process (0 or 1: one after the
	// other). Give each run as many threads as cores / Jobs.
	Jobs int
}

// Unit is one run trained with one seed.
type Unit struct {
	Run  string
	Seed uint64
	Dir  string
	cfg  trainer.Config
	// needs is the folder of the unit this one is initialised from (--init {run:NAME}), "" if none.
	needs string
}

// Units lists what a sitting covers, seed by seed, so that an early stop leaves every run with
// the same number of seeds and the tables already compare like with like.
func (s *Spec) Units(only []string, seeds []uint64) ([]Unit, error) {
	for _, r := range only {
		if s.run(r) == nil {
			return nil, fmt.Errorf("--only: no run is named %q (the spec has %s)", r, strings.Join(s.RunNames(), ", "))
		}
	}
	for _, seed := range seeds {
		if !slices.Contains(s.Seeds, seed) {
			return nil, fmt.Errorf("--seeds: %d is not among the spec's seeds %v; add it to the spec's \"seeds\" so the results record it", seed, s.Seeds)
		}
	}
	if only != nil {
		// A chained run needs its stage 1: select it too (it is skipped if already complete).
		only = slices.Clone(only)
		for i := len(s.Runs) - 1; i >= 0; i-- {
			if dep := s.dependency(s.Runs[i]); dep != "" && slices.Contains(only, s.Runs[i].Name) && !slices.Contains(only, dep) {
				only = append(only, dep)
			}
		}
	}
	var out []Unit
	for _, seed := range s.Seeds {
		if seeds != nil && !slices.Contains(seeds, seed) {
			continue
		}
		for _, r := range s.Runs {
			if only != nil && !slices.Contains(only, r.Name) || !slices.Contains(s.RunSeeds(r), seed) {
				continue
			}
			cfg, err := s.config(r, seed)
			if err != nil {
				return nil, err
			}
			u := Unit{Run: r.Name, Seed: seed, Dir: cfg.Out, cfg: cfg}
			if dep := s.dependency(r); dep != "" {
				u.needs = s.RunDir(dep, seed)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// checkDir compares a run directory's recorded config with the spec's: results are only ever
// continued or reused for the settings the spec names.
func (u Unit) checkDir() error {
	old, err := trainer.ReadConfig(u.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if diff := configDiff(old, u.cfg); len(diff) > 0 {
		return fmt.Errorf("%s was trained with other settings than the spec now gives (%s); move that folder away (or set another \"out\") to train it afresh",
			u.Dir, strings.Join(diff, "; "))
	}
	if why := lengthChange(old, u.cfg); why != "" {
		return fmt.Errorf("%s was trained for --epochs %d --steps %d, the spec now asks --epochs %d --steps %d: %s; move that folder away to train it afresh",
			u.Dir, old.Epochs, old.Steps, u.cfg.Epochs, u.cfg.Steps, why)
	}
	return nil
}

// lengthChange says why a run trained with old cannot be continued to the length of cfg, or ""
// when it can: the same length, or a longer one continued from its newest checkpoint.
func lengthChange(old, cfg trainer.Config) string {
	switch {
	case old.SameLength(cfg):
		return ""
	case old.Schedule == "cosine":
		return "with --schedule cosine the learning rate follows the run's length, so it cannot be lengthened"
	case old.Steps == 0 && cfg.Steps == 0 && cfg.Epochs > old.Epochs, old.Steps > 0 && cfg.Steps > old.Steps:
		return ""
	}
	return "a run can be lengthened but not shortened"
}

// configDiff lists the settings, by flag, in which two configs differ in what they learn (the
// length is checked apart, by lengthChange; operational settings may differ).
func configDiff(a, b trainer.Config) []string { return trainer.Differences(a, b) }

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// checkOODData loads each named OOD set once before anything is trained: a missing set would
// otherwise stop the sitting only after the first run has trained.
func (s *Spec) checkOODData(runDataDir string) error {
	dir := s.eval.cfg.DataDir
	if dir == "" {
		dir = runDataDir
	}
	src := data.DefaultSource(dir)
	for _, set := range s.eval.cfg.OOD {
		if set.Synthetic() {
			continue
		}
		if _, err := src.Load(set.Spec, data.Test); err != nil {
			return fmt.Errorf("eval: OOD set %s: %v", set.Name, err)
		}
	}
	return nil
}

// runner carries one sitting.
type runner struct {
	spec *Spec
	opts Options
	log  *zap.Logger
}

// fatalError stops the whole sitting: a problem every run would hit (an OOD set that is not
// there, a bad eval setting), as opposed to one run failing.
type fatalError struct{ error }

func (e fatalError) Unwrap() error { return e.error }

// Run trains and evaluates every unit the options select that is not done yet, then aggregates
// all finished units of the spec into OUT/results.md and OUT/results.json. A run that fails (a
// non-finite loss, say) is recorded and the others go on; the error then lists the failures.
// On cancellation it returns ErrInterrupted after saving what was done.
func Run(ctx context.Context, s *Spec, opts Options) (*Results, error) {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	units, err := s.Units(opts.Only, opts.Seeds)
	if err != nil {
		return nil, &SpecError{Path: s.Path, Err: err}
	}
	for _, u := range units {
		if err := u.checkDir(); err != nil {
			return nil, &SpecError{Path: s.Path, Err: err}
		}
	}
	if len(units) > 0 {
		if err := s.checkOODData(units[0].cfg.DataDir); err != nil {
			return nil, &SpecError{Path: s.Path, Err: err}
		}
	}
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return nil, fmt.Errorf("out %s: %w", s.Out, err)
	}
	unlock, err := lockDir(s.Out)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if opts.Jobs > 1 {
		opts.Progress = nil // one progress bar per unit would garble a terminal: log lines instead
	}
	r := &runner{spec: s, opts: opts, log: log}
	log.Info("experiment", zap.String("name", s.Name), zap.String("spec", s.Path), zap.String("out", s.Out),
		zap.Int("units", len(units)), zap.Strings("runs", s.RunNames()), zap.Any("seeds", s.Seeds))
	start := time.Now()
	jobs := max(opts.Jobs, 1)
	// A sitting stops taking new units at an interruption or a fatal error; units already running
	// see the interruption through ctx and save a checkpoint.
	uctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu                 sync.Mutex
		failures           []string
		interrupted, fatal error
		wg                 sync.WaitGroup
		slots              = make(chan struct{}, jobs)
		finished           = map[string]chan struct{}{} // by unit folder: closed when the unit is over
	)
	for _, u := range units {
		finished[u.Dir] = make(chan struct{})
	}
	for i, u := range units {
		slots <- struct{}{}
		if uctx.Err() != nil { // interrupted, or a fatal error called stop
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			defer close(finished[u.Dir])
			if ch, ok := finished[u.needs]; ok {
				// Stage 2 waits for its stage 1, which was handed a slot earlier (units are in spec
				// order), so waiting here cannot starve it.
				select {
				case <-ch:
				case <-uctx.Done():
					return
				}
			}
			ulog := log.With(zap.String("run", u.Run), zap.Uint64("seed", u.Seed))
			ulog.Info("unit", zap.Int("index", i+1), zap.Int("of", len(units)), zap.String("dir", u.Dir))
			err := r.do(uctx, u, ulog)
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			var fe fatalError
			switch {
			case errors.As(err, &fe):
				if fatal == nil {
					fatal = fe.error
				}
				stop()
			case ctx.Err() != nil: // the sitting was interrupted (Ctrl-C): the unit saved a checkpoint
				interrupted = ErrInterrupted
			case uctx.Err() != nil: // stopped because another unit hit a fatal error
			default:
				ulog.Error("run failed; going on with the others", zap.Error(err))
				failures = append(failures, fmt.Sprintf("%s seed %d: %v", u.Run, u.Seed, err))
			}
		}()
	}
	wg.Wait()
	log.Info("sitting over", zap.Duration("wall", time.Since(start).Round(time.Second)))
	res, aerr := Aggregate(s)
	if aerr == nil {
		log.Info("results", zap.String("markdown", filepath.Join(s.Out, ResultsMarkdown)), zap.String("json", filepath.Join(s.Out, ResultsJSON)),
			zap.Int("done", res.Done), zap.Int("of", res.Total))
	}
	switch {
	case interrupted != nil:
		return res, interrupted
	case fatal != nil:
		return res, fatal
	case aerr != nil:
		return res, aerr
	case len(failures) > 0:
		return res, fmt.Errorf("%d of %d runs failed (recorded in their %s; running again retries them):\n  %s",
			len(failures), len(units), StateFile, strings.Join(failures, "\n  "))
	}
	return res, nil
}

// do trains (or continues, or skips) one unit, then evaluates it unless its evaluation is current.
func (r *runner) do(ctx context.Context, u Unit, log *zap.Logger) error {
	st, err := readState(u.Dir)
	if err != nil {
		return err
	}
	if st == nil {
		st = &State{Run: u.Run, Seed: u.Seed}
	}
	steps, err := r.train(ctx, u, st, log)
	if err != nil {
		return err
	}
	return r.evaluate(ctx, u, st, steps, log)
}

func readSummary(dir string) (*trainer.Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, summaryFile))
	if err != nil {
		return nil, err
	}
	var s trainer.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, summaryFile), err)
	}
	return &s, nil
}

// train returns the run's step count once it is complete.
func (r *runner) train(ctx context.Context, u Unit, st *State, log *zap.Logger) (int, error) {
	if sum, err := readSummary(u.Dir); err == nil {
		old, err := trainer.ReadConfig(u.Dir)
		if err != nil {
			return 0, err
		}
		if old.Epochs == u.cfg.Epochs && old.Steps == u.cfg.Steps {
			log.Info("training already complete: skipped", zap.Int("steps", sum.Steps))
			return sum.Steps, nil
		}
		if _, err := model.ResolveCheckpoint(u.Dir, false); err != nil {
			return 0, recordsOnly(u.Dir, "the spec asks for a longer run")
		}
		// Lengthened in the spec: the old summary no longer describes the run, and must not make a
		// sitting interrupted during the extension look complete.
		log.Info("spec asks for a longer run: continuing it", zap.Int("epochs_before", old.Epochs), zap.Int("epochs", u.cfg.Epochs),
			zap.Int("steps_before", old.Steps), zap.Int("steps", u.cfg.Steps))
		if err := os.Remove(filepath.Join(u.Dir, summaryFile)); err != nil {
			return 0, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	resume, from := "", 0
	if ck, err := model.ResolveCheckpoint(u.Dir, false); err == nil {
		resume = u.Dir
		from = checkpointStep(ck)
		log.Info("resuming", zap.String("checkpoint", ck), zap.Int("step", from))
	} else if exists(u.Dir) {
		// A sitting that died before its first checkpoint: start again, without its log records.
		if err := os.Remove(filepath.Join(u.Dir, "metrics.jsonl")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	if err := os.MkdirAll(u.Dir, 0o755); err != nil {
		return 0, err
	}
	tlog, closeLog, err := teeFile(log, filepath.Join(u.Dir, "train.log"))
	if err != nil {
		return 0, err
	}
	defer closeLog()
	log.Info("training", zap.String("objective", u.cfg.Objective), zap.String("model", u.cfg.Model), zap.Int("epochs", u.cfg.Epochs), zap.Int("steps", u.cfg.Steps))
	seg := Segment{Started: time.Now().UTC(), FromStep: from, Hardware: hardware(u.cfg.Device)}
	sum, err := trainer.Train(ctx, u.cfg, trainer.Options{Log: tlog, Progress: r.opts.Progress, Resume: resume, SkipTest: true})
	seg.Seconds = time.Since(seg.Started).Seconds()
	seg.Hardware.Threads = hardware(u.cfg.Device).Threads // Train sets the thread count
	var de *trainer.DivergedError
	switch {
	case err == nil:
		seg.Outcome = "complete"
	case errors.Is(err, trainer.ErrInterrupted):
		seg.Outcome = "interrupted"
	case errors.As(err, &de) && sum != nil && sum.Diverged != nil:
		// Ended by divergence after validating: its best checkpoint is the method's result here.
		seg.Outcome, seg.Error = "diverged", err.Error()
	default:
		seg.Outcome, seg.Error = "failed", err.Error()
	}
	if sum != nil && seg.Outcome != "failed" {
		seg.ToStep = sum.Steps
		seg.Images = (sum.Steps - from) * u.cfg.BatchSize
	}
	st.Segments = append(st.Segments, seg)
	if seg.Outcome == "failed" {
		st.Failed = "training: " + seg.Error
	}
	if werr := writeState(u.Dir, st); werr != nil {
		return 0, errors.Join(err, werr)
	}
	switch seg.Outcome {
	case "interrupted":
		log.Info("interrupted: checkpoint saved; run the same command again to continue", zap.Int("step", sum.Steps))
		return 0, fmt.Errorf("%w: %s seed %d at step %d", ErrInterrupted, u.Run, u.Seed, sum.Steps)
	case "failed":
		return 0, fmt.Errorf("training: %w", err)
	case "diverged":
		log.Warn("the run ended by divergence: evaluating its best checkpoint, noted in the results", zap.Int("step", sum.Steps),
			zap.Int("restarts", sum.Diverged.Restarts), zap.String("reason", sum.Diverged.Reason), zap.Float64("best_val_acc", sum.BestValAcc))
		return sum.Steps, nil
	}
	log.Info("trained", zap.Int("steps", sum.Steps), zap.Float64("seconds", seg.Seconds), zap.Float64("best_val_acc", sum.BestValAcc),
		zap.Float64("img_per_s", sum.ImgPerSec))
	return sum.Steps, nil
}

// recordsOnly is the error for a finished run folder that holds its records (the files
// experiments/.gitignore lets git keep: config, summary, metrics.jsonl, experiment.json,
// eval/metrics.json) but not its checkpoints, as in a fresh clone, when the spec needs the model
// again. Nothing is deleted: the records stay in the tables until the run is trained afresh.
func recordsOnly(dir, why string) error {
	return fmt.Errorf("%s holds a finished run's records but not its checkpoints (a clone keeps only the records), and %s: "+
		"that needs the model; move the folder away to train the run afresh, or restore its checkpoints/", dir, why)
}

// checkpointStep reads N from a step-N.pt name (0 for other names).
func checkpointStep(path string) int {
	name := strings.TrimSuffix(filepath.Base(path), ".pt")
	n, err := strconv.Atoi(strings.TrimPrefix(name, "step-"))
	if err != nil {
		return 0
	}
	return n
}

func (r *runner) evaluate(ctx context.Context, u Unit, st *State, steps int, log *zap.Logger) error {
	out := filepath.Join(u.Dir, evalDir)
	metrics := filepath.Join(out, suite.MetricsFile)
	key := r.spec.evalKey()
	samples := r.spec.eval.cfg.Samples
	if samples != "" && !filepath.IsAbs(samples) {
		samples = filepath.Join(u.Dir, samples) // a spec names the samples of each run from its folder
	}
	if exists(metrics) && st.Eval != nil && st.Eval.Settings == key && st.Eval.TrainSteps == steps {
		if dir := newSamples(u.Dir, samples, metrics); dir != "" {
			return r.addSamplesToEval(ctx, out, dir, log)
		}
		log.Info("evaluation already done: skipped", zap.String("metrics", metrics))
		return nil
	}
	if exists(metrics) {
		log.Info("evaluation is out of date (other eval settings or a longer run): evaluating again")
	}
	if _, err := model.ResolveCheckpoint(u.Dir, false); err != nil && exists(metrics) {
		return recordsOnly(u.Dir, "its evaluation is out of date (other eval settings or a longer run)")
	}
	// Gone until the new evaluation completes, so an interrupted one cannot pass for current.
	if err := os.Remove(metrics); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	elog, closeLog, err := teeFile(log, filepath.Join(out, "eval.log"))
	if err != nil {
		return err
	}
	defer closeLog()
	cfg := r.spec.eval.cfg
	cfg.Checkpoint, cfg.Out, cfg.Threads, cfg.Log, cfg.Progress = u.Dir, out, u.cfg.Threads, elog, r.opts.Progress
	cfg.Samples = samples
	// One spec's scores cover every run: pxsim is computed for the runs that keep a queue.
	cfg.PXSimWhereQueued = true
	if r.spec.eval.last {
		if cfg.Checkpoint, err = model.ResolveCheckpoint(u.Dir, false); err != nil {
			return err
		}
	}
	log.Info("evaluating", zap.String("out", out))
	rec := &EvalRecord{Started: time.Now().UTC(), Settings: key, TrainSteps: steps}
	rep, err := suite.Run(ctx, cfg)
	rec.Seconds = time.Since(rec.Started).Seconds()
	rec.Hardware = hardware(u.cfg.Device)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("interrupted during evaluation; it is redone next time")
			return fmt.Errorf("%w: evaluating %s seed %d", ErrInterrupted, u.Run, u.Seed)
		}
		var ie *suite.InputError
		if errors.As(err, &ie) && ie.Flag != "checkpoint" {
			return fatalError{&SpecError{Path: r.spec.Path, Err: fmt.Errorf("eval: %w", err)}}
		}
		st.Failed = "evaluation: " + err.Error()
		if werr := writeState(u.Dir, st); werr != nil {
			return errors.Join(err, werr)
		}
		return fmt.Errorf("evaluation: %w", err)
	}
	st.Eval, st.Failed = rec, ""
	if err := writeState(u.Dir, st); err != nil {
		return err
	}
	fields := []zap.Field{zap.Float64("seconds", rec.Seconds)}
	if rep.Classification != nil {
		fields = append(fields, zap.Float64("accuracy", rep.Classification.Accuracy))
	}
	if rep.Calibration != nil {
		fields = append(fields, zap.Float64("ece", rep.Calibration.ECE))
	}
	log.Info("evaluated", fields...)
	return nil
}

// teeFile adds a JSON log file to a logger, as the train and eval commands keep one per folder.
func teeFile(log *zap.Logger, path string) (*zap.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(f), zap.DebugLevel)
	return zap.New(zapcore.NewTee(log.Core(), core)), func() { _ = f.Close() }, nil
}
