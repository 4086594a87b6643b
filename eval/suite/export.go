package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/attack"
	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Default batch sizes: inference holds no activations for backward, PGD does.
const (
	defaultBatch    = 256
	defaultPGDBatch = 100
)

// exporter holds what the model half of an evaluation shares.
type exporter struct {
	cfg   *Config
	log   *zap.Logger
	dir   string
	m     *model.Loaded
	noise float64
	batch int
	files []string
	// queue and con are set when pxsim is asked for: each set's pxsim scores are exported too,
	// for readers of the folder that do not recompute them from the queue (compare, scripts).
	queue []float32
	con   *Contrast
}

// seedFor derives a per-set seed from the run's seed and the set's name, so a set's noise and
// sampling do not depend on which other sets are evaluated.
func (e *exporter) seedFor(name string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, name)
	return e.cfg.Seed ^ h.Sum64()
}

// file reserves a file name in the folder; two entries may never share one.
func (e *exporter) file(name string) (string, error) {
	if slices.Contains(e.files, name) {
		return "", fmt.Errorf("two outputs would both be written to %s; rename an OOD set (NAME=SPEC)", name)
	}
	e.files = append(e.files, name)
	return name, nil
}

// export runs the model over every set the suites need and writes the logits folder.
func export(ctx context.Context, cfg *Config, dir string, log *zap.Logger) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return inputErr("out", "%v", err)
	}
	// An index left from an earlier export would describe files this one is about to replace.
	if err := os.Remove(filepath.Join(dir, IndexFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// libtorch's own default can be a single thread (Debian's build), so 0 asks for one per CPU.
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	torch.SetNumThreads(threads)
	log.Info("libtorch", zap.String("version", torch.Version()), zap.Int("threads", torch.NumThreads()), zap.Bool("cuda", torch.CUDAAvailable()))
	m, err := model.Load(cfg.Checkpoint, cfg.Device)
	if err != nil {
		return &InputError{Flag: "checkpoint", Err: err}
	}
	defer m.Close()
	if cfg.Precision != "" {
		prec, warning, err := torch.ResolvePrecision(cfg.Precision, cfg.Precision != "auto", m.Dev)
		if err != nil {
			return &InputError{Flag: "precision", Err: err}
		}
		if warning != "" {
			log.Warn(warning)
		}
		m.Precision = prec
	}
	run := m.Run
	e := &exporter{cfg: cfg, log: log, dir: dir, m: m, noise: run.Noise, batch: cfg.BatchSize}
	if e.batch == 0 {
		e.batch = defaultBatch
	}
	log.Info("model", zap.String("checkpoint", m.Path), zap.Int("step", m.Step), zap.String("model", run.Model),
		zap.String("objective", run.Objective), zap.Int64("params", m.NumParams()), zap.String("device", m.Dev.String()),
		zap.Float64("test_noise", run.Noise))

	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = run.DataDir
	}
	src := data.DefaultSource(dataDir)
	testSpec := cfg.Test
	if testSpec == "" {
		testSpec = run.Dataset
	}
	for _, s := range m.Inferred {
		log.Warn("released checkpoint: setting inferred", zap.String("setting", s))
	}
	if testSpec == "" {
		return inputErr("test", "checkpoint %s does not say which dataset it was trained on (a released checkpoint): name the in-distribution test set, e.g. --test cifar10", m.Path)
	}
	test, err := src.Load(testSpec, data.Test)
	if err != nil {
		return inputErr("test", "%v", err)
	}
	classes := m.Classes()
	if test.C != m.InChannels() {
		return inputErr("test", "%s has %d-channel images, but the model (%s) takes %d channels", testSpec, test.C, m.Path, m.InChannels())
	}
	if test.NumClasses() > classes {
		return inputErr("test", "%s has %d classes, but the model (%s) predicts %d", testSpec, test.NumClasses(), m.Path, classes)
	}
	for i, y := range test.Labels {
		if y >= int64(classes) {
			return inputErr("test", "%s: label %d of image %d is beyond the model's %d classes", testSpec, y, i, classes)
		}
	}

	idx := &Index{Format: indexFormat, Model: run.Objective + " " + run.Model, Scores: cfg.scores()}
	if slices.Contains(cfg.scores(), string(eval.ScorePXSim)) {
		q, c, err := PXSimInputs(m, "scores")
		var ie *InputError
		switch {
		case err != nil && cfg.PXSimWhereQueued && errors.As(err, &ie):
			log.Info("pxsim left out: the checkpoint keeps no HDGE queue", zap.String("objective", run.Objective))
			cfg.Scores = slices.DeleteFunc(slices.Clone(cfg.scores()), func(s string) bool { return s == string(eval.ScorePXSim) })
			idx.Scores = cfg.Scores
		case err != nil:
			return err
		default:
			if idx.Queue, err = e.file(QueueFile); err != nil {
				return err
			}
			if err := npy.WriteFloat32(filepath.Join(dir, idx.Queue), q, m.Classes(), c.K); err != nil {
				return err
			}
			idx.Contrast = &c
			e.queue, e.con = q, &c
		}
	}
	runDir := runDirOf(cfg.Checkpoint, m.Path)
	idx.Title = "HDGE evaluation: " + filepath.Base(runDir)
	testName := displayName(testSpec)
	log.Info("test set", zap.String("spec", testSpec), zap.Int("n", test.N), zap.String("shape", shape(test)))
	if idx.Test, err = e.logits(ctx, TestSetName, testSpec, testName, test, true); err != nil {
		return err
	}

	var oodSpecs, skipped []string
	if cfg.has(OOD) {
		sets := cfg.OOD
		if sets == nil {
			sets = DefaultOOD(testSpec)
		}
		limit := cfg.OODLimit
		if limit == 0 {
			limit = test.N
		}
		for _, set := range sets {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := e.oodSet(src, set, test, limit)
			if err != nil {
				return err
			}
			if d == nil {
				skipped = append(skipped, set.Name)
				continue
			}
			entry, err := e.logits(ctx, set.Name, set.Spec, set.Name, d, !set.Synthetic())
			if err != nil {
				return err
			}
			idx.OOD = append(idx.OOD, entry)
			oodSpecs = append(oodSpecs, set.Name+"="+set.Spec)
		}
	}

	var pgdCfg map[string]any
	if cfg.has(Robustness) {
		if idx.PGD, err = e.pgd(ctx, test); err != nil {
			return err
		}
		p := cfg.PGD
		eps := map[string]any{}
		for _, n := range p.Norms {
			eps[n] = p.Eps[n]
		}
		pgdCfg = map[string]any{"norms": p.Norms, "eps": eps, "steps": p.Steps, "step_size": stepSizeText(p.StepSize),
			"restarts": max(1, p.Restarts), "random_start": p.RandomStart, "images": idx.PGD.N, "space": "pixels in [0, 1]", "test_noise": 0.0}
	}

	if jl := filepath.Join(runDir, "metrics.jsonl"); fileExists(jl) {
		if err := atomicfile.CopyFile(jl, filepath.Join(dir, "training.jsonl")); err != nil {
			return err
		}
		idx.Training, idx.TrainingSource = "training.jsonl", jl
	}

	evalCfg := map[string]any{
		"test": testSpec, "test_images": test.N, "test_noise": run.Noise, "seed": cfg.Seed,
		"ood": oodSpecs, "ood_limit": cfg.OODLimit, "scores": idx.Scores,
		"device": m.Dev.String(), "libtorch": torch.Version(),
	}
	if len(skipped) > 0 {
		evalCfg["ood_skipped"] = skipped
	}
	if pgdCfg != nil {
		evalCfg["pgd"] = pgdCfg
	}
	raw := map[string]any{"run": run, "eval": evalCfg,
		"checkpoint": map[string]any{"path": m.Path, "step": m.Step, "best_val_acc": m.BestValAcc}}
	// A JSON round trip gives the config the types a later --logits run reads back, so both
	// write the same metrics.json.
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &idx.Config); err != nil {
		return err
	}
	return writeIndex(dir, idx)
}

