package gen

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/sampler"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Files the sampler writes into Config.Out.
const (
	SamplesFile = "samples.npy" // float32 [N, C, H, W] in the model's input space [-1, 1]
	LabelsFile  = "labels.npy"  // int64 [N]: the class sampled for, or the model's prediction when unconditional
	GridFile    = "samples.png" // one row per class when conditional
	TopFile     = "top.png"     // per class, the samples the model is most confident are of it
	TopJSON     = "top.json"
	InfoFile    = "sample.json"
	MetricsFile = "metrics.json" // gains a "generation" section; other sections are kept
)

// InputError is bad input the user can fix; its message names the flag or file.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, a ...any) error { return &InputError{fmt.Errorf(format, a...)} }

// Config is one sampling run.
type Config struct {
	Checkpoint string // run directory or checkpoint file
	Out        string
	// Class is "" (unconditional, log q(x)), "all" (every class, log q(x, y)) or a class index.
	Class      string
	FromBuffer bool // start from the checkpoint's replay buffer instead of U(-1, 1) noise
	Steps      int  // SGLD steps per round
	Rounds     int  // rounds of Steps, each refining the same chains (JEM's eval loop)
	N          int  // samples, per class when conditional
	// SGLDLR and SGLDStd are SGLD's step and noise; 0 takes the run's --sgld-lr / --sgld-std
	// (JEM's 1 and 0.01 for runs without them).
	SGLDLR, SGLDStd float64
	Top             int // samples per class in the top-confidence selection
	BatchSize       int
	Seed            uint64
	Device          string
	// FeatureCheckpoint names a classifier whose penultimate features and softmax give
	// "FD (classifier features)" and "IS (classifier)"; FIDWeights pytorch-fid's Inception-v3
	// weights, which give the FID and IS proper. Both empty: no generation metrics.
	FeatureCheckpoint string
	FIDWeights        string
	RealN             int // real test images for the Fréchet distance (0 = the whole test split)
	Log               *zap.Logger
}

// DefaultConfig has JEM's evaluation defaults: 100 short-run steps from noise.
func DefaultConfig() Config {
	return Config{Steps: sampler.ShortRunSteps, Rounds: 1, N: 100, Top: 10, BatchSize: 100, Seed: 1}
}

// Validate names the flag of the first bad value.
func (c Config) Validate() error {
	switch {
	case c.Checkpoint == "":
		return inputErr("--checkpoint is required")
	case c.Out == "":
		return inputErr("--out is required")
	case c.Steps <= 0:
		return inputErr("--steps must be positive, got %d", c.Steps)
	case c.Rounds <= 0:
		return inputErr("--rounds must be positive, got %d", c.Rounds)
	case c.N <= 0:
		return inputErr("--n must be positive, got %d", c.N)
	case c.BatchSize <= 0:
		return inputErr("--batch-size must be positive, got %d", c.BatchSize)
	case c.Top < 0:
		return inputErr("--top must be zero or positive, got %d", c.Top)
	case c.RealN < 0:
		return inputErr("--real-n must be zero or positive, got %d", c.RealN)
	case !(c.SGLDLR >= 0) || math.IsInf(c.SGLDLR, 0):
		return inputErr("--sgld-lr must be positive (or 0 for the run's), got %g", c.SGLDLR)
	case !(c.SGLDStd >= 0) || math.IsInf(c.SGLDStd, 0):
		return inputErr("--sgld-std must be zero or positive, got %g", c.SGLDStd)
	case c.FeatureCheckpoint != "" && c.FIDWeights != "":
		return inputErr("--feature-checkpoint and --fid-weights: give one feature network")
	}
	if c.Class != "" && c.Class != "all" {
		if k, err := strconv.Atoi(c.Class); err != nil || k < 0 {
			return inputErr("--class must be a class index (0, 1, ...) or all, got %q", c.Class)
		}
	}
	return nil
}

