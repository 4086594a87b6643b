package score

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Scores that score offers; higher means more in-distribution for each.
var Scores = []string{string(eval.ScoreLogQX), string(eval.ScoreMaxProb), string(eval.ScorePXSim)}

// Output formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// DefaultTPR is the share of the run's validation images the threshold keeps in-distribution.
const DefaultTPR = 0.95

const defaultBatch = 256

// Config is one scoring job.
type Config struct {
	Checkpoint string   // run directory or checkpoint file (hdge-torch's or the released layout)
	Inputs     []string // image files, folders, FORMAT:PATH dataset specs, .npy files of images
	Score      string   // logqx (default), maxprob or pxsim
	TPR        float64  // 0: DefaultTPR
	// Threshold, when non-nil, is used as given instead of one set on the validation images.
	Threshold *float64
	DataDir   string // searched first for the run's dataset (default: the run's data directory)
	// Dataset names the model's training data where the checkpoint does not (a released file):
	// it gives the input shape and the class names.
	Dataset   string
	Format    string // csv (default) or jsonl
	Out       io.Writer
	BatchSize int
	Threads   int
	Device    string
	Seed      uint64 // test-time noise
	Log       *zap.Logger
	Progress  io.Writer // progress bar (a terminal), or nil
}

// Summary is what a job did.
type Summary struct {
	Images, Failed int
	Threshold      Threshold
	// ThresholdFrom says where the threshold came from: "flag", "cache" or "computed".
	ThresholdFrom string
	CacheFile     string
}

// InputError is a problem with what the user asked for, naming the flag.
type InputError = suite.InputError

func inputErr(flag, format string, args ...any) error {
	return &InputError{Flag: flag, Err: fmt.Errorf(format, args...)}
}

// Row is one output line.
type Row struct {
	Input      string   `json:"input"`
	Status     string   `json:"status"` // ok | error
	Class      *int     `json:"class,omitempty"`
	ClassName  string   `json:"class_name,omitempty"`
	MaxProb    *float64 `json:"maxprob,omitempty"`
	LogQX      *float64 `json:"logqx,omitempty"`
	Score      string   `json:"score,omitempty"`
	ScoreValue *float64 `json:"score_value,omitempty"`
	Threshold  *float64 `json:"threshold,omitempty"`
	Decision   string   `json:"decision,omitempty"` // in | out
	Converted  string   `json:"converted,omitempty"`
	Error      string   `json:"error,omitempty"`
}

var csvHeader = []string{"input", "status", "class", "class_name", "maxprob", "logqx", "score", "score_value", "threshold", "decision", "converted", "error"}

func (r Row) csv() []string {
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	class := ""
	if r.Class != nil {
		class = strconv.Itoa(*r.Class)
	}
	return []string{r.Input, r.Status, class, r.ClassName, f(r.MaxProb), f(r.LogQX), r.Score, f(r.ScoreValue), f(r.Threshold), r.Decision, r.Converted, r.Error}
}

func (c *Config) validate() error {
	if c.Score == "" {
		c.Score = string(eval.ScoreLogQX)
	}
	if c.TPR == 0 {
		c.TPR = DefaultTPR
	}
	if c.Format == "" {
		c.Format = FormatCSV
	}
	switch {
	case c.Checkpoint == "":
		return inputErr("checkpoint", "give a run directory or checkpoint file")
	case len(c.Inputs) == 0:
		return inputErr("checkpoint", "no images given: name image files, folders, FORMAT:PATH datasets or .npy files after the flags")
	case !slices.Contains(Scores, c.Score):
		return inputErr("score", "unknown score %q (want logqx, maxprob or pxsim)", c.Score)
	case !(c.TPR > 0 && c.TPR < 1):
		return inputErr("tpr", "%g must be in (0, 1)", c.TPR)
	case c.Format != FormatCSV && c.Format != FormatJSONL:
		return inputErr("format", "unknown format %q (want csv or jsonl)", c.Format)
	case c.BatchSize < 0:
		return inputErr("batch-size", "%d must be ≥ 0", c.BatchSize)
	case c.Threshold != nil && (math.IsNaN(*c.Threshold) || math.IsInf(*c.Threshold, 0)):
		return inputErr("threshold", "%v must be a finite number", *c.Threshold)
	}
	if c.BatchSize == 0 {
		c.BatchSize = defaultBatch
	}
	return nil
}

// scorer turns logits into the chosen score.
type scorer struct {
	name  string
	queue []float32
	con   suite.Contrast
}

func (s *scorer) scores(l eval.Logits) ([]float64, error) {
	if s.name == string(eval.ScorePXSim) {
		return eval.ContrastiveScores(l, s.queue, s.con.K, s.con.Config())
	}
	return eval.Scores(l, eval.Score(s.name))
}

