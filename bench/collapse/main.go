package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/trainer"
)

const usage = `usage:
  collapse export --dir DIR [flags]   write init.pt, queue.pt, x.npy, y.npy, lr.npy, inputs.json
  collapse train  --dir DIR [flags]   train hdge-torch's HDGE on them, write DIR/NAME.csv
Run "collapse export -h" or "collapse train -h" for the flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "export":
		err = export(os.Args[2:])
	case "train":
		err = train(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "collapse: unknown command %q\n%s\n", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "collapse:", err)
		os.Exit(1)
	}
}

// Inputs describes what export wrote: both sides read it to build the same model.
type Inputs struct {
	Dataset string  `json:"dataset"`
	ValSize int     `json:"val_size"`
	Model   string  `json:"model"`
	Norm    string  `json:"norm"`
	Seed    uint64  `json:"seed"`
	Batch   int     `json:"batch"`
	Steps   int     `json:"steps"`
	LR      float64 `json:"lr"`
	Warmup  int     `json:"warmup"`
	Noise   float64 `json:"noise"`
	Crop    int     `json:"crop"`
	Flip    bool    `json:"flip"`
	Classes int     `json:"classes"`
	Shape   [3]int  `json:"shape"` // C, H, W
	K       int     `json:"queue_size"`
}

// config is the trainer configuration of the regime: the model, Adam and the objective.
func config(in Inputs, obj objectiveFlags) trainer.Config {
	c := trainer.Defaults()
	c.Dataset, c.ValSize, c.Seed = in.Dataset, in.ValSize, in.Seed
	c.Model, c.Norm, c.Dropout = in.Model, in.Norm, 0
	c.Optimizer, c.LR, c.Warmup, c.WeightDecay = "adam", in.LR, in.Warmup, 0
	// JEM's step schedule; its first decay (epoch 160) is far beyond a run of this tool.
	c.Schedule = "step"
	c.BatchSize, c.Steps = in.Batch, in.Steps
	c.Objective, c.Alpha, c.LabelSmoothing = "hdge", obj.alpha, 0
	c.QueueSize, c.Temperature, c.Contrast, c.NormLogits = in.K, obj.temperature, obj.contrast, obj.normLogits
	return c
}

type objectiveFlags struct {
	alpha, temperature float64
	contrast           string
	normLogits         bool
}

func addObjectiveFlags(fs *flag.FlagSet) *objectiveFlags {
	o := &objectiveFlags{}
	fs.Float64Var(&o.alpha, "alpha", 0.5, "weight of CE; 1-alpha weighs -log q(x|y)")
	fs.Float64Var(&o.temperature, "temperature", 0.1, "tau of the contrastive term")
	fs.StringVar(&o.contrast, "contrast", "official", "official (the released code) or eq13 (the paper)")
	fs.BoolVar(&o.normLogits, "norm-logits", true, "L2-normalise logits before contrasting")
	return o
}

// objectiveSeed offsets --seed for the objective's generator (the queue's initial values), as the
// training loop does.
const objectiveSeed = 1

func export(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder to write the inputs to (required)")
	in := Inputs{}
	fs.StringVar(&in.Dataset, "dataset", "fashion-mnist", "dataset name or FORMAT:PATH, as hdge-torch train --dataset")
	fs.IntVar(&in.ValSize, "val-size", 5000, "training images held out, as the training loop does")
	fs.StringVar(&in.Model, "model", "wrn-10-2", "model")
	fs.StringVar(&in.Norm, "norm", "none", "none or batch")
	fs.Uint64Var(&in.Seed, "seed", 1, "seed of the weights, the queue, the split and the batches")
	fs.IntVar(&in.Batch, "batch-size", 64, "images per step")
	fs.IntVar(&in.Steps, "steps", 600, "batches to export")
	fs.Float64Var(&in.LR, "lr", 1e-4, "Adam's learning rate after warm-up")
	fs.IntVar(&in.Warmup, "warmup", 1000, "linear warm-up, in steps")
	fs.Float64Var(&in.Noise, "noise", 0.03, "sigma of the input noise (in [-1, 1] units)")
	fs.IntVar(&in.Crop, "crop", 0, "reflect-pad + random crop (hdge-torch's default for 28x28 images is 0)")
	fs.BoolVar(&in.Flip, "flip", true, "random horizontal flips")
	fs.IntVar(&in.K, "queue-size", 65536, "K, the queue's length")
	threads := fs.Int("threads", 1, "libtorch threads")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("export: --dir is required")
	}
	if in.Steps < 1 || in.Batch < 1 {
		return fmt.Errorf("export: --steps %d and --batch-size %d must be at least 1", in.Steps, in.Batch)
	}
	torch.SetNumThreads(*threads)
	full, err := data.DefaultSource("").Load(in.Dataset, data.Train)
	if err != nil {
		return fmt.Errorf("--dataset: %w", err)
	}
	if in.ValSize >= full.N {
		return fmt.Errorf("--val-size %d leaves no training images (the set has %d)", in.ValSize, full.N)
	}
	set := full
	if in.ValSize > 0 {
		set, _ = data.SplitValidation(full, in.ValSize, in.Seed)
	}
	in.Classes, in.Shape = len(full.Classes), [3]int{full.C, full.H, full.W}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}

	// The training loop's loader, with its seed: every batch is a function of (seed, epoch, index).
	loader := data.NewLoader(set, data.LoaderConfig{BatchSize: in.Batch, Shuffle: true, DropLast: true, Seed: in.Seed,
		Augment: data.Augment{Crop: in.Crop, Flip: in.Flip, Noise: in.Noise}})
	if err := loader.Err(); err != nil {
		return err
	}
	per := in.Batch * full.C * full.H * full.W
	xs := make([]float32, 0, in.Steps*per)
	ys := make([]int64, 0, in.Steps*in.Batch)
	lrs := make([]float64, in.Steps)
	cfg := config(in, objectiveFlags{alpha: 0.5, temperature: 0.1, contrast: "official", normLogits: true})
	for i := range in.Steps {
		epoch, index := i/loader.BatchesPerEpoch(), i%loader.BatchesPerEpoch()
		b, err := loader.Get(epoch, index)
		if err != nil {
			return err
		}
		xs, ys = append(xs, b.X...), append(ys, b.Y...)
		lrs[i] = cfg.LRAt(i, epoch, in.Steps)
	}
	shape := []int{in.Steps, in.Batch, full.C, full.H, full.W}
	if err := npy.WriteFloat32(filepath.Join(*dir, "x.npy"), xs, shape...); err != nil {
		return err
	}
	if err := npy.WriteInt64(filepath.Join(*dir, "y.npy"), ys, in.Steps, in.Batch); err != nil {
		return err
	}
	if err := npy.WriteFloat64(filepath.Join(*dir, "lr.npy"), lrs, in.Steps); err != nil {
		return err
	}

	m, err := model.Build(trainer.ModelSettings(cfg), full.C, in.Classes, in.Seed)
	if err != nil {
		return err
	}
	defer m.Close()
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	if err := torch.Save(filepath.Join(*dir, "init.pt"), named); err != nil {
		return err
	}
	gen, err := torch.NewGenerator(in.Seed+objectiveSeed, torch.CPU)
	if err != nil {
		return err
	}
	defer gen.Close()
	obj, err := trainer.NewObjective(trainer.Env{Config: cfg, Classes: in.Classes, Shape: in.Shape, Model: m, Gen: gen, Dev: m.Dev})
	if err != nil {
		return err
	}
	defer obj.Close()
	s := torch.NewScope()
	defer s.Close()
	if err := torch.Save(filepath.Join(*dir, "queue.pt"), map[string]*torch.Tensor{"queue": obj.State(s)["queue"]}); err != nil {
		return err
	}
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(*dir, "inputs.json"), append(b, '\n'))
}

func readInputs(dir string) (Inputs, error) {
	var in Inputs
	b, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
	if err != nil {
		return in, fmt.Errorf("--dir: %w (run collapse export first)", err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("%s: %w", filepath.Join(dir, "inputs.json"), err)
	}
	return in, nil
}

// record is one step's values, as both sides log them.
type record struct {
	lr, loss, ce, gen, acc, normMean, normMedian float64
}

// observer wraps the objective to read the step's logits (the forward the loss uses, so no
// second pass): batch accuracy and the mean and median L2 norm of the logits.
type observer struct {
	trainer.Objective
	y    []int64
	last record
	err  error
}

func (o *observer) Loss(st *trainer.Step) (*torch.Tensor, []trainer.Term) {
	loss, terms := o.Objective.Loss(st)
	logits, err := st.S.Detach(st.Logits()).Float64s()
	if err != nil {
		o.err = err
		return loss, terms
	}
	o.last.acc, o.last.normMean, o.last.normMedian = logitStats(logits, o.y)
	return loss, terms
}

// logitStats is the accuracy of the argmax and the mean and median row norm of B×C logits; the
// median of an even count is the mean of the middle two, as numpy's.
func logitStats(logits []float64, y []int64) (acc, mean, median float64) {
	b := len(y)
	c := len(logits) / b
	norms := make([]float64, b)
	for i := range b {
		row := logits[i*c : (i+1)*c]
		best, ss := 0, 0.0
		for j, v := range row {
			ss += v * v
			if v > row[best] {
				best = j
			}
		}
		if int64(best) == y[i] {
			acc++
		}
		norms[i] = math.Sqrt(ss)
		mean += norms[i]
	}
	slices.Sort(norms)
	median = norms[b/2]
	if b%2 == 0 {
		median = (norms[b/2-1] + norms[b/2]) / 2
	}
	return acc / float64(b), mean / float64(b), median
}

func train(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder that collapse export wrote (required)")
	name := fs.String("name", "go", "the trajectory's name: writes DIR/NAME.csv")
	steps := fs.Int("steps", 0, "steps to train (0: every exported batch)")
	threads := fs.Int("threads", 1, "libtorch threads")
	objf := addObjectiveFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("train: --dir is required")
	}
	in, err := readInputs(*dir)
	if err != nil {
		return err
	}
	if *steps == 0 {
		*steps = in.Steps
	}
	if *steps < 0 || *steps > in.Steps {
		return fmt.Errorf("--steps %d: the folder holds %d batches", *steps, in.Steps)
	}
	torch.SetNumThreads(*threads)
	xs, err := readFloat32(filepath.Join(*dir, "x.npy"))
	if err != nil {
		return err
	}
	ys, err := readInt64(filepath.Join(*dir, "y.npy"))
	if err != nil {
		return err
	}
	lrs, err := readFloat64(filepath.Join(*dir, "lr.npy"))
	if err != nil {
		return err
	}
	per := in.Batch * in.Shape[0] * in.Shape[1] * in.Shape[2]
	if len(xs) != in.Steps*per || len(ys) != in.Steps*in.Batch || len(lrs) != in.Steps {
		return fmt.Errorf("%s: x.npy, y.npy or lr.npy does not hold %d batches of %d", *dir, in.Steps, in.Batch)
	}

	cfg := config(in, *objf)
	if err := cfg.Validate(); err != nil {
		return err
	}
	m, err := model.Build(trainer.ModelSettings(cfg), in.Shape[0], in.Classes, in.Seed)
	if err != nil {
		return err
	}
	defer m.Close()
	store := torch.NewScope()
	defer store.Close()
	store.SetGradEnabled(false)
	weights, err := torch.Load(store, filepath.Join(*dir, "init.pt"))
	if err != nil {
		return err
	}
	if err := m.LoadStateDict(weights); err != nil {
		return fmt.Errorf("init.pt: %w", err)
	}
	q, err := torch.Load(store, filepath.Join(*dir, "queue.pt"))
	if err != nil {
		return err
	}
	gen, err := torch.NewGenerator(in.Seed+objectiveSeed, torch.CPU)
	if err != nil {
		return err
	}
	defer gen.Close()
	inner, err := trainer.NewObjective(trainer.Env{Config: cfg, Classes: in.Classes, Shape: in.Shape, Model: m, Gen: gen, Dev: m.Dev})
	if err != nil {
		return err
	}
	defer inner.Close()
	// The table of negatives is derived from the loaded queue with this run's contrast form.
	if err := inner.LoadState(map[string]*torch.Tensor{"queue": q["queue"], "queue_ptr": store.FromInt64([]int64{0})}); err != nil {
		return fmt.Errorf("queue.pt: %w", err)
	}
	obs := &observer{Objective: inner}
	params := m.Parameters()
	opt := trainer.NewOptimizer(cfg, params)
	defer opt.Close()

	rows := make([]record, 0, *steps)
	start := time.Now()
	for i := range *steps {
		b := data.Batch{X: xs[i*per : (i+1)*per], Y: ys[i*in.Batch : (i+1)*in.Batch], Index: i}
		opt.SetLR(lrs[i])
		obs.y = b.Y
		values, err := trainer.TrainStep(trainer.StepInput{Model: m, Opt: opt, Params: params, Obj: obs, Gen: gen,
			Shape: in.Shape, Index: i}, b)
		if err == nil {
			err = obs.err
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		r := obs.last
		r.lr, r.loss, r.ce, r.gen = lrs[i], values["loss"], values["loss_ce"], values["loss_gen"]
		rows = append(rows, r)
		if math.IsNaN(r.loss) || math.IsInf(r.loss, 0) {
			break // TrainStep did not update: the trajectory ends here
		}
		if (i+1)%100 == 0 {
			fmt.Fprintf(os.Stderr, "%s: step %d loss %.4f ce %.4f median |logit| %.4f (%.0fs)\n",
				*name, i+1, r.loss, r.ce, r.normMedian, time.Since(start).Seconds())
		}
	}
	return writeCSV(filepath.Join(*dir, *name+".csv"), rows)
}

func writeCSV(path string, rows []record) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		if _, err := fmt.Fprintln(w, "step,lr,loss,ce,gen,acc,norm_mean,norm_median"); err != nil {
			return err
		}
		for i, r := range rows {
			if _, err := fmt.Fprintf(w, "%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", i, r.lr, r.loss, r.ce, r.gen,
				r.acc, r.normMean, r.normMedian); err != nil {
				return err
			}
		}
		return nil
	})
}

func readFloat32(path string) ([]float32, error) {
	a, err := npy.Read(path)
	if err != nil {
		return nil, err
	}
	return a.Float32s()
}

func readFloat64(path string) ([]float64, error) {
	a, err := npy.Read(path)
	if err != nil {
		return nil, err
	}
	return a.Float64s()
}

func readInt64(path string) ([]int64, error) {
	a, err := npy.Read(path)
	if err != nil {
		return nil, err
	}
	return a.Int64s()
}