// Info is sample.json: how the samples were made.
type Info struct {
	Checkpoint  string  `json:"checkpoint"`
	Step        int     `json:"step"`
	Conditional bool    `json:"conditional"`
	Classes     []int   `json:"classes,omitempty"`
	FromBuffer  bool    `json:"from_buffer"`
	Steps       int     `json:"steps"`
	Rounds      int     `json:"rounds"`
	SGLDLR      float64 `json:"sgld_lr"`
	SGLDStd     float64 `json:"sgld_std"`
	Seed        uint64  `json:"seed"`
	N           int     `json:"n"`
	Shape       []int   `json:"shape"`
	Labels      string  `json:"labels"`
	MeanEnergy  float64 `json:"mean_energy"` // mean log q(x) of the samples
	// Min and Max are the samples' extreme values, and OutsideRange the fraction of their values
	// outside the data's [-1, 1]: SGLD is not clamped (JEM's is not), and chains that drift off
	// the data's range inflate feature-space scores such as the Fréchet distance.
	Min          float64 `json:"min"`
	Max          float64 `json:"max"`
	OutsideRange float64 `json:"outside_data_range"`
}

// Result is what a sampling run produced.
type Result struct {
	Info       Info
	Generation *eval.Generation
	Files      []string
}

type featureNet struct {
	name string
	// feats returns pool features [N, D] and class probabilities [N, K] of samples in [-1, 1].
	feats func(s *torch.Scope, x *torch.Tensor) (f, p *torch.Tensor)
	close func()
}