// Run scores every input and writes one row per image to cfg.Out. Images that cannot be read
// are rows with status "error"; Summary.Failed counts them, and the caller turns a non-zero
// count into a failing exit status. Problems with the job itself are errors (*InputError for
// the user's input).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	runtime.LockOSThread() // one OS thread, one malloc arena for libtorch's buffers (see trainer.Train)
	defer runtime.UnlockOSThread()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	torch.SetNumThreads(threads)
	m, err := model.Load(cfg.Checkpoint, cfg.Device)
	if err != nil {
		return nil, &InputError{Flag: "checkpoint", Err: err}
	}
	defer m.Close()
	sc := &scorer{name: cfg.Score}
	if sc.name == string(eval.ScorePXSim) {
		if sc.queue, sc.con, err = suite.PXSimInputs(m, "score"); err != nil {
			return nil, err
		}
	}
	runDir := runDirOf(cfg.Checkpoint, m.Path)
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = m.Run.DataDir
	}
	src := data.DefaultSource(dataDir)
	if cfg.Dataset != "" {
		if m.Run.Dataset != "" && cfg.Dataset != m.Run.Dataset {
			return nil, inputErr("dataset", "%s was trained on %s; --dataset is only for checkpoints that do not say", m.Path, m.Run.Dataset)
		}
		m.Run.Dataset = cfg.Dataset
	}
	shape, classes, err := inputShape(src, m)
	if err != nil {
		return nil, err
	}
	for _, s := range m.Inferred {
		log.Warn("released checkpoint: setting inferred", zap.String("setting", s))
	}
	sum := &Summary{}
	if sum.Threshold, sum.ThresholdFrom, sum.CacheFile, err = threshold(ctx, &cfg, m, sc, src, runDir, log); err != nil {
		return nil, err
	}
	log.Info("threshold", zap.String("score", cfg.Score), zap.Float64("threshold", sum.Threshold.Value),
		zap.Float64("tpr", sum.Threshold.TPR), zap.String("from", sum.ThresholdFrom), zap.String("file", sum.CacheFile))

	items := expand(src, cfg.Inputs)
	var bar *progressbar.ProgressBar
	if cfg.Progress != nil {
		bar = progressbar.NewOptions(len(items), progressbar.OptionSetWriter(cfg.Progress), progressbar.OptionSetDescription("scoring"),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"), progressbar.OptionShowCount(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
		defer bar.Close()
	}
	w := newWriter(cfg.Format, cfg.Out)
	start := time.Now()
	for lo := 0; lo < len(items); lo += cfg.BatchSize {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		chunk := items[lo:min(lo+cfg.BatchSize, len(items))]
		rows, err := scoreChunk(m, sc, chunk, shape, classes, sum.Threshold.Value, cfg.Seed^uint64(lo))
		if err != nil {
			return sum, err
		}
		for _, r := range rows {
			if r.Status != "ok" {
				sum.Failed++
				log.Warn("image not scored", zap.String("input", r.Input), zap.String("error", r.Error))
			}
			if err := w.write(r); err != nil {
				return sum, fmt.Errorf("writing the output: %w", err)
			}
		}
		sum.Images += len(chunk)
		if bar != nil {
			_ = bar.Add(len(chunk))
		}
	}
	if err := w.flush(); err != nil {
		return sum, fmt.Errorf("writing the output: %w", err)
	}
	secs := time.Since(start).Seconds()
	log.Info("scored", zap.Int("images", sum.Images), zap.Int("failed", sum.Failed), zap.Float64("seconds", secs),
		zap.Float64("img_per_s", float64(sum.Images)/max(secs, 1e-9)))
	return sum, nil
}

// imageShape is the model's input: channels, height, width.
type imageShape struct{ c, h, w int }

func (s imageShape) String() string { return fmt.Sprintf("%dx%dx%d", s.c, s.h, s.w) }

// releasedSide is the image side of the released code's models (CIFAR-10/100, SVHN).
const releasedSide = 32

// inputShape is the image shape and class names of the run's dataset (its test split, the
// smaller one); for a released checkpoint without --dataset, the released code's 32×32 inputs
// are assumed.
func inputShape(src data.Source, m *model.Loaded) (imageShape, []string, error) {
	if m.Run.Dataset == "" {
		if !m.Released {
			return imageShape{}, nil, inputErr("checkpoint", "%s: the run's config names no dataset", m.Path)
		}
		m.Inferred = append(m.Inferred, fmt.Sprintf("inputs of %dx%d pixels, the released code's (--dataset names the training data instead)", releasedSide, releasedSide))
		return imageShape{m.InChannels(), releasedSide, releasedSide}, nil, nil
	}
	d, err := src.Load(m.Run.Dataset, data.Test)
	if err != nil {
		return imageShape{}, nil, inputErr("data-dir", "the run's dataset %s (for its image shape and class names): %v", m.Run.Dataset, err)
	}
	if d.C != m.InChannels() {
		return imageShape{}, nil, inputErr("dataset", "%s has %d-channel images, but the model (%s) takes %d", m.Run.Dataset, d.C, m.Path, m.InChannels())
	}
	return imageShape{d.C, d.H, d.W}, d.Classes, nil
}