func stepSizeText(v float64) any {
	if v == 0 {
		return "2.5·ε/steps"
	}
	return v
}

// runDirOf is the run directory a checkpoint belongs to: the flag when it is a directory, else
// RUN for RUN/checkpoints/FILE, else the file's folder.
func runDirOf(flag, path string) string {
	if st, err := os.Stat(flag); err == nil && st.IsDir() {
		return flag
	}
	parent := filepath.Dir(path)
	if filepath.Base(parent) == "checkpoints" {
		return filepath.Dir(parent)
	}
	return parent
}

// displayName is how a dataset spec is shown: the name, or the last element of a FORMAT:PATH.
func displayName(spec string) string {
	if format, path, ok := strings.Cut(spec, ":"); ok && slices.Contains(data.KnownFormats(), format) {
		return slug(lastElem(path))
	}
	return spec
}

func shape(d *data.Dataset) string { return fmt.Sprintf("%dx%dx%d", d.C, d.H, d.W) }

// head keeps the first n images of d (all when it has fewer).
func head(d *data.Dataset, n int) *data.Dataset {
	if n <= 0 || n >= d.N {
		return d
	}
	sz := d.ImageSize()
	return &data.Dataset{Name: d.Name, Images: d.Images[:n*sz], Labels: d.Labels[:n], N: n, C: d.C, H: d.H, W: d.W, Classes: d.Classes}
}