// Run samples as cfg says and writes the files into cfg.Out; a file is replaced only once its
// new contents are complete, so an error leaves what was there before.
func Run(cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	l, err := model.Load(cfg.Checkpoint, cfg.Device)
	if err != nil {
		return nil, inputErr("--checkpoint: %w", err)
	}
	defer l.Close()
	classes := l.Classes()
	run := runSGLD(l.Config)
	if cfg.SGLDLR == 0 {
		cfg.SGLDLR = run.LR
	}
	if cfg.SGLDStd == 0 && run.Std >= 0 {
		cfg.SGLDStd = run.Std
	}
	var labelsFor []int
	switch cfg.Class {
	case "":
	case "all":
		for c := 0; c < classes; c++ {
			labelsFor = append(labelsFor, c)
		}
	default:
		k, _ := strconv.Atoi(cfg.Class)
		if k >= classes {
			return nil, inputErr("--class %d: the model has %d classes (0 to %d)", k, classes, classes-1)
		}
		labelsFor = []int{k}
	}
	src := data.DefaultSource(l.Run.DataDir)
	test, err := src.Load(l.Run.Dataset, data.Test)
	if err != nil {
		return nil, inputErr("the run's dataset %s: %w", l.Run.Dataset, err)
	}
	shape := []int64{int64(test.C), int64(test.H), int64(test.W)}
	if test.C != l.InChannels() {
		return nil, inputErr("--checkpoint: the model takes %d channels, its dataset %s has %d", l.InChannels(), l.Run.Dataset, test.C)
	}
	var buffer *torch.Tensor
	bufClasses := 0
	if cfg.FromBuffer {
		b, ok := l.Objective[sampler.TensorSamples]
		if !ok {
			return nil, inputErr("--from-buffer: %s has no replay buffer (it was trained with --objective %s; jem and hdge-jem runs save one): leave out --from-buffer to sample from noise", l.Path, l.Run.Objective)
		}
		if got := b.Shape(); len(got) != 4 || fmt.Sprint(got[1:]) != fmt.Sprint(shape) {
			return nil, inputErr("--from-buffer: %s's replay buffer has shape %v, the images are %v", l.Path, got, shape)
		}
		buffer = b
		if ct, ok := l.Objective[sampler.TensorClasses]; ok {
			if v, err := ct.Int64s(); err == nil && len(v) == 1 {
				bufClasses = int(v[0])
			}
		}
	}
	// The feature network is loaded before any sampling, so a wrong file is reported at once.
	var fn *featureNet
	if cfg.FeatureCheckpoint != "" || cfg.FIDWeights != "" {
		if fn, err = loadFeatureNet(cfg, test); err != nil {
			return nil, err
		}
		defer fn.close()
		if len(labelsFor) == 0 && cfg.N < eval.DefaultISSplits || len(labelsFor) > 0 && cfg.N*len(labelsFor) < eval.DefaultISSplits {
			return nil, inputErr("--n %d: the Inception Score needs at least %d samples", cfg.N, eval.DefaultISSplits)
		}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, inputErr("--out: %w", err)
	}

	g, err := torch.NewGenerator(cfg.Seed, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	store := torch.NewScope()
	defer store.Close()
	store.SetGradEnabled(false)
	total := cfg.N
	var y *torch.Tensor
	var ys []int64
	if len(labelsFor) > 0 {
		total = cfg.N * len(labelsFor)
		for _, c := range labelsFor {
			for i := 0; i < cfg.N; i++ {
				ys = append(ys, int64(c))
			}
		}
		y = store.FromInt64(ys)
	}
	x0, err := starts(store, g, cfg, buffer, bufClasses, labelsFor, total, shape)
	if err != nil {
		return nil, err
	}
	sgld := sampler.Config{Steps: cfg.Steps, LR: cfg.SGLDLR, Std: cfg.SGLDStd}
	if err := sgld.Validate(); err != nil {
		return nil, inputErr("%w", err)
	}
	energy := sampler.JEMEnergy(l.Forward)
	x := x0
	for r := 0; r < cfg.Rounds; r++ {
		next, err := inBatches(store, x, y, cfg.BatchSize, func(s *torch.Scope, xb, yb *torch.Tensor) (*torch.Tensor, error) {
			if l.Dev != torch.CPU {
				xb = s.To(xb, l.Dev)
				if yb != nil {
					yb = s.To(yb, l.Dev)
				}
			}
			out, err := sampler.SGLD(s, g, energy, xb, yb, sgld)
			if err != nil {
				return nil, err
			}
			return s.To(out, torch.CPU), nil
		})
		if err != nil {
			return nil, fmt.Errorf("sampling, round %d: %w", r+1, err)
		}
		x.Free()
		x = next
		log.Info("sampling", zap.Int("round", r+1), zap.Int("rounds", cfg.Rounds), zap.Int("steps", cfg.Steps*(r+1)))
	}
	// The sampled model's own view of its samples: predictions, confidences, energies.
	probs, err := inBatches(store, x, nil, cfg.BatchSize, func(s *torch.Scope, xb, _ *torch.Tensor) (*torch.Tensor, error) {
		s.SetGradEnabled(false)
		if l.Dev != torch.CPU {
			xb = s.To(xb, l.Dev)
		}
		lg := l.Forward(s, xb, false)
		return s.To(s.Cat([]*torch.Tensor{s.Softmax(lg, 1), s.Unsqueeze(s.LogSumExp(lg, []int{1}, false), 1)}, 1), torch.CPU), nil
	})
	if err != nil {
		return nil, fmt.Errorf("classifying the samples: %w", err)
	}
	pv, err := probs.Float32s()
	if err != nil {
		return nil, err
	}
	xs, err := x.Float32s()
	if err != nil {
		return nil, err
	}
	info := Info{Checkpoint: l.Path, Step: l.Step, Conditional: len(labelsFor) > 0, Classes: labelsFor, FromBuffer: cfg.FromBuffer,
		Steps: cfg.Steps, Rounds: cfg.Rounds, SGLDLR: cfg.SGLDLR, SGLDStd: cfg.SGLDStd, Seed: cfg.Seed, N: total,
		Shape: []int{total, test.C, test.H, test.W}}
	info.Min, info.Max = math.Inf(1), math.Inf(-1)
	outside := 0
	for _, v := range xs {
		f := float64(v)
		info.Min, info.Max = min(info.Min, f), max(info.Max, f)
		if f < -1 || f > 1 {
			outside++
		}
	}
	if len(xs) > 0 {
		info.OutsideRange = float64(outside) / float64(len(xs))
	}
	pred := make([]int64, total)
	conf := make([]float64, total)
	w := classes + 1
	for i := 0; i < total; i++ {
		best := 0
		for c := 1; c < classes; c++ {
			if pv[i*w+c] > pv[i*w+best] {
				best = c
			}
		}
		pred[i], conf[i] = int64(best), float64(pv[i*w+best])
		info.MeanEnergy += float64(pv[i*w+classes]) / float64(total)
	}
	labels := ys
	info.Labels = "the class each sample was drawn for (log q(x, y))"
	if labels == nil {
		labels = pred
		info.Labels = "the sampled model's predicted class (unconditional samples)"
	}
	res := &Result{Info: info}
	img := grid{c: test.C, h: test.H, w: test.W, x: xs}
	writes := []struct {
		name string
		fn   func(path string) error
	}{
		{SamplesFile, func(p string) error { return npy.WriteFloat32(p, xs, total, test.C, test.H, test.W) }},
		{LabelsFile, func(p string) error { return npy.WriteInt64(p, labels, total) }},
		{GridFile, func(p string) error {
			if len(labelsFor) > 0 {
				return img.rows(p, len(labelsFor), cfg.N)
			}
			return img.square(p, total)
		}},
	}
	top, topJSON := topConfidence(pred, conf, classes, cfg.Top)
	if cfg.Top > 0 {
		writes = append(writes,
			struct {
				name string
				fn   func(path string) error
			}{TopFile, func(p string) error { return img.picked(p, top, cfg.Top) }},
			struct {
				name string
				fn   func(path string) error
			}{TopJSON, func(p string) error { return writeJSON(p, topJSON) }})
	}
	for _, wr := range writes {
		p := filepath.Join(cfg.Out, wr.name)
		if err := wr.fn(p); err != nil {
			return nil, fmt.Errorf("--out: %s: %w", wr.name, err)
		}
		res.Files = append(res.Files, p)
	}
	if fn != nil {
		gm, err := generationMetrics(store, fn, x, test, cfg)
		if err != nil {
			return nil, err
		}
		res.Generation = gm
		if err := mergeMetrics(filepath.Join(cfg.Out, MetricsFile), "generation", gm); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, filepath.Join(cfg.Out, MetricsFile))
	}
	if err := writeJSON(filepath.Join(cfg.Out, InfoFile), info); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	res.Files = append(res.Files, filepath.Join(cfg.Out, InfoFile))
	return res, nil
}

