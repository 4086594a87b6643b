package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// ChildMain turns the process into a Go child when the environment asks for one: it runs the
// measurement, prints its JSON result and exits. Otherwise it returns at once. Binaries that run
// the benchmark (hdgebench, this package's tests) call it first thing.
func ChildMain() {
	if os.Getenv(envChild) == "" {
		return
	}
	var rc RunConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &rc); err != nil {
		fmt.Fprintf(os.Stderr, "%s: not a run configuration: %v\n", envConfig, err)
		os.Exit(2)
	}
	res, err := runChild(rc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go %s (%s): %v\n", rc.Mode, rc.label(), err)
		os.Exit(1)
	}
	res.Threads, res.Torch, res.HWMEndKiB = torch.NumThreads(), torch.Version(), selfKiB("VmHWM")
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(rc RunConfig) (*RunResult, error) {
	if rc.Threads > 0 {
		torch.SetNumThreads(rc.Threads)
	}
	switch rc.Mode {
	case "train":
		return goTrain(rc)
	case "stepratio":
		return goStepRatio(rc)
	case "contrastive":
		return goContrastive(rc)
	case "pipeline":
		return goPipeline(rc)
	case "eval":
		return goEval(rc)
	case "parity":
		return goParity(rc)
	case "peak":
		return goPeak(rc)
	case "ddp":
		return goDDP(rc)
	case "objectives":
		return goObjectiveSteps(rc)
	case "buffer-memory":
		return goBufferMemory(rc)
	}
	return nil, fmt.Errorf("unknown mode %q", rc.Mode)
}