// oodSet loads or makes one OOD set in the test set's image shape; nil, nil means an optional set
// whose files are absent.
func (e *exporter) oodSet(src data.Source, set SetSpec, test *data.Dataset, limit int) (*data.Dataset, error) {
	seed := e.seedFor(set.Name)
	switch set.Spec {
	case SetInterp:
		return data.Interp(test, limit, seed), nil
	case SetUniform:
		return data.UniformNoise(limit, test.C, test.H, test.W, seed), nil
	case SetGaussian:
		return data.GaussianNoise(limit, test.C, test.H, test.W, seed), nil
	}
	d, err := src.Load(set.Spec, data.Test)
	if err != nil {
		if set.Optional && absent(err) {
			e.log.Info("skipping OOD set: not found", zap.String("set", set.Name), zap.String("reason", err.Error()))
			return nil, nil
		}
		return nil, inputErr("ood", "set %s: %v", set.Name, err)
	}
	d = head(d, limit)
	fitted, err := fit(set.Name, d, test)
	if err != nil {
		return nil, err
	}
	if fitted != d {
		e.log.Info("converted OOD set", zap.String("set", set.Name), zap.String("from", shape(d)), zap.String("to", shape(test)))
	}
	return fitted, nil
}

// fit converts an OOD set to the test set's image shape (channels and size), as the model must
// see both alike.
func fit(name string, d, test *data.Dataset) (*data.Dataset, error) {
	if d.C == test.C && d.H == test.H && d.W == test.W {
		return d, nil
	}
	c, err := data.Convert(d, test.C, test.H, test.W)
	if err != nil {
		return nil, inputErr("ood", "set %s: its %s images cannot be converted to the test set's %s: %v", name, shape(d), shape(test), err)
	}
	return c, nil
}

// absent tells a dataset whose files are not there from one that is damaged.
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, data.ErrNotFound)
}

// logits runs the model over d with the run's test-time noise and writes name.npy (and labels).
func (e *exporter) logits(ctx context.Context, name, spec, display string, d *data.Dataset, withLabels bool) (SetEntry, error) {
	start := time.Now()
	l, err := e.m.Logits(d, e.noise, e.batch, e.seedFor(name))
	if err != nil {
		return SetEntry{}, fmt.Errorf("logits of %s: %w", name, err)
	}
	c := e.m.Classes()
	entry := SetEntry{Name: name, Spec: spec, Dataset: display, N: d.N, C: c}
	if entry.Logits, err = e.file(name + ".npy"); err != nil {
		return entry, err
	}
	if err := npy.WriteFloat32(filepath.Join(e.dir, entry.Logits), l, d.N, c); err != nil {
		return entry, err
	}
	if withLabels {
		if entry.Labels, err = e.file(name + "_labels.npy"); err != nil {
			return entry, err
		}
		if err := npy.WriteInt64(filepath.Join(e.dir, entry.Labels), d.Labels, d.N); err != nil {
			return entry, err
		}
	}
	secs := time.Since(start).Seconds()
	e.log.Info("logits", zap.String("set", name), zap.String("data", d.Name), zap.Int("n", d.N),
		zap.Float64("seconds", secs), zap.Float64("img_per_s", float64(d.N)/secs))
	if e.con != nil {
		ll, err := eval.NewLogits(l, d.N, c)
		if err != nil {
			return entry, fmt.Errorf("logits of %s: %w", name, err)
		}
		s, err := eval.ContrastiveScores(ll, e.queue, e.con.K, e.con.Config())
		if err != nil {
			return entry, err
		}
		f, err := e.file(name + "_" + string(eval.ScorePXSim) + ".npy")
		if err != nil {
			return entry, err
		}
		if err := npy.WriteFloat64(filepath.Join(e.dir, f), s, d.N); err != nil {
			return entry, err
		}
		entry.Scores = map[string]string{string(eval.ScorePXSim): f}
	}
	if slices.Contains(e.cfg.scores(), ScoreGradNorm) {
		start := time.Now()
		s, err := attack.GradNormScores(ctx, e.m, d, e.noise, e.seedFor(name), attack.Options{BatchSize: e.batch, Device: e.m.Dev})
		if err != nil {
			return entry, err
		}
		f, err := e.file(name + "_" + ScoreGradNorm + ".npy")
		if err != nil {
			return entry, err
		}
		if err := npy.WriteFloat64(filepath.Join(e.dir, f), s, d.N); err != nil {
			return entry, err
		}
		if entry.Scores == nil {
			entry.Scores = map[string]string{}
		}
		entry.Scores[ScoreGradNorm] = f
		e.log.Info("gradient-norm scores", zap.String("set", name), zap.Float64("seconds", time.Since(start).Seconds()))
	}
	return entry, nil
}

