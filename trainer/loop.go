package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/nn"
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
	DataWait   float64 `json:"data_wait_frac"`
	Checkpoint string  `json:"checkpoint"`
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
}

// Model bundles a WideResNet with the scope that owns its parameters.
type Model struct {
	*nn.WideResNet
	Store *torch.Scope
	Dev   torch.Device
}

func (m *Model) Close() { m.Store.Close() }

// BuildModel makes the model a config describes for inputs of c channels and the given classes.
func BuildModel(cfg Config, channels, classes int, seed uint64) (*Model, error) {
	depth, width, err := nn.ParseModel(cfg.Model)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	dev, err := torch.ParseDevice(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("--device: %w", err)
	}
	gen, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	store := torch.NewScope()
	// Parameters are drawn on the CPU from a seeded generator (the same on every device), then moved.
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU}, nn.WRNConfig{
		Depth: depth, Width: width, Classes: classes, InChannels: channels, Norm: cfg.Norm, Dropout: cfg.Dropout,
		ChannelsLast: cfg.ChannelsLast,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	model := &Model{WideResNet: m, Store: store, Dev: dev}
	if dev != torch.CPU {
		if err := model.moveTo(dev); err != nil {
			store.Close()
			return nil, err
		}
	}
	return model, nil
}

// moveTo rebuilds the parameters on dev by loading a device copy of the state dict.
func (m *Model) moveTo(dev torch.Device) error {
	s := torch.NewScope()
	defer s.Close()
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	newStore := torch.NewScope()
	m2, err := nn.NewWideResNet(nn.Init{Store: newStore, Gen: nil, Dev: dev}, m.Cfg)
	if err != nil {
		newStore.Close()
		return fmt.Errorf("building model on %s: %w", dev, err)
	}
	if err := m2.LoadStateDict(named); err != nil {
		newStore.Close()
		return err
	}
	m.Store.Close()
	m.WideResNet, m.Store, m.Dev = m2, newStore, dev
	return nil
}

type runState struct {
	cfg      Config
	opts     Options
	log      *zap.Logger
	dev      torch.Device
	model    *Model
	opt      optimizer
	obj      Objective
	step     int
	pos      data.Position
	bestVal  float64
	lastCkpt string
	metrics  *os.File
}

// optimizer is what the loop needs of torch's Adam and SGD.
type optimizer interface {
	Step() error
	SetLR(lr float64)
	LR() float64
	StepCount() int64
	State() map[string]*torch.Tensor
	LoadState(map[string]*torch.Tensor) error
	Close()
}

func newOptimizer(cfg Config, params []*torch.Tensor) optimizer {
	if cfg.Optimizer == "sgd" {
		return torch.NewSGD(params, torch.SGDConfig{LR: cfg.LR, Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay})
	}
	return torch.NewAdam(params, torch.AdamConfig{LR: cfg.LR, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: cfg.WeightDecay})
}

