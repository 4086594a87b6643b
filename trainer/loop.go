package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/internal/tbevent"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// ErrInterrupted is returned when the context was cancelled (Ctrl-C): a checkpoint was saved and
// the run can be continued with --resume.
var ErrInterrupted = errors.New("training interrupted")

// Summary is what a finished (or interrupted) run reports.
type Summary struct {
	RunDir     string  `json:"run_dir"`
	Steps      int     `json:"steps"`
	Epochs     int     `json:"epochs"`
	ValAcc     float64 `json:"val_acc"`
	BestValAcc float64 `json:"best_val_acc"`
	TestAcc    float64 `json:"test_acc"`
	Seconds    float64 `json:"seconds"`
	ImgPerSec  float64 `json:"img_per_s"`
	Precision  string  `json:"precision"`
	Layout     string  `json:"layout"` // the memory layout trained in, and why (model.ChosenLayout)
	DataWait   float64 `json:"data_wait_frac"`
	Checkpoint string  `json:"checkpoint"`
	// AlreadyDone is true when a resumed run had already reached its length.
	AlreadyDone bool `json:"already_done,omitempty"`
	// Diverged is set when the run ended by divergence (Train's error is a *DivergedError): Steps
	// is where it stopped and Checkpoint its best-validation checkpoint.
	Diverged *Divergence `json:"diverged,omitempty"`
}

// Options are the parts of a run that are not part of its recorded configuration.
type Options struct {
	Log *zap.Logger
	// Progress, when non-nil, receives a progress bar (a terminal); otherwise progress is logged.
	Progress io.Writer
	// Resume is a run directory or checkpoint file to continue from.
	Resume string
	// SkipTest skips the final test-set evaluation.
	SkipTest bool
	// Group, when it has more than one rank, makes the run one rank of data-parallel training
	// (trainer/ddp.go): --batch-size is per process, rank 0 alone writes.
	Group Group
}

type runState struct {
	cfg      Config
	opts     Options
	log      *zap.Logger
	dev      torch.Device
	model    *model.Model
	stepNet  *model.Model // what steps train: model, or its frozen-encoder view with --freeze-features
	opt      Optimizer
	obj      Objective
	gens     map[string]*torch.Generator // every generator the run owns, by checkpoint name
	step     int
	pos      data.Position
	bestVal  float64
	lastCkpt string
	metrics  *os.File
	tb       *tbevent.Writer // nil with --tensorboard=false
	shape    [3]int
	prec     torch.Precision
	div      divergenceState
	par      *parallel // nil in one process
}

// Optimizer is what the loop needs of torch's Adam and SGD.
type Optimizer interface {
	Step() error
	SetLR(lr float64)
	LR() float64
	StepCount() int64
	State() map[string]*torch.Tensor
	LoadState(map[string]*torch.Tensor) error
	Close()
}

// NewOptimizer is the optimizer cfg names over params: Adam with PyTorch's defaults besides the
// learning rate and weight decay, or SGD with momentum.
func NewOptimizer(cfg Config, params []*torch.Tensor) Optimizer {
	if cfg.Optimizer == "sgd" {
		return torch.NewSGD(params, torch.SGDConfig{LR: cfg.LR, Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay})
	}
	ac := torch.DefaultAdamConfig(cfg.LR)
	ac.WeightDecay = cfg.WeightDecay
	return torch.NewAdam(params, ac)
}

// Generator seeds: each of the run's random streams has its own, derived from --seed, so that
// adding draws to one stream never shifts another. The model's initialisation uses --seed itself
// and the data pipeline draws in pure Go from (seed, epoch, index).
const (
	seedObjective = 1 // the objective's draws: the queue's initial values, SGLD noise, PGD starts
	seedDropout   = 2
)

// newGenerators makes the run's generators.
func newGenerators(seed uint64) (map[string]*torch.Generator, error) {
	gens := map[string]*torch.Generator{}
	for name, off := range map[string]uint64{"objective": seedObjective, "dropout": seedDropout} {
		g, err := torch.NewGenerator(seed+off, torch.CPU)
		if err != nil {
			closeGenerators(gens)
			return nil, err
		}
		gens[name] = g
	}
	return gens, nil
}

