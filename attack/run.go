package attack

import (
	"context"
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Options say how Run, CleanLogits and GradNormScores walk a dataset.
type Options struct {
	BatchSize int          // images per batch; ≤ 0 means 100
	Device    torch.Device // where the model's parameters live; the zero value is the CPU
	// Progress, when set, is called after each batch with the number of images it finished.
	Progress func(images int)
}

func (o Options) batch() int {
	if o.BatchSize <= 0 {
		return 100
	}
	return o.BatchSize
}

func (o Options) device() torch.Device {
	if o.Device.Kind == "" {
		return torch.CPU
	}
	return o.Device
}

// Result is the outcome of one PGD setting over a dataset.
type Result struct {
	Config Config
	N, C   int
	// Logits (N×C) are, per sample, those at the adversarial point of the first restart that fooled
	// the model, else of the last restart: their top-1 accuracy is the robust accuracy, so the
	// attack can be scored from exported logits like everything else.
	Logits   []float32
	Robust   []bool // correct under every restart
	Accuracy float64
	// Measured on the adversarial images, over all samples and restarts: the largest L∞ and L2
	// distance from the clean image, and the pixel range. They let callers check the projection.
	MaxLinf, MaxL2     float64
	MinPixel, MaxPixel float64
}

// pixels returns images [lo, hi) of d as floats in [0, 1].
func pixels(d *data.Dataset, lo, hi int) []float32 {
	sz := d.ImageSize()
	out := make([]float32, (hi-lo)*sz)
	for i, v := range d.Images[lo*sz : hi*sz] {
		out[i] = float32(v) / 255
	}
	return out
}

// upload makes batch [lo, hi) of d into tensors on dev: pixels in [0, 1] and int64 labels.
func upload(s *torch.Scope, d *data.Dataset, lo, hi int, dev torch.Device) (x, y *torch.Tensor) {
	x = s.FromFloat32(pixels(d, lo, hi), int64(hi-lo), int64(d.C), int64(d.H), int64(d.W))
	y = s.FromInt64(d.Labels[lo:hi], int64(hi-lo))
	if dev != torch.CPU {
		x, y = s.To(x, dev), s.To(y, dev)
	}
	return x, y
}

// forward returns the logits of pixels x (in [0, 1]) without recording gradients.
func forward(m Model, x *torch.Tensor, noise float64, gen *torch.Generator) ([]float32, error) {
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	l := m.Forward(s, modelInput(s, x, noise, gen), false)
	if err := s.Err(); err != nil {
		return nil, err
	}
	return l.Float32s()
}

// argmax is the first index of the largest value, as torch.argmax and eval.Accuracy break ties.
func argmax(row []float32) int {
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return best
}

func checkDataset(d *data.Dataset) error {
	if d == nil || d.N == 0 {
		return fmt.Errorf("attack: empty dataset")
	}
	return d.Validate()
}

// CleanLogits runs the model over d exactly as Run's attacked function sees it (pixels/255 scaled
// to [-1, 1], no noise): the reference PGD at ε = 0 must reproduce.
func CleanLogits(ctx context.Context, m Model, d *data.Dataset, o Options) ([]float32, error) {
	if err := checkDataset(d); err != nil {
		return nil, err
	}
	var out []float32
	for lo := 0; lo < d.N; lo += o.batch() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(d.N, lo+o.batch())
		s := torch.NewScope()
		x, _ := upload(s, d, lo, hi, o.device())
		l, err := forward(m, x, 0, nil)
		if err == nil {
			err = s.Err()
		}
		s.Close()
		if err != nil {
			return nil, fmt.Errorf("clean logits of %s, images %d-%d: %w", d.Name, lo, hi-1, err)
		}
		out = append(out, l...)
		if o.Progress != nil {
			o.Progress(hi - lo)
		}
	}
	return out, nil
}

// Run attacks every image of d with PGD under c and reports the robust accuracy with the logits
// that decide it. Images are uint8 pixels read as x/255; the model sees (x-0.5)/0.5 inside the
// attacked function, in eval mode.
func Run(ctx context.Context, m Model, d *data.Dataset, c Config, o Options) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := checkDataset(d); err != nil {
		return nil, err
	}
	dev := o.device()
	gen, err := torch.NewGenerator(c.Seed, dev)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	res := &Result{Config: c, N: d.N, Robust: make([]bool, d.N), MinPixel: math.Inf(1), MaxPixel: math.Inf(-1)}
	sz := d.ImageSize()
	for lo := 0; lo < d.N; lo += o.batch() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(d.N, lo+o.batch())
		if err := runBatch(m, d, lo, hi, c, dev, gen, sz, res); err != nil {
			return nil, fmt.Errorf("PGD %s ε=%g on %s, images %d-%d: %w", c.Norm, c.Eps, d.Name, lo, hi-1, err)
		}
		if o.Progress != nil {
			o.Progress(hi - lo)
		}
	}
	correct := 0
	for _, r := range res.Robust {
		if r {
			correct++
		}
	}
	res.Accuracy = float64(correct) / float64(d.N)
	return res, nil
}

func runBatch(m Model, d *data.Dataset, lo, hi int, c Config, dev torch.Device, gen *torch.Generator, sz int, res *Result) error {
	s := torch.NewScope()
	defer s.Close()
	x0, y := upload(s, d, lo, hi, dev)
	if err := s.Err(); err != nil {
		return err
	}
	clean := pixels(d, lo, hi)
	fooled := make([]bool, hi-lo)
	var logits []float32
	for r := range c.restarts() {
		rs := torch.NewScope()
		adv, err := PGD(rs, m, x0, y, c, gen)
		if err != nil {
			rs.Close()
			return fmt.Errorf("restart %d: %w", r+1, err)
		}
		l, err := forward(m, adv, c.Noise, gen)
		var px []float32
		if err == nil {
			px, err = adv.Float32s()
		}
		rs.Close()
		if err != nil {
			return fmt.Errorf("restart %d: %w", r+1, err)
		}
		if res.C == 0 {
			res.C = len(l) / (hi - lo)
		}
		if logits == nil {
			logits = make([]float32, len(l))
		}
		for i := range hi - lo {
			measure(res, px[i*sz:(i+1)*sz], clean[i*sz:(i+1)*sz])
			if fooled[i] {
				continue
			}
			row := l[i*res.C : (i+1)*res.C]
			copy(logits[i*res.C:], row)
			fooled[i] = int64(argmax(row)) != d.Labels[lo+i]
		}
	}
	for i, f := range fooled {
		res.Robust[lo+i] = !f
	}
	res.Logits = append(res.Logits, logits...)
	return nil
}

// measure folds one adversarial image's distance from its clean image into res.
func measure(res *Result, adv, clean []float32) {
	var linf, l2 float64
	for j, v := range adv {
		dv := math.Abs(float64(v) - float64(clean[j]))
		linf = max(linf, dv)
		l2 += dv * dv
		res.MinPixel = min(res.MinPixel, float64(v))
		res.MaxPixel = max(res.MaxPixel, float64(v))
	}
	res.MaxLinf = max(res.MaxLinf, linf)
	res.MaxL2 = max(res.MaxL2, math.Sqrt(l2))
}