// Train runs (or resumes) a training run. On cancellation it saves a checkpoint and returns
// ErrInterrupted; on a non-finite loss it stops without overwriting the last good checkpoint.
func Train(ctx context.Context, cfg Config, opts Options) (*Summary, error) {
	// Every libtorch call of the run comes from one OS thread: glibc gives each thread its own
	// malloc arena, and a goroutine that moves between threads frees a step's activations into one
	// arena and allocates the next step's from another, which raised the peak resident set of a
	// wrn-16-4 CIFAR-10 run from 1.4 to up to 2.1 GB.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	var resumeFrom string
	if opts.Resume != "" {
		p, err := ResolveCheckpoint(opts.Resume, false)
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

	if err := os.MkdirAll(checkpointDir(cfg.Out), 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	if err := writeJSON(filepath.Join(cfg.Out, "config.json"), cfg); err != nil {
		return nil, fmt.Errorf("--out: writing config: %w", err)
	}
	mf, err := os.OpenFile(filepath.Join(cfg.Out, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	defer mf.Close()

	torch.ManualSeed(cfg.Seed)
	model, err := BuildModel(cfg, full.C, classes, cfg.Seed)
	if err != nil {
		return nil, err
	}
	defer model.Close()
	st := &runState{cfg: cfg, opts: opts, log: log, dev: model.Dev, model: model, metrics: mf}
	st.opt = newOptimizer(cfg, model.Parameters())
	defer st.opt.Close()
	qgen, err := torch.NewGenerator(cfg.Seed+1, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer qgen.Close()
	st.obj, err = NewObjective(cfg.objective(classes), qgen, model.Dev)
	if err != nil {
		return nil, err
	}
	defer st.obj.Close()
	if resumeFrom != "" {
		if err := st.restore(resumeFrom); err != nil {
			return nil, err
		}
		log.Info("resumed", zap.String("checkpoint", resumeFrom), zap.Int("step", st.step),
			zap.Int("epoch", st.pos.Epoch), zap.Int("batch", st.pos.Batch))
	}
	log.Info("run", zap.String("dir", cfg.Out), zap.String("dataset", cfg.Dataset), zap.Int("train", train.N),
		zap.Int("val", cfg.ValSize), zap.String("model", cfg.Model), zap.Int64("params", model.NumParams()),
		zap.String("objective", cfg.Objective), zap.String("device", model.Dev.String()))

	sum, err := st.loop(ctx, train, val)
	if err != nil {
		return sum, err
	}
	if !opts.SkipTest {
		test, err := src.Load(cfg.Dataset, data.Split("test"))
		if err != nil {
			return sum, fmt.Errorf("loading test split: %w", err)
		}
		acc, loss, err := Evaluate(model, test, cfg.Noise, 256)
		if err != nil {
			return sum, fmt.Errorf("test evaluation: %w", err)
		}
		sum.TestAcc = acc
		st.writeMetrics(map[string]any{"step": st.step, "epoch": st.pos.Epoch, "test_acc": acc, "test_loss": loss})
		log.Info("test", zap.Float64("acc", acc), zap.Float64("loss", loss))
	}
	_ = writeJSON(filepath.Join(cfg.Out, "summary.json"), sum)
	return sum, nil
}

func (st *runState) restore(path string) error {
	s := torch.NewScope()
	defer s.Close()
	ck, err := loadCheckpoint(s, path)
	if err != nil {
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
	if err := st.obj.LoadTensors(ck.Objective); err != nil && len(ck.Objective) > 0 {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(ck.RNG) > 0 {
		if err := torch.SetDefaultGeneratorState(ck.RNG); err != nil {
			return fmt.Errorf("%s: rng state: %w", path, err)
		}
	}
	st.step, st.pos, st.bestVal = ck.Step, ck.Pos, ck.BestVal
	if st.cfg.Schedule == "cosine" && !ck.Config.SameLength(st.cfg) && st.log != nil {
		st.log.Warn("the run's length changed: the cosine schedule now decays over the new length, so the learning rate jumps here and the result differs from a run trained at this length from the start",
			zap.Int("epochs_before", ck.Config.Epochs), zap.Int("steps_before", ck.Config.Steps),
			zap.Int("epochs", st.cfg.Epochs), zap.Int("steps", st.cfg.Steps))
	}
	return nil
}

func (st *runState) checkpoint(best bool) error {
	s := torch.NewScope()
	defer s.Close()
	ck := &checkpoint{
		Model: map[string]*torch.Tensor{}, OptName: st.cfg.Optimizer, OptStep: st.opt.StepCount(),
		OptLR: st.opt.LR(), OptState: st.opt.State(), Objective: st.obj.Tensors(s),
		Step: st.step, Pos: st.pos, BestVal: st.bestVal, Config: st.cfg,
	}
	for _, p := range st.model.StateDict() {
		ck.Model[p.Name] = p.T
		ck.ModelKeys = append(ck.ModelKeys, p.Name)
	}
	rng, err := torch.DefaultGeneratorState()
	if err != nil {
		return err
	}
	ck.RNG = rng
	path := filepath.Join(checkpointDir(st.cfg.Out), stepCheckpointName(st.step))
	if err := ck.save(path); err != nil {
		return err
	}
	st.lastCkpt = path
	if best {
		if err := ck.save(filepath.Join(checkpointDir(st.cfg.Out), "best.pt")); err != nil {
			return err
		}
	}
	list, err := listCheckpoints(st.cfg.Out)
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

func (st *runState) writeMetrics(m map[string]any) {
	b, err := json.Marshal(m)
	if err == nil {
		_, _ = st.metrics.Write(append(b, '\n'))
	}
}

func (st *runState) totalSteps(perEpoch int) int {
	if st.cfg.Steps > 0 {
		return st.cfg.Steps
	}
	return st.cfg.Epochs * perEpoch
}

func (st *runState) loop(ctx context.Context, train, val *data.Dataset) (*Summary, error) {
	cfg := st.cfg
	loader := data.NewLoader(train, data.LoaderConfig{
		BatchSize: cfg.BatchSize, Workers: cfg.Workers, Prefetch: 4, Shuffle: true, DropLast: true, Seed: cfg.Seed,
		Augment: data.Augment{Crop: cfg.crop(train.H), Flip: cfg.flip(), Noise: cfg.Noise},
	})
	if err := loader.Err(); err != nil {
		return nil, err
	}
	perEpoch := loader.BatchesPerEpoch()
	if perEpoch == 0 {
		return nil, fmt.Errorf("--batch-size %d is larger than the training set (%d images)", cfg.BatchSize, train.N)
	}
	total := st.totalSteps(perEpoch)
	sum := &Summary{RunDir: cfg.Out, BestValAcc: st.bestVal}
	if st.step >= total {
		sum.Steps, sum.Epochs = st.step, st.pos.Epoch
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
	params := st.model.Parameters()
	var lastVal float64
	for st.step < total {
		if ctx.Err() != nil {
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
		lr := cfg.lrAt(st.step, b.Epoch, total)
		st.opt.SetLR(lr)
		values, err := st.trainStep(b, params, train)
		loader.Recycle(b)
		if err != nil {
			return sum, fmt.Errorf("step %d: %w", st.step, err)
		}
		if !finite(values) {
			last := st.lastCkpt
			if last == "" {
				last = "none (no checkpoint was written before the failure)"
			}
			st.writeMetrics(map[string]any{"step": st.step, "epoch": b.Epoch, "error": "non-finite loss"})
			return sum, fmt.Errorf("step %d: loss is not finite (%s); the run stopped without saving this state. Last good checkpoint: %s. Try a lower --lr",
				st.step, formatTerms(values), last)
		}
		st.step++
		st.pos = data.Position{Epoch: b.Epoch, Batch: b.Index + 1}
		if st.pos.Batch >= perEpoch {
			st.pos = data.Position{Epoch: b.Epoch + 1, Batch: 0}
		}
		winImgs += len(b.Y)
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
			st.writeMetrics(m)
			if bar == nil {
				st.log.Info("train", fields...)
			} else {
				st.log.Debug("train", fields...)
			}
			winStart, winImgs, winWait = time.Now(), 0, 0
		}
		epochEnd := st.pos.Batch == 0
		doVal := val != nil && ((cfg.ValEvery > 0 && st.step%cfg.ValEvery == 0) || (cfg.ValEvery == 0 && epochEnd) || st.step == total)
		best := false
		if doVal {
			acc, loss, err := Evaluate(st.model, val, cfg.Noise, 256)
			if err != nil {
				return sum, fmt.Errorf("validation at step %d: %w", st.step, err)
			}
			lastVal = acc
			if acc > st.bestVal {
				st.bestVal, best = acc, true
			}
			st.writeMetrics(map[string]any{"step": st.step, "epoch": st.pos.Epoch, "val_acc": acc, "val_loss": loss})
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
	el := time.Since(start).Seconds()
	done := st.step - startStep
	sum.Steps, sum.Epochs, sum.ValAcc, sum.BestValAcc = st.step, st.pos.Epoch, lastVal, st.bestVal
	sum.Seconds = el
	sum.ImgPerSec = float64(done*cfg.BatchSize) / el
	sum.DataWait = waited.Seconds() / el
	sum.Checkpoint = st.lastCkpt
	st.log.Info("done", zap.Int("steps", st.step), zap.Float64("seconds", el), zap.Float64("img/s", sum.ImgPerSec),
		zap.Float64("data_wait_frac", sum.DataWait), zap.String("checkpoint", st.lastCkpt))
	return sum, nil
}

// trainStep runs forward, loss, backward and the optimiser step for one batch, then lets the
// objective see the batch's logits. It returns the loss and its terms.
func (st *runState) trainStep(b data.Batch, params []*torch.Tensor, d *data.Dataset) (map[string]float64, error) {
	s := torch.NewScope()
	defer s.Close()
	n := int64(len(b.Y))
	x := s.FromFloat32(b.X, n, int64(d.C), int64(d.H), int64(d.W))
	y := s.FromInt64(b.Y, n)
	if st.dev != torch.CPU {
		x, y = s.To(x, st.dev), s.To(y, st.dev)
	}
	logits := st.model.Forward(s, x, true)
	loss, terms := st.obj.Loss(s, logits, y)
	if err := s.Err(); err != nil {
		return nil, err
	}
	values := map[string]float64{}
	lv, err := loss.Item()
	if err != nil {
		return nil, err
	}
	values["loss"] = lv
	for _, t := range terms {
		v, err := t.Value.Item()
		if err != nil {
			return nil, err
		}
		values["loss_"+t.Name] = v
	}
	if !finite(values) {
		return values, nil
	}
	s.Backward(loss)
	if err := s.Err(); err != nil {
		return nil, err
	}
	if err := st.opt.Step(); err != nil {
		return nil, err
	}
	torch.ZeroGrad(params)
	if err := st.obj.Update(logits); err != nil {
		return nil, err
	}
	return values, nil
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

// Evaluate returns accuracy and mean cross-entropy of the model on d (eval mode, no grad), with
// test-time noise sigma as JEM applies it.
func Evaluate(m *Model, d *data.Dataset, noise float64, batch int) (acc, loss float64, err error) {
	logits, err := Logits(m, d, noise, batch, 0)
	if err != nil {
		return 0, 0, err
	}
	c := len(logits) / d.N
	correct := 0
	var nll float64
	for i := 0; i < d.N; i++ {
		row := logits[i*c : (i+1)*c]
		best, mx := 0, row[0]
		for j, v := range row {
			if v > mx {
				best, mx = j, v
			}
		}
		if int64(best) == d.Labels[i] {
			correct++
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		nll += float64(mx) + math.Log(z) - float64(row[d.Labels[i]])
	}
	return float64(correct) / float64(d.N), nll / float64(d.N), nil
}

// Logits runs the model over a dataset in eval mode and returns N×C logits, in dataset order.
// The noise (if any) is drawn deterministically from seed.
func Logits(m *Model, d *data.Dataset, noise float64, batch int, seed uint64) ([]float32, error) {
	loader := data.NewLoader(d, data.LoaderConfig{BatchSize: batch, Workers: max(1, min(2, runtime.NumCPU())), Prefetch: 2,
		Epochs: 1, Seed: seed, Augment: data.Augment{Noise: noise}})
	if err := loader.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out []float32
	for b := range loader.Start(ctx, data.Position{}) {
		s := torch.NewScope()
		s.SetGradEnabled(false)
		n := int64(len(b.Y))
		x := s.FromFloat32(b.X, n, int64(d.C), int64(d.H), int64(d.W))
		if m.Dev != torch.CPU {
			x = s.To(x, m.Dev)
		}
		l := m.Forward(s, x, false)
		if err := s.Err(); err != nil {
			s.Close()
			return nil, err
		}
		v, err := l.Float32s()
		s.Close()
		loader.Recycle(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	if len(out) != d.N*m.Cfg.Classes {
		return nil, fmt.Errorf("model produced %d logits for %d images of %s", len(out), d.N, d.Name)
	}
	return out, nil
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