// runSGLD is the sampler schedule a run trained with (JEM's defaults for runs without one).
func runSGLD(cfg json.RawMessage) sampler.Config {
	d := sampler.DefaultConfig()
	var c struct {
		LR  *float64 `json:"sgld_lr"`
		Std *float64 `json:"sgld_std"`
	}
	if json.Unmarshal(cfg, &c) == nil {
		if c.LR != nil && *c.LR > 0 {
			d.LR = *c.LR
		}
		if c.Std != nil && *c.Std >= 0 {
			d.Std = *c.Std
		}
	}
	return d
}

// starts are the chains' first states: buffer chains (class c's block of a conditional buffer,
// else the buffer's first chains in order) or U(-1, 1) noise.
func starts(s *torch.Scope, g *torch.Generator, cfg Config, buffer *torch.Tensor, bufClasses int, labelsFor []int, total int, shape []int64) (*torch.Tensor, error) {
	if buffer == nil {
		x := s.AddScalar(s.MulScalar(s.Rand(g, append([]int64{int64(total)}, shape...), torch.Float32, torch.CPU), 2), -1)
		return x, s.Err()
	}
	size := int(buffer.Size(0))
	if bufClasses > 0 && len(labelsFor) > 0 {
		per := size / bufClasses
		if cfg.N > per {
			return nil, inputErr("--n %d: the replay buffer holds %d chains per class", cfg.N, per)
		}
		var parts []*torch.Tensor
		for _, c := range labelsFor {
			parts = append(parts, s.Narrow(buffer, 0, int64(c*per), int64(cfg.N)))
		}
		return s.Contiguous(s.Cat(parts, 0)), s.Err()
	}
	if total > size {
		return nil, inputErr("--n %d: %d samples asked for, the replay buffer holds %d chains", cfg.N, total, size)
	}
	return s.Clone(s.Narrow(buffer, 0, 0, int64(total))), s.Err()
}