func flipFlag(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// trainerConfig is the trainer configuration a run describes: no validation split, a constant
// learning rate, one metrics line per step and checkpoints only at the end.
func trainerConfig(rc RunConfig) trainer.Config {
	c := trainer.Defaults()
	c.ValSize = 0
	c.Model, c.Norm, c.Dropout = rc.Model, cmp.Or(rc.Norm, "none"), 0
	c.Schedule, c.DecayEpochs = "step", nil
	c.Objective, c.Alpha, c.QueueSize, c.Temperature = rc.Objective, rc.Alpha, rc.QueueSize, rc.Temperature
	c.Contrast, c.NormLogits = "official", true
	c.Optimizer, c.LR, c.Warmup = "adam", rc.LR, 0
	c.BatchSize, c.Steps = rc.Batch, rc.WarmupSteps+rc.Steps
	c.Crop, c.Flip, c.Noise = rc.Augment.Crop, flipFlag(rc.Augment.Flip), rc.Augment.Noise
	c.Workers, c.Seed, c.Threads, c.Device = rc.Workers, rc.Seed, rc.Threads, rc.Device
	c.Out, c.KeepLast, c.CkptEvery, c.LogEvery = rc.Dir, 1, 0, 1
	c.Precision, c.TensorBoard = cmp.Or(rc.Precision, "fp32"), false
	c.SGLDSteps, c.BufferSize = cmp.Or(rc.SGLDSteps, c.SGLDSteps), cmp.Or(rc.BufferSize, c.BufferSize)
	if rc.ChannelsLast != "" {
		c.ChannelsLast = rc.ChannelsLast
	}
	return c
}

// goTrain runs the real training loop (trainer.Train) and reads its per-step metrics: with one
// log line per step, each line's img/s window is exactly one loop iteration, batch wait included.
func goTrain(rc RunConfig) (*RunResult, error) {
	if rc.Dataset == nil {
		return nil, fmt.Errorf("no dataset")
	}
	cfg := trainerConfig(rc)
	spec, err := rc.Dataset.goSpec()
	if err != nil {
		return nil, err
	}
	cfg.Dataset = spec
	if _, err := trainer.Train(context.Background(), cfg, trainer.Options{SkipTest: true}); err != nil {
		return nil, err
	}
	return readStepTimes(rc, rc.Batch)
}

// readStepTimes reads a run's metrics.jsonl, one record per step, into step and data-wait times
// after the warm-up steps; batch is the images one step trains on (every rank's together).
func readStepTimes(rc RunConfig, batch int) (*RunResult, error) {
	f, err := os.Open(filepath.Join(rc.Dir, "metrics.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &RunResult{Batch: batch}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct {
			Step       int      `json:"step"`
			ImgPerS    *float64 `json:"img_per_s"`
			DataWaitMS *float64 `json:"data_wait_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("metrics.jsonl: %w", err)
		}
		if m.ImgPerS == nil || m.Step <= rc.WarmupSteps {
			continue
		}
		res.StepS = append(res.StepS, float64(batch) / *m.ImgPerS)
		res.WaitS = append(res.WaitS, *m.DataWaitMS/1000)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(res.StepS) != rc.Steps {
		return nil, fmt.Errorf("metrics.jsonl has %d measured steps, want %d", len(res.StepS), rc.Steps)
	}
	return res, nil
}

// stepper runs the training loop's own step (trainer.TrainStep) on one model outside the loop,
// for measurements that alternate objectives within one process.
type stepper struct {
	model  *model.Model
	opt    trainer.Optimizer
	params []*torch.Tensor
	batch  data.Batch
	shape  [3]int
	cfg    trainer.Config
}

func newStepper(rc RunConfig) (*stepper, error) {
	if len(rc.Shape) != 3 {
		return nil, fmt.Errorf("shape %v: want C, H, W", rc.Shape)
	}
	cfg := trainerConfig(rc)
	m, err := model.Build(trainer.ModelSettings(cfg), rc.Shape[0], rc.Classes, rc.Seed)
	if err != nil {
		return nil, err
	}
	st := &stepper{model: m, params: m.Parameters(), cfg: cfg, shape: [3]int{rc.Shape[0], rc.Shape[1], rc.Shape[2]}}
	st.opt = trainer.NewOptimizer(cfg, st.params)
	r := rand.New(rand.NewPCG(rc.Seed, 7))
	n := rc.Batch * rc.Shape[0] * rc.Shape[1] * rc.Shape[2]
	st.batch.X = make([]float32, n)
	for i := range st.batch.X {
		st.batch.X[i] = float32(r.NormFloat64())
	}
	st.batch.Y = make([]int64, rc.Batch)
	for i := range st.batch.Y {
		st.batch.Y[i] = int64(r.IntN(rc.Classes))
	}
	return st, nil
}

func (st *stepper) close() {
	st.opt.Close()
	st.model.Close()
}

func (st *stepper) step(obj trainer.Objective, gen *torch.Generator) error {
	_, err := trainer.TrainStep(trainer.StepInput{Model: st.model, Opt: st.opt, Params: st.params, Obj: obj, Gen: gen, Shape: st.shape}, st.batch)
	return err
}

// newObjective builds an objective of kind with the run's settings and the given α.
func newObjective(rc RunConfig, kind string, alpha float64, m *model.Model, gen *torch.Generator, dev torch.Device) (trainer.Objective, error) {
	cfg := trainerConfig(rc)
	cfg.Objective, cfg.Alpha = kind, alpha
	return trainer.NewObjective(trainer.Env{Config: cfg, Classes: rc.Classes, Model: m, Gen: gen, Dev: dev})
}

// goStepRatio alternates CE and HDGE steps on one model and a fixed random batch, so that machine
// load hits both alike; the order flips every step pair.
func goStepRatio(rc RunConfig) (*RunResult, error) {
	st, err := newStepper(rc)
	if err != nil {
		return nil, err
	}
	defer st.close()
	dev := st.model.Dev
	gen, err := torch.NewGenerator(rc.Seed+1, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	ce, err := newObjective(rc, "ce", 1, st.model, gen, dev)
	if err != nil {
		return nil, err
	}
	defer ce.Close()
	hdge, err := newObjective(rc, "hdge", rc.Alpha, st.model, gen, dev)
	if err != nil {
		return nil, err
	}
	defer hdge.Close()
	res := &RunResult{Batch: rc.Batch}
	for i := range rc.WarmupSteps + rc.Steps {
		order := []trainer.Objective{ce, hdge}
		if i%2 == 1 {
			order = []trainer.Objective{hdge, ce}
		}
		for _, obj := range order {
			t0 := time.Now()
			name := "hdge"
			if obj == ce {
				name = "ce"
			}
			if err := st.step(obj, gen); err != nil {
				return nil, fmt.Errorf("%s step %d: %w", name, i, err)
			}
			el := time.Since(t0).Seconds()
			if i < rc.WarmupSteps {
				continue
			}
			if obj == ce {
				res.CES = append(res.CES, el)
			} else {
				res.HDGES = append(res.HDGES, el)
			}
		}
	}
	return res, nil
}

// goContrastive times hdge-torch's contrastive term alone (α = 0): loss on B×C logits against a
// full C×K queue, backward to the logits, queue update. Memory as on the Python side: resident
// set before the objective exists, once it and the inputs exist, and the high-water mark after.
func goContrastive(rc RunConfig) (*RunResult, error) {
	dev, err := torch.ParseDevice(rc.Device)
	if err != nil {
		return nil, err
	}
	res := &RunResult{RSS0KiB: selfKiB("VmRSS")}
	gen, err := torch.NewGenerator(rc.Seed, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	store := torch.NewScope()
	defer store.Close()
	logits := store.MulScalar(store.Randn(gen, []int64{int64(rc.Batch), int64(rc.Classes)}, torch.Float32, torch.CPU), 3)
	y := store.RandInt(gen, 0, int64(rc.Classes), []int64{int64(rc.Batch)}, torch.CPU)
	if dev != torch.CPU {
		logits, y = store.To(logits, dev), store.To(y, dev)
	}
	if err := store.Err(); err != nil {
		return nil, err
	}
	if err := logits.SetRequiresGrad(true); err != nil {
		return nil, err
	}
	obj, err := newObjective(rc, "hdge", 0, nil, gen, dev)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	res.PeakReset = resetPeak()
	res.RSS1KiB = selfKiB("VmRSS")
	leaf := []*torch.Tensor{logits}
	for i := range rc.WarmupSteps + rc.Steps {
		t0 := time.Now()
		s := torch.NewScope()
		step := &trainer.Step{S: s, Y: y}
		step.SetLogits(logits)
		loss, _ := obj.Loss(step)
		s.Backward(loss)
		err := s.Err()
		if err == nil {
			err = obj.AfterStep(step)
		}
		if err == nil {
			res.Loss, err = loss.Item() // also waits for a CUDA device
		}
		torch.ZeroGrad(leaf)
		s.Close()
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", i, err)
		}
		if i >= rc.WarmupSteps {
			res.StepS = append(res.StepS, time.Since(t0).Seconds())
		}
	}
	res.HWMKiB = selfKiB("VmHWM")
	return res, nil
}

// goPipeline times the training data loader alone, configured as the training loop configures it.
func goPipeline(rc RunConfig) (*RunResult, error) {
	if rc.Dataset == nil {
		return nil, fmt.Errorf("no dataset")
	}
	spec, err := rc.Dataset.goSpec()
	if err != nil {
		return nil, err
	}
	d, err := data.Source{}.Load(spec, data.Train)
	if err != nil {
		return nil, err
	}
	l := data.NewLoader(d, data.LoaderConfig{BatchSize: rc.Batch, Workers: rc.Workers, Prefetch: 4, Shuffle: true,
		DropLast: true, Seed: rc.Seed, Augment: data.Augment{Crop: rc.Augment.Crop, Flip: rc.Augment.Flip, Noise: rc.Augment.Noise}})
	if err := l.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Start(ctx, data.Position{})
	next := func() (int, error) {
		b, ok := <-ch
		if !ok {
			return 0, fmt.Errorf("loader stopped")
		}
		n := len(b.Y)
		l.Recycle(b)
		return n, nil
	}
	for range rc.WarmupBatches {
		if _, err := next(); err != nil {
			return nil, err
		}
	}
	res := &RunResult{}
	t0 := time.Now()
	for range rc.Batches {
		n, err := next()
		if err != nil {
			return nil, err
		}
		res.Images += n
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// readNPYSet reads a prepared set: images N×C×H×W uint8 and labels int64.
func readNPYSet(ds DataSpec, classes int) (*data.Dataset, error) {
	img, err := npy.Read(ds.Images)
	if err != nil {
		return nil, err
	}
	pix, ok := img.Data.([]uint8)
	if !ok || len(img.Shape) != 4 {
		return nil, fmt.Errorf("%s: want a 4-d uint8 array, got %s %v", ds.Images, img.DType, img.Shape)
	}
	lab, err := npy.Read(ds.Labels)
	if err != nil {
		return nil, err
	}
	labels, err := lab.Int64s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ds.Labels, err)
	}
	names := make([]string, classes)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	d := &data.Dataset{Name: ds.Name, Images: pix, Labels: labels, N: img.Shape[0], C: img.Shape[1], H: img.Shape[2],
		W: img.Shape[3], Classes: names}
	return d, d.Validate()
}

// goEval is hdge-torch's evaluation path: trainer.Logits over the test set and each OOD set
// (test-time noise, eval mode), then package eval's classification, calibration (20 bins) and
// OOD metrics for both scores. Reading the sets and the weights is not timed.
func goEval(rc RunConfig) (*RunResult, error) {
	if len(rc.Sets) < 2 {
		return nil, fmt.Errorf("eval needs a test set and at least one OOD set, got %d sets", len(rc.Sets))
	}
	sets := make([]*data.Dataset, len(rc.Sets))
	for i, ds := range rc.Sets {
		d, err := readNPYSet(ds, rc.Classes)
		if err != nil {
			return nil, err
		}
		sets[i] = d
	}
	m, err := model.Build(trainer.ModelSettings(trainerConfig(rc)), sets[0].C, rc.Classes, rc.Seed)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	s := torch.NewScope()
	w, err := torch.Load(s, rc.Weights)
	if err != nil {
		s.Close()
		return nil, err
	}
	err = m.LoadStateDict(w)
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rc.Weights, err)
	}
	res := &RunResult{Metrics: Metrics{}}
	t0 := time.Now()
	logits := make([]eval.Logits, len(sets))
	for i, d := range sets {
		flat, err := m.Logits(d, rc.Augment.Noise, rc.EvalBatch, rc.Seed+uint64(i))
		if err != nil {
			return nil, fmt.Errorf("logits of %s: %w", d.Name, err)
		}
		if logits[i], err = eval.LogitsFromFlat(flat, rc.Classes); err != nil {
			return nil, err
		}
		res.Images += d.N
	}
	t1 := time.Now()
	cal, err := eval.Calibrate(logits[0], sets[0].Labels, 20)
	if err != nil {
		return nil, err
	}
	res.Metrics["accuracy"], res.Metrics["nll"], res.Metrics["ece"] = cal.Accuracy, cal.NLL, cal.ECE
	for _, score := range []eval.Score{eval.ScoreLogQX, eval.ScoreMaxProb} {
		in, err := eval.Scores(logits[0], score)
		if err != nil {
			return nil, err
		}
		for i := 1; i < len(sets); i++ {
			out, err := eval.Scores(logits[i], score)
			if err != nil {
				return nil, err
			}
			om, err := eval.OOD(in, out)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sets[i].Name, err)
			}
			res.Metrics[sets[i].Name+"/"+string(score)] = map[string]any{
				"auroc": om.AUROC, "aupr_in": om.AUPRIn, "aupr_out": om.AUPROut, "fpr95": om.FPR95}
		}
	}
	res.LogitsS, res.MetricsS = t1.Sub(t0).Seconds(), time.Since(t1).Seconds()
	return res, nil
}

// goParity builds the benchmark's model from its seed, writes its weights (for the Python
// reference and for the evaluation runs) and a batch with labels and a queue, and returns
// hdge-torch's logits and HDGE loss on them.
func goParity(rc RunConfig) (*RunResult, error) {
	m, err := model.Build(trainer.ModelSettings(trainerConfig(rc)), rc.Shape[0], rc.Classes, rc.Seed)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	if err := torch.Save(rc.Weights, named); err != nil {
		return nil, err
	}
	gen, err := torch.NewGenerator(rc.Seed+2, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	obj, err := newObjective(rc, "hdge", rc.Alpha, m, gen, m.Dev)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	x := s.Randn(gen, []int64{int64(rc.Batch), int64(rc.Shape[0]), int64(rc.Shape[1]), int64(rc.Shape[2])}, torch.Float32, torch.CPU)
	y := s.RandInt(gen, 0, int64(rc.Classes), []int64{int64(rc.Batch)}, torch.CPU)
	inputs := map[string]*torch.Tensor{"x": x, "y": y, "queue": obj.State(s)["queue"]}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if err := torch.Save(rc.Inputs, inputs); err != nil {
		return nil, err
	}
	if m.Dev != torch.CPU {
		x, y = s.To(x, m.Dev), s.To(y, m.Dev)
	}
	logits := m.Forward(s, x, false)
	step := &trainer.Step{S: s, Y: y, Model: m}
	step.SetLogits(logits)
	loss, terms := obj.Loss(step)
	if err := s.Err(); err != nil {
		return nil, err
	}
	res := &RunResult{}
	if res.Logits, err = logits.Float64s(); err != nil {
		return nil, err
	}
	if res.Loss, err = loss.Item(); err != nil {
		return nil, err
	}
	for _, t := range terms {
		v, err := t.Value.Item()
		if err != nil {
			return nil, err
		}
		switch t.Name {
		case "ce":
			res.CE = v
		case "gen":
			res.Gen = v
		}
	}
	return res, nil
}

// goPeak measures practical peaks on the benchmark's thread count and device: the median rate of
// an n×n float32 matrix product (libtorch's BLAS) and of a large 3×3 convolution (oneDNN on a CPU,
// the kernels a WideResNet spends its time in).
func goPeak(rc RunConfig) (*RunResult, error) {
	dev, err := torch.ParseDevice(rc.Device)
	if err != nil {
		return nil, err
	}
	store := torch.NewScope()
	defer store.Close()
	store.SetGradEnabled(false)
	n := int64(rc.Size)
	a := store.Randn(nil, []int64{n, n}, torch.Float32, dev)
	b := store.Randn(nil, []int64{n, n}, torch.Float32, dev)
	// Batch 64, 256 → 256 channels on 16×16 maps: wrn-16-4's last stage, 19.3 GFLOP a call.
	x := store.Randn(nil, []int64{64, 256, 16, 16}, torch.Float32, dev)
	w := store.MulScalar(store.Randn(nil, []int64{256, 256, 3, 3}, torch.Float32, dev), 0.02)
	if err := store.Err(); err != nil {
		return nil, err
	}
	rate := func(name string, flop float64, op func(s *torch.Scope) *torch.Tensor) (float64, error) {
		var times []float64
		for i := range rc.WarmupSteps + rc.Steps {
			t0 := time.Now()
			s := torch.NewScope()
			s.SetGradEnabled(false)
			out := s.Flatten(op(s), 0, -1)
			// Reading one element waits for an asynchronous device.
			_, err := s.Narrow(out, 0, 0, 1).Item()
			if err == nil {
				err = s.Err()
			}
			s.Close()
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			if i >= rc.WarmupSteps {
				times = append(times, time.Since(t0).Seconds())
			}
		}
		slices.Sort(times)
		return flop / times[len(times)/2] / 1e9, nil
	}
	res := &RunResult{}
	if res.GFLOPS, err = rate(fmt.Sprintf("matmul %d×%d", n, n), 2*float64(n*n*n),
		func(s *torch.Scope) *torch.Tensor { return s.Matmul(a, b) }); err != nil {
		return nil, err
	}
	if res.ConvGFLOPS, err = rate("conv 3×3", 2*64*256*256*9*16*16,
		func(s *torch.Scope) *torch.Tensor { return s.Conv2d(x, w, nil, 1, 1) }); err != nil {
		return nil, err
	}
	return res, nil
}