func closeGenerators(gens map[string]*torch.Generator) {
	for _, g := range gens {
		g.Close()
	}
}

// Train runs (or resumes) a training run. On cancellation it saves a checkpoint and returns
// ErrInterrupted; on a non-finite loss it stops without overwriting the last good checkpoint.
// Every random draw comes from generators the run owns, so runs in one process are independent.
func Train(ctx context.Context, cfg Config, opts Options) (*Summary, error) {
	// Every libtorch call of the run comes from one OS thread: glibc gives each thread its own
	// malloc arena, and a goroutine that moves between threads frees a step's activations into one
	// arena and allocates the next step's from another (README, "One OS thread per run").
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	var resumeFrom string
	if opts.Resume != "" {
		p, err := model.ResolveCheckpoint(opts.Resume, false)
		if err != nil {
			return nil, fmt.Errorf("--resume: %w", err)
		}
		resumeFrom = p
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	threads := cfg.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	torch.SetNumThreads(threads)
	log.Info("libtorch", zap.String("version", torch.Version()), zap.Int("threads", torch.NumThreads()),
		zap.Bool("cuda", torch.CUDAAvailable()))

	src := data.DefaultSource(cfg.DataDir)
	full, err := src.Load(cfg.Dataset, data.Split("train"))
	if err != nil {
		return nil, fmt.Errorf("--dataset: %w", err)
	}
	if cfg.ValSize >= full.N {
		return nil, fmt.Errorf("--val-size %d leaves no training images (the set has %d)", cfg.ValSize, full.N)
	}
	train, val := full, (*data.Dataset)(nil)
	if cfg.ValSize > 0 {
		train, val = data.SplitValidation(full, cfg.ValSize, cfg.Seed)
	}
	classes := len(full.Classes)

	leader := opts.Group == nil || opts.Group.Rank() == 0
	world := 1
	if opts.Group != nil {
		world = opts.Group.WorldSize()
	}
	var mf *os.File
	if leader {
		if err := os.MkdirAll(model.CheckpointDir(cfg.Out), 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		cj, err := withWorld(cfg, world)
		if err != nil {
			return nil, err
		}
		if err := writeRawJSON(filepath.Join(cfg.Out, "config.json"), cj); err != nil {
			return nil, fmt.Errorf("--out: writing config: %w", err)
		}
		if mf, err = os.OpenFile(filepath.Join(cfg.Out, MetricsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		defer mf.Close()
	}

	// --channels-last auto is resolved here, once, by model.ResolveLayout: config.json keeps
	// "auto", so a run resumed on another machine takes that machine's faster layout. The rule
	// reads only the device, the CPU's flags and the norm, so every rank of a data-parallel run on
	// one machine picks the same. Ranks on machines with different CPUs may not; that is safe: the
	// collectives copy tensors in logical (index) order whatever their strides (cgo/dist.cpp), a
	// layout only changes the float rounding of a rank's own forward and backward, and the
	// all-reduced gradients, hence the weights, stay identical on every rank (checkReplicas).
	m, err := model.Build(cfg.modelSettings(), full.C, classes, cfg.Seed)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	// "auto" is resolved on every start, so a run resumed on another machine uses what that one
	// computes natively; an explicit bf16 or fp16 without native support is an error.
	prec, warning, err := torch.ResolvePrecision(cfg.Precision, cfg.Precision != "auto", m.Dev)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		log.Warn(warning)
	}
	gens, err := newGenerators(cfg.Seed)
	if err != nil {
		return nil, err
	}
	defer closeGenerators(gens)
	m.SetDropoutGenerator(gens["dropout"])
	st := &runState{cfg: cfg, opts: opts, log: log, dev: m.Dev, model: m, stepNet: trainedModel(cfg, m), metrics: mf, gens: gens,
		shape: [3]int{full.C, full.H, full.W}, prec: prec}
	if cfg.Init != "" && resumeFrom == "" {
		from, err := loadInit(m, cfg.Init)
		if err != nil {
			return nil, err
		}
		log.Info("initialised", zap.String("init", cfg.Init), zap.String("checkpoint", from), zap.Bool("freeze_features", cfg.FreezeFeatures))
	}
	if cfg.TensorBoard && leader {
		if st.tb, err = tbevent.NewWriter(filepath.Join(cfg.Out, "tensorboard")); err != nil {
			return nil, fmt.Errorf("--tensorboard: %w", err)
		}
		defer st.tb.Close()
	}
	st.obj, err = NewObjective(Env{Config: cfg, Classes: classes, Shape: st.shape, Model: st.stepNet, Gen: gens["objective"], Dev: m.Dev})
	if err != nil {
		return nil, err
	}
	defer st.obj.Close()
	st.opt = NewOptimizer(cfg, append(st.stepNet.Parameters(), st.obj.Parameters()...))
	defer st.opt.Close()
	st.par = newParallel(opts.Group, m.Dev, append(m.Parameters(), st.obj.Parameters()...), buffersOf(m))
	if st.par != nil && cfg.OnDivergence == "restart" {
		// Each rank would decide on its own slice's loss to roll back, and the replicas part.
		return nil, fmt.Errorf("--on-divergence restart is not supported with %d data-parallel processes: use --on-divergence stop", st.par.world())
	}
	if resumeFrom != "" {
		if err := st.restore(resumeFrom); err != nil {
			return nil, err
		}
		log.Info("resumed", zap.String("checkpoint", resumeFrom), zap.Int("step", st.step),
			zap.Int("epoch", st.pos.Epoch), zap.Int("batch", st.pos.Batch))
		if st.div, err = resumedDivergence(cfg.Out, st.step); err != nil {
			return nil, err
		}
		if st.div.restarts > 0 {
			log.Info("resumed after divergence restarts", zap.Int("restarts", st.div.restarts),
				zap.Int("max_restarts", cfg.MaxRestarts), zap.Float64("lr_scale", st.div.scale()))
		}
	}
	if err := st.par.syncState(); err != nil {
		return nil, err
	}
	log.Info("run", zap.String("dir", cfg.Out), zap.String("dataset", cfg.Dataset), zap.Int("train", train.N),
		zap.Int("val", cfg.ValSize), zap.String("model", cfg.Model), zap.Int64("params", m.NumParams()),
		zap.String("objective", cfg.Objective), zap.String("device", m.Dev.String()), zap.String("precision", prec.String()),
		zap.String("layout", m.Layout.String()))

	sum, err := st.trainWithRestarts(func() (*Summary, error) { return st.loop(ctx, train, val) })
	if err != nil {
		var de *DivergedError
		if errors.As(err, &de) && leader {
			ds, werr := st.divergedSummary(de)
			if werr != nil {
				return sum, errors.Join(err, werr)
			}
			if ds != nil {
				sum = ds
			}
		}
		return sum, err
	}
	if sum.AlreadyDone {
		return sum, nil
	}
	if !leader {
		return sum, nil
	}
	if !opts.SkipTest {
		test, err := src.Load(cfg.Dataset, data.Split("test"))
		if err != nil {
			return sum, fmt.Errorf("loading test split: %w", err)
		}
		acc, loss, err := m.Evaluate(test, cfg.Noise, 256)
		if err != nil {
			return sum, fmt.Errorf("test evaluation: %w", err)
		}
		sum.TestAcc = acc
		if err := st.writeMetrics(map[string]any{"step": st.step, "epoch": st.pos.Epoch, "test_acc": acc, "test_loss": loss}); err != nil {
			return sum, err
		}
		log.Info("test", zap.Float64("acc", acc), zap.Float64("loss", loss))
	}
	if err := writeJSON(filepath.Join(cfg.Out, "summary.json"), sum); err != nil {
		return sum, fmt.Errorf("--out: %w", err)
	}
	if err := mf.Close(); err != nil {
		return sum, fmt.Errorf("--out: metrics.jsonl: %w", err)
	}
	if st.tb != nil {
		if err := st.tb.Close(); err != nil {
			return sum, fmt.Errorf("--tensorboard: %w", err)
		}
	}
	return sum, nil
}

func (st *runState) restore(path string) error {
	s := torch.NewScope()
	defer s.Close()
	ck, err := model.ReadCheckpoint(s, path)
	if err != nil {
		return err
	}
	old, err := ParseConfig(ck.Config)
	if err != nil {
		return fmt.Errorf("%s: config: %w", path, err)
	}
	if err := checkWorld(path, old, worldOf(ck.Config), st.cfg, st.par.world()); err != nil {
		return err
	}
	if err := st.model.LoadStateDict(ck.Model); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if ck.OptName != st.cfg.Optimizer {
		return fmt.Errorf("%s: optimizer %q in checkpoint, %q in config", path, ck.OptName, st.cfg.Optimizer)
	}
	if err := st.opt.LoadState(ck.OptState); err != nil {
		return fmt.Errorf("%s: optimizer state: %w", path, err)
	}
	if err := st.obj.LoadState(ck.Objective); err != nil {
		return fmt.Errorf("%s: objective state: %w", path, err)
	}
	for name, g := range st.gens {
		b, ok := ck.RNG[name]
		if !ok {
			// A checkpoint from before each run owned its generators: the run goes on, but its
			// draws differ from those an uninterrupted run would have made.
			st.log.Warn("checkpoint has no state for this generator: draws continue from a fresh seed", zap.String("generator", name))
			continue
		}
		if err := g.SetState(b); err != nil {
			return fmt.Errorf("%s: rng.%s: %w", path, name, err)
		}
	}
	st.step, st.pos, st.bestVal = ck.Step, ck.Pos, ck.BestVal
	st.lastCkpt = path
	if st.cfg.Schedule == "cosine" && !old.SameLength(st.cfg) {
		st.log.Warn("the run's length changed: the cosine schedule now decays over the new length, so the learning rate jumps here and the result differs from a run trained at this length from the start",
			zap.Int("epochs_before", old.Epochs), zap.Int("steps_before", old.Steps),
			zap.Int("epochs", st.cfg.Epochs), zap.Int("steps", st.cfg.Steps))
	}
	return nil
}

func (st *runState) checkpoint(best bool) error {
	if !st.par.leader() {
		return nil
	}
	s := torch.NewScope()
	defer s.Close()
	cfg, err := withWorld(st.cfg, st.par.world())
	if err != nil {
		return err
	}
	ck := &model.Checkpoint{
		Model: map[string]*torch.Tensor{}, OptName: st.cfg.Optimizer, OptStep: st.opt.StepCount(),
		OptLR: st.opt.LR(), OptState: st.opt.State(), Objective: st.obj.State(s), RNG: map[string][]byte{},
		Step: st.step, Pos: st.pos, BestVal: st.bestVal, Config: cfg,
	}
	for _, p := range st.model.StateDict() {
		ck.Model[p.Name] = p.T
		ck.ModelKeys = append(ck.ModelKeys, p.Name)
	}
	for name, g := range st.gens {
		b, err := g.State()
		if err != nil {
			return fmt.Errorf("generator %s: %w", name, err)
		}
		ck.RNG[name] = b
	}
	dir := model.CheckpointDir(st.cfg.Out)
	path := filepath.Join(dir, model.StepCheckpointName(st.step))
	if err := ck.Save(path); err != nil {
		return err
	}
	st.lastCkpt = path
	if best {
		if err := ck.Save(filepath.Join(dir, "best.pt")); err != nil {
			return err
		}
	}
	list, err := model.ListCheckpoints(st.cfg.Out)
	if err != nil {
		return err
	}
	for len(list) > st.cfg.KeepLast {
		if err := os.Remove(list[0]); err != nil {
			return err
		}
		list = list[1:]
	}
	return nil
}

// writeMetrics appends one record to metrics.jsonl; a failed write stops the run, since the
// record of what it did would be incomplete.
func (st *runState) writeMetrics(m map[string]any) error {
	if st.metrics == nil { // a data-parallel rank other than 0
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("metrics record: %w", err)
	}
	if _, err := st.metrics.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("--out: writing metrics.jsonl: %w", err)
	}
	if st.tb == nil {
		return nil
	}
	step, _ := m["step"].(int)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "step" || k == "epoch" {
			continue
		}
		if v, ok := m[k].(float64); ok {
			if err := st.tb.Scalar(k, int64(step), v); err != nil {
				return fmt.Errorf("--tensorboard: %w", err)
			}
		}
	}
	if err := st.tb.Flush(); err != nil {
		return fmt.Errorf("--tensorboard: %w", err)
	}
	return nil
}

func (st *runState) totalSteps(perEpoch int) int {
	if st.cfg.Steps > 0 {
		return st.cfg.Steps
	}
	return st.cfg.Epochs * perEpoch
}

func (st *runState) loop(ctx context.Context, train, val *data.Dataset) (*Summary, error) {
	cfg := st.cfg
	world := st.par.world()
	loader := data.NewLoader(train, data.LoaderConfig{
		Shard:     data.Shard{Rank: st.par.rank(), Count: world},
		BatchSize: cfg.BatchSize * world, Workers: cfg.Workers, Prefetch: 4, Shuffle: true, DropLast: true, Seed: cfg.Seed,
		Augment: data.Augment{Crop: cfg.crop(train.H), Flip: cfg.flip(), Noise: cfg.Noise},
		Views:   viewsOf(cfg), ViewAugment: viewAugments(cfg),
	})
	if err := loader.Err(); err != nil {
		return nil, err
	}
	perEpoch := loader.BatchesPerEpoch()
	if perEpoch == 0 {
		return nil, fmt.Errorf("--batch-size %d × %d process(es) is larger than the training set (%d images)", cfg.BatchSize, world, train.N)
	}
	total := st.totalSteps(perEpoch)
	sum := &Summary{RunDir: cfg.Out, BestValAcc: st.bestVal, Precision: st.prec.String(), Layout: st.model.Layout.String()}
	if st.step >= total {
		sum.Steps, sum.Epochs, sum.AlreadyDone, sum.Checkpoint = st.step, st.pos.Epoch, true, st.lastCkpt
		st.log.Info("the run was already complete: nothing to train", zap.Int("steps", st.step), zap.String("checkpoint", st.lastCkpt))
		return sum, nil
	}
	lctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := loader.Start(lctx, st.pos)

	var bar *progressbar.ProgressBar
	if st.opts.Progress != nil {
		bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(st.opts.Progress),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("step"), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
		_ = bar.Set(st.step)
	}
	start := time.Now()
	startStep := st.step
	var waited, winWait time.Duration
	winStart, winImgs := time.Now(), 0
	params := append(st.stepNet.Parameters(), st.obj.Parameters()...)
	var lastVal float64
	for st.step < total {
		// One process stops before a step once ctx is cancelled; several agree through the
		// gradient all-reduce of a step, and all stop after that same step.
		if (st.par == nil && ctx.Err() != nil) || st.par.stopped() {
			if err := st.checkpoint(false); err != nil {
				return sum, fmt.Errorf("interrupted at step %d, and saving the checkpoint failed: %w", st.step, err)
			}
			st.log.Info("interrupted: checkpoint saved", zap.Int("step", st.step), zap.String("checkpoint", st.lastCkpt),
				zap.String("resume", "hdge-torch train --resume "+cfg.Out))
			sum.Steps, sum.Epochs, sum.Checkpoint = st.step, st.pos.Epoch, st.lastCkpt
			return sum, ErrInterrupted
		}
		t0 := time.Now()
		b, ok := <-batches
		if !ok {
			return sum, fmt.Errorf("data pipeline stopped at step %d", st.step)
		}
		wait := time.Since(t0)
		if st.step > startStep { // the first batch waits for the pipeline to fill
			waited += wait
			winWait += wait
		}
		lr := cfg.lrAt(st.step, b.Epoch, total) * st.div.scale()
		st.opt.SetLR(lr)
		if err := st.par.syncBuffers(); err != nil {
			return sum, fmt.Errorf("step %d: %w", st.step, err)
		}
		st.par.setStop(ctx.Err() != nil)
		in := StepInput{Model: st.stepNet, Opt: st.opt, Params: params, Obj: st.obj, Gen: st.gens["objective"],
			Shape: st.shape, Index: st.step, Precision: st.prec}
		if st.par != nil {
			in.AfterBackward, in.Gather = st.par.averageGrads, st.par.gather()
		}
		values, err := TrainStep(in, b)
		if err == nil {
			err = st.par.takeErr()
		}
		loader.Recycle(b)
		if err != nil {
			return sum, fmt.Errorf("step %d: %w", st.step, err)
		}
		if reason := cfg.divergence(values); reason != "" {
			return sum, st.diverged(b.Epoch, values, reason)
		}
		st.step++
		st.pos = data.Position{Epoch: b.Epoch, Batch: b.Index + 1}
		if st.pos.Batch >= perEpoch {
			st.pos = data.Position{Epoch: b.Epoch + 1, Batch: 0}
		}
		winImgs += len(b.Y) * world
		if bar != nil {
			_ = bar.Add(1)
			bar.Describe(fmt.Sprintf("epoch %d loss %.4f", b.Epoch+1, values["loss"]))
		}
		if cfg.LogEvery > 0 && st.step%cfg.LogEvery == 0 {
			el := time.Since(winStart).Seconds()
			m := map[string]any{"step": st.step, "epoch": b.Epoch, "lr": lr, "img_per_s": float64(winImgs) / el,
				"data_wait_ms": float64(winWait.Microseconds()) / 1000 / float64(cfg.LogEvery)}
			fields := []zap.Field{zap.Int("step", st.step), zap.Int("epoch", b.Epoch+1)}
			for _, k := range sortedKeys(values) {
				m[k] = values[k]
				fields = append(fields, zap.Float64(k, values[k]))
			}
			fields = append(fields, zap.Float64("lr", lr), zap.Float64("img/s", m["img_per_s"].(float64)),
				zap.Float64("data_wait_ms", m["data_wait_ms"].(float64)))
			if err := st.writeMetrics(m); err != nil {
				return sum, err
			}
			if bar == nil {
				st.log.Info("train", fields...)
			} else {
				st.log.Debug("train", fields...)
			}
			winStart, winImgs, winWait = time.Now(), 0, 0
		}
		epochEnd := st.pos.Batch == 0
		doVal := val != nil && st.par.leader() && ((cfg.ValEvery > 0 && st.step%cfg.ValEvery == 0) || (cfg.ValEvery == 0 && epochEnd) || st.step == total)
		best := false
		if doVal {
			acc, loss, err := st.model.Evaluate(val, cfg.Noise, 256)
			if err != nil {
				return sum, fmt.Errorf("validation at step %d: %w", st.step, err)
			}
			lastVal = acc
			if acc > st.bestVal {
				st.bestVal, best = acc, true
			}
			if err := st.writeMetrics(map[string]any{"step": st.step, "epoch": st.pos.Epoch, "val_acc": acc, "val_loss": loss}); err != nil {
				return sum, err
			}
			st.log.Info("validation", zap.Int("step", st.step), zap.Float64("acc", acc), zap.Float64("loss", loss),
				zap.Float64("best", st.bestVal))
		}
		if epochEnd || best || st.step == total || (cfg.CkptEvery > 0 && st.step%cfg.CkptEvery == 0) {
			if err := st.checkpoint(best); err != nil {
				return sum, fmt.Errorf("step %d: %w", st.step, err)
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if err := st.par.checkReplicas(st.obj); err != nil {
		return sum, err
	}
	el := time.Since(start).Seconds()
	done := st.step - startStep
	sum.Steps, sum.Epochs, sum.ValAcc, sum.BestValAcc = st.step, st.pos.Epoch, lastVal, st.bestVal
	sum.Seconds = el
	sum.ImgPerSec = float64(done*cfg.BatchSize*world) / el
	sum.DataWait = waited.Seconds() / el
	sum.Checkpoint = st.lastCkpt
	st.log.Info("done", zap.Int("steps", st.step), zap.Float64("seconds", el), zap.Float64("img/s", sum.ImgPerSec),
		zap.Float64("data_wait_frac", sum.DataWait), zap.String("checkpoint", st.lastCkpt))
	st.par.logStats(st.log, done)
	return sum, nil
}

func finite(m map[string]float64) bool {
	for _, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

func formatTerms(m map[string]float64) string {
	out := ""
	for _, k := range sortedKeys(m) {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%s=%g", k, m[k])
	}
	return out
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