// inBatches runs fn over x (and y) in batches along dimension 0 and concatenates the results,
// each batch in a scope of its own.
func inBatches(s *torch.Scope, x, y *torch.Tensor, batch int, fn func(s *torch.Scope, xb, yb *torch.Tensor) (*torch.Tensor, error)) (*torch.Tensor, error) {
	n := x.Size(0)
	var parts []*torch.Tensor
	defer func() {
		for _, p := range parts {
			p.Free()
		}
	}()
	for at := int64(0); at < n; at += int64(batch) {
		k := min(int64(batch), n-at)
		c := s.Child()
		xb := c.Contiguous(c.Narrow(x, 0, at, k))
		var yb *torch.Tensor
		if y != nil {
			yb = c.Narrow(y, 0, at, k)
		}
		out, err := fn(c, xb, yb)
		if err == nil {
			err = c.Err()
		}
		if err != nil {
			s.Merge(c)
			return nil, err
		}
		s.Merge(c, out)
		parts = append(parts, out)
	}
	out := s.Cat(parts, 0)
	return out, s.Err()
}

// topConfidence picks, per class, the k samples predicted as that class with the highest
// probability (JEM++'s selection before scoring).
func topConfidence(pred []int64, conf []float64, classes, k int) ([][]int, map[string]any) {
	top := make([][]int, classes)
	for i, c := range pred {
		top[c] = append(top[c], i)
	}
	js := map[string]any{}
	for c := range top {
		idx := top[c]
		sort.SliceStable(idx, func(a, b int) bool { return conf[idx[a]] > conf[idx[b]] })
		if len(idx) > k {
			idx = idx[:k]
		}
		top[c] = idx
		cs := make([]float64, len(idx))
		for j, i := range idx {
			cs[j] = conf[i]
		}
		js[strconv.Itoa(c)] = map[string]any{"indices": idx, "confidence": cs}
	}
	return top, js
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'))
}