// pgd attacks the first PGD.Limit test images under every configured setting.
func (e *exporter) pgd(ctx context.Context, test *data.Dataset) (*PGDEntry, error) {
	p := e.cfg.PGD
	sub := head(test, p.Limit)
	batch := e.cfg.BatchSize
	if batch == 0 {
		batch = defaultPGDBatch
	}
	var settings []attack.Config
	for _, norm := range p.Norms {
		for _, eps := range p.Eps[norm] {
			for _, steps := range p.Steps {
				settings = append(settings, attack.Config{Norm: norm, Eps: eps, Steps: steps, StepSize: p.StepSize,
					Restarts: p.Restarts, RandomStart: p.RandomStart, Seed: e.cfg.Seed})
			}
		}
	}
	var bar *progressbar.ProgressBar
	if e.cfg.Progress != nil {
		bar = progressbar.NewOptions(len(settings)*sub.N, progressbar.OptionSetWriter(e.cfg.Progress),
			progressbar.OptionSetDescription("PGD"), progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish())
		defer bar.Close()
	}
	opt := attack.Options{BatchSize: batch, Device: e.m.Dev}
	if bar != nil {
		opt.Progress = func(n int) { _ = bar.Add(n) }
	}
	entry := &PGDEntry{N: sub.N}
	var err error
	if entry.Labels, err = e.file("pgd_labels.npy"); err != nil {
		return nil, err
	}
	if entry.Clean, err = e.file("pgd_clean.npy"); err != nil {
		return nil, err
	}
	clean, err := attack.CleanLogits(ctx, e.m, sub, attack.Options{BatchSize: batch, Device: e.m.Dev})
	if err != nil {
		return nil, err
	}
	c := e.m.Classes()
	if err := npy.WriteFloat32(filepath.Join(e.dir, entry.Clean), clean, sub.N, c); err != nil {
		return nil, err
	}
	if err := npy.WriteInt64(filepath.Join(e.dir, entry.Labels), sub.Labels, sub.N); err != nil {
		return nil, err
	}
	e.log.Info("PGD sweep", zap.Int("images", sub.N), zap.Int("attacks", len(settings)), zap.Int("restarts", max(1, p.Restarts)))
	total := time.Now()
	for _, s := range settings {
		if bar != nil {
			bar.Describe(fmt.Sprintf("PGD %s ε=%.4g %d steps", s.Norm, s.Eps, s.Steps))
		}
		start := time.Now()
		res, err := attack.Run(ctx, e.m, sub, s, opt)
		if err != nil {
			return nil, err
		}
		secs := time.Since(start).Seconds()
		name := fmt.Sprintf("pgd_%s_eps%s_steps%d", s.Norm, strconv.FormatFloat(s.Eps, 'g', 6, 64), s.Steps)
		f, err := e.file(name + ".npy")
		if err != nil {
			return nil, err
		}
		if err := npy.WriteFloat32(filepath.Join(e.dir, f), res.Logits, sub.N, c); err != nil {
			return nil, err
		}
		pert := res.MaxLinf
		if s.Norm == "l2" {
			pert = res.MaxL2
		}
		entry.Attacks = append(entry.Attacks, AttackEntry{Norm: s.Norm, Eps: s.Eps, Steps: s.Steps, StepSize: s.Alpha(),
			Restarts: max(1, s.Restarts), RandomStart: s.RandomStart, Logits: f, MaxPerturbation: pert, Seconds: secs})
		e.log.Info("PGD", zap.String("norm", s.Norm), zap.Float64("eps", s.Eps), zap.Int("steps", s.Steps),
			zap.Float64("accuracy", res.Accuracy), zap.Float64("max_perturbation", pert), zap.Float64("seconds", secs))
	}
	e.log.Info("PGD sweep done", zap.Float64("seconds", time.Since(total).Seconds()),
		zap.Float64("img_steps_per_s", float64(sub.N*max(1, p.Restarts))*float64(sumSteps(settings))/time.Since(total).Seconds()))
	return entry, nil
}

func sumSteps(cs []attack.Config) int {
	n := 0
	for _, c := range cs {
		n += c.Steps
	}
	return n
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