// scoreChunk decodes, converts and scores a chunk of items, one row each, in order.
func scoreChunk(m *model.Loaded, sc *scorer, chunk []item, shape imageShape, classes []string, thr float64, seed uint64) ([]Row, error) {
	rows := make([]Row, len(chunk))
	batch := &data.Dataset{Name: "inputs", C: shape.c, H: shape.h, W: shape.w}
	var at []int
	for i := range chunk {
		it := &chunk[i]
		rows[i] = Row{Input: it.name, Status: "error"}
		if it.err == nil && it.path != "" {
			decode(it)
		}
		if it.err == nil {
			rows[i].Converted, it.err = convert(it, shape)
		}
		if it.err != nil {
			rows[i].Error = it.err.Error()
			continue
		}
		batch.Images = append(batch.Images, it.pix...)
		batch.Labels = append(batch.Labels, 0)
		batch.N++
		at = append(at, i)
		it.pix = nil // the batch holds the pixels now
	}
	batch.Classes = make([]string, m.Classes())
	if batch.N == 0 {
		return rows, nil
	}
	out, err := m.Logits(batch, m.Run.Noise, batch.N, seed)
	if err != nil {
		return nil, err
	}
	l, err := eval.NewLogits(out, batch.N, m.Classes())
	if err != nil {
		return nil, err
	}
	maxp, err := eval.MaxProb(l)
	if err != nil {
		return nil, err
	}
	lqx, err := eval.LogQX(l)
	if err != nil {
		return nil, err
	}
	s, err := sc.scores(l)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		y := argmax(l.Row(j))
		r := &rows[i]
		r.Status, r.Class, r.ClassName = "ok", &y, strconv.Itoa(y)
		if y < len(classes) {
			r.ClassName = classes[y]
		}
		r.MaxProb, r.LogQX, r.Score, r.ScoreValue, r.Threshold = &maxp[j], &lqx[j], sc.name, &s[j], &thr
		r.Decision = "out"
		if s[j] >= thr {
			r.Decision = "in"
		}
	}
	return rows, nil
}

// convert brings an image to the model's shape by data.Convert's rules (the ones the OOD sets
// follow) and says what it did; an image those rules cannot convert is an error.
func convert(it *item, to imageShape) (string, error) {
	from := imageShape{it.c, it.h, it.w}
	if len(it.pix) != it.c*it.h*it.w || it.h == 0 || it.w == 0 {
		return "", fmt.Errorf("image of %d bytes is not %s", len(it.pix), from)
	}
	if from == to {
		return "", nil
	}
	d := &data.Dataset{Name: it.name, Images: it.pix, Labels: []int64{0}, N: 1, C: it.c, H: it.h, W: it.w, Classes: []string{"x"}}
	cd, err := data.Convert(d, to.c, to.h, to.w)
	if err != nil {
		return "", fmt.Errorf("its %s image cannot be converted to the model's %s: %w", from, to, err)
	}
	it.pix, it.c, it.h, it.w = cd.Images, to.c, to.h, to.w
	return fmt.Sprintf("%s to %s", from, to), nil
}

func argmax(row []float32) int {
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return best
}

// runDirOf is the run directory a checkpoint belongs to: the flag when it is a directory, RUN
// for RUN/checkpoints/FILE, else the file's folder.
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

type writer struct {
	csv  *csv.Writer
	json *json.Encoder
	head bool
}

func newWriter(format string, w io.Writer) *writer {
	if format == FormatJSONL {
		return &writer{json: json.NewEncoder(w)}
	}
	return &writer{csv: csv.NewWriter(w)}
}

func (w *writer) write(r Row) error {
	if w.json != nil {
		return w.json.Encode(r)
	}
	if !w.head {
		w.head = true
		if err := w.csv.Write(csvHeader); err != nil {
			return err
		}
	}
	if err := w.csv.Write(r.csv()); err != nil {
		return err
	}
	w.csv.Flush() // a row at a time, so a long job's output can be followed
	return w.csv.Error()
}

func (w *writer) flush() error {
	if w.csv == nil {
		return nil
	}
	if !w.head {
		if err := w.csv.Write(csvHeader); err != nil {
			return err
		}
	}
	w.csv.Flush()
	return w.csv.Error()
}