// mergeMetrics sets one section of a metrics.json, keeping the others (an evaluation's).
func mergeMetrics(path, key string, v any) error {
	m := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return inputErr("--out: %s exists and is not a JSON object (%v): it is left as it is", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--out: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m[key] = b
	return writeJSON(path, m)
}

// loadFeatureNet loads the classifier or the Inception-v3 that scores the samples, refusing one
// whose inputs differ from the samples'.
func loadFeatureNet(cfg Config, test *data.Dataset) (*featureNet, error) {
	if cfg.FIDWeights != "" {
		store := torch.NewScope()
		inc, err := nn.LoadInceptionV3(nn.Init{Store: store, Dev: torch.CPU}, cfg.FIDWeights)
		if err != nil {
			store.Close()
			return nil, inputErr("--fid-weights: %w", err)
		}
		return &featureNet{name: eval.FeatureNetInception, close: store.Close,
			feats: func(s *torch.Scope, x *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
				pool, logits := inc.Forward(s, s.MulScalar(s.AddScalar(x, 1), 0.5))
				return pool, s.Softmax(logits, 1)
			}}, nil
	}
	fl, err := model.Load(cfg.FeatureCheckpoint, cfg.Device)
	if err != nil {
		return nil, inputErr("--feature-checkpoint: %w", err)
	}
	bad := fl.InChannels() != test.C
	if !bad {
		// The classifier's own dataset gives the image size it was trained on.
		if fd, err := data.DefaultSource(fl.Run.DataDir).Load(fl.Run.Dataset, data.Test); err == nil {
			bad = fd.C != test.C || fd.H != test.H || fd.W != test.W
		}
	}
	if bad {
		fl.Close()
		return nil, inputErr("--feature-checkpoint %s: the classifier was trained on %s (%d channels), the samples are %d×%d×%d images of %s",
			fl.Path, fl.Run.Dataset, fl.InChannels(), test.C, test.H, test.W, strings.TrimSpace(test.Name))
	}
	return &featureNet{name: eval.ClassifierFeatureNet(fl.Path), close: fl.Close,
		feats: func(s *torch.Scope, x *torch.Tensor) (*torch.Tensor, *torch.Tensor) {
			if fl.Dev != torch.CPU {
				x = s.To(x, fl.Dev)
			}
			f := fl.Features(s, x, false)
			return s.To(f, torch.CPU), s.To(s.Softmax(fl.Head(s, f), 1), torch.CPU)
		}}, nil
}

// generationMetrics is the IS of the samples and their Fréchet distance to the real test images,
// both in fn's features.
func generationMetrics(s *torch.Scope, fn *featureNet, x *torch.Tensor, test *data.Dataset, cfg Config) (*eval.Generation, error) {
	featsOf := func(x *torch.Tensor) (f, p []float32, d, k int, err error) {
		var dd, kk int64
		out, err := inBatches(s, x, nil, cfg.BatchSize, func(c *torch.Scope, xb, _ *torch.Tensor) (*torch.Tensor, error) {
			c.SetGradEnabled(false)
			ft, pt := fn.feats(c, xb)
			if ft == nil || pt == nil {
				return nil, c.Err()
			}
			dd, kk = ft.Size(1), pt.Size(1)
			return c.Cat([]*torch.Tensor{c.ToDType(ft, torch.Float32), c.ToDType(pt, torch.Float32)}, 1), nil
		})
		if err != nil {
			return nil, nil, 0, 0, err
		}
		defer out.Free()
		v, err := out.Float32s()
		if err != nil {
			return nil, nil, 0, 0, err
		}
		n, w := int(x.Size(0)), int(dd+kk)
		f, p = make([]float32, 0, n*int(dd)), make([]float32, 0, n*int(kk))
		for i := 0; i < n; i++ {
			f = append(f, v[i*w:i*w+int(dd)]...)
			p = append(p, v[i*w+int(dd):(i+1)*w]...)
		}
		return f, p, int(dd), int(kk), nil
	}
	n := int(x.Size(0))
	fs, ps, d, k, err := featsOf(x)
	if err != nil {
		return nil, fmt.Errorf("features of the samples: %w", err)
	}
	isMean, isStd, err := eval.InceptionScore(ps, n, k, eval.DefaultISSplits)
	if err != nil {
		return nil, err
	}
	real := test.N
	if cfg.RealN > 0 && cfg.RealN < real {
		real = cfg.RealN
	}
	px := make([]float32, real*test.C*test.H*test.W)
	for i := range px {
		px[i] = float32(test.Images[i])/(255*data.PixelStd) - data.PixelMean/data.PixelStd
	}
	rx := s.FromFloat32(px, int64(real), int64(test.C), int64(test.H), int64(test.W))
	defer rx.Free()
	fr, _, _, _, err := featsOf(rx)
	if err != nil {
		return nil, fmt.Errorf("features of the real images: %w", err)
	}
	fd, eps, err := eval.FrechetDistance(fs, fr, n, real, d)
	if err != nil {
		return nil, err
	}
	return &eval.Generation{FeatureNet: fn.name, ISMean: isMean, ISStd: isStd, FD: fd, N: n, EpsUsed: eps}, nil
}
