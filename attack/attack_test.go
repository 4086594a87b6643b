package attack

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

var (
	fashionOnce               sync.Once
	fashionTrain, fashionTest *data.Dataset
	fashionErr                error
)

// fashion returns the first 1200 training and 120 test images of Debian's Fashion-MNIST.
func fashion(t *testing.T) (train, test *data.Dataset) {
	t.Helper()
	if _, err := os.Stat(fashionDir); err != nil {
		t.Skip("Debian's dataset-fashion-mnist is not installed; `make deps` installs it")
	}
	fashionOnce.Do(func() {
		var tr, te *data.Dataset
		if tr, fashionErr = data.ReadIDX(filepath.Join(fashionDir, "train-images-idx3-ubyte.gz"), filepath.Join(fashionDir, "train-labels-idx1-ubyte.gz"), nil); fashionErr != nil {
			return
		}
		if te, fashionErr = data.ReadIDX(filepath.Join(fashionDir, "t10k-images-idx3-ubyte.gz"), filepath.Join(fashionDir, "t10k-labels-idx1-ubyte.gz"), nil); fashionErr != nil {
			return
		}
		fashionTrain, fashionTest = head(tr, 1200), head(te, 120)
	})
	if fashionErr != nil {
		t.Fatal(fashionErr)
	}
	return fashionTrain, fashionTest
}

// head keeps the first n images of d.
func head(d *data.Dataset, n int) *data.Dataset {
	sz := d.ImageSize()
	return &data.Dataset{Name: d.Name, Images: d.Images[:n*sz], Labels: d.Labels[:n], N: n, C: d.C, H: d.H, W: d.W, Classes: d.Classes}
}

type wrn struct {
	*nn.WideResNet
	store *torch.Scope
}

var (
	modelOnce sync.Once
	model     *wrn
	modelErr  error
)

// trainedWRN trains a WideResNet-10-1 for 150 steps on 1200 Fashion-MNIST images: enough
// for clearly better than chance accuracy, which is all the attack checks need.
func trainedWRN(t *testing.T) *wrn {
	t.Helper()
	train, _ := fashion(t)
	modelOnce.Do(func() {
		start := time.Now()
		model, modelErr = trainWRN(train, 150)
		t.Logf("trained wrn-10-1 in %v", time.Since(start).Round(time.Millisecond))
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return model
}

func trainWRN(d *data.Dataset, steps int) (*wrn, error) {
	gen, err := torch.NewGenerator(7, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	store := torch.NewScope()
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU}, nn.WRNConfig{Depth: 10, Width: 1, Classes: 10, InChannels: 1, Norm: "none"})
	if err != nil {
		store.Close()
		return nil, err
	}
	opt := torch.NewAdam(m.Parameters(), torch.DefaultAdamConfig(2e-3))
	defer opt.Close()
	loader := data.NewLoader(d, data.LoaderConfig{BatchSize: 50, Shuffle: true, DropLast: true, Seed: 3, Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	step := 0
	for b := range loader.Start(ctx, data.Position{}) {
		s := torch.NewScope()
		x := s.FromFloat32(b.X, int64(len(b.Y)), 1, 28, 28)
		y := s.FromInt64(b.Y, int64(len(b.Y)))
		s.Backward(s.CrossEntropy(m.Forward(s, x, true), y, 0, torch.Mean))
		err := s.Err()
		s.Close()
		loader.Recycle(b)
		if err == nil {
			err = opt.Step()
		}
		torch.ZeroGrad(m.Parameters())
		if err != nil {
			store.Close()
			return nil, err
		}
		if step++; step == steps {
			break
		}
	}
	return &wrn{m, store}, nil
}

func accuracy(logits []float32, labels []int64) float64 {
	c := len(logits) / len(labels)
	n := 0
	for i, y := range labels {
		if int64(argmax(logits[i*c:(i+1)*c])) == y {
			n++
		}
	}
	return float64(n) / float64(len(labels))
}

func run(t *testing.T, m Model, d *data.Dataset, c Config) *Result {
	t.Helper()
	r, err := Run(context.Background(), m, d, c, Options{BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.N != d.N || len(r.Logits) != r.N*r.C || len(r.Robust) != r.N {
		t.Fatalf("result sizes: N %d, C %d, %d logits, %d flags", r.N, r.C, len(r.Logits), len(r.Robust))
	}
	if got := accuracy(r.Logits, d.Labels); got != r.Accuracy {
		t.Errorf("%s ε=%g: accuracy from the returned logits %v, reported %v", c.Norm, c.Eps, got, r.Accuracy)
	}
	// The projection: the measured perturbation stays in the ball and the pixels in [0, 1].
	if r.MinPixel < 0 || r.MaxPixel > 1 {
		t.Errorf("%s ε=%g: adversarial pixels span [%v, %v], outside [0, 1]", c.Norm, c.Eps, r.MinPixel, r.MaxPixel)
	}
	switch c.Norm {
	case "linf":
		if r.MaxLinf > c.Eps+1e-6 {
			t.Errorf("linf ε=%g: measured L∞ perturbation %v", c.Eps, r.MaxLinf)
		}
	case "l2":
		if r.MaxL2 > c.Eps*(1+1e-5)+1e-6 {
			t.Errorf("l2 ε=%g: measured L2 perturbation %v", c.Eps, r.MaxL2)
		}
	}
	return r
}

// TestPGDOnTrainedModel checks the sanity conditions of the issue on a trained WideResNet: at ε = 0
// the attack reproduces the clean logits exactly; accuracy never rises with ε; the perturbation
// stays in the ball and in [0, 1]; more steps do not help the model; and a large L∞ budget drives
// accuracy to about zero.
func TestPGDOnTrainedModel(t *testing.T) {
	m := trainedWRN(t)
	_, test := fashion(t)
	clean, err := CleanLogits(context.Background(), m, test, Options{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	cleanAcc := accuracy(clean, test.Labels)
	t.Logf("clean accuracy %.3f on %d images", cleanAcc, test.N)
	if cleanAcc < 0.5 {
		t.Fatalf("the test model only reaches %.3f clean accuracy; the attack checks need a trained model", cleanAcc)
	}
	const tol = 0.0125 // 1.5 images of 120, for the random starts
	for _, norm := range Norms {
		eps := map[string][]float64{"linf": {0, 2.0 / 255, 8.0 / 255, 32.0 / 255, 0.3}, "l2": {0, 0.25, 1, 3}}[norm]
		var prev float64
		for i, e := range eps {
			start := time.Now()
			r := run(t, m, test, Config{Norm: norm, Eps: e, Steps: 5, Restarts: 1, RandomStart: true, Seed: 1})
			t.Logf("%s ε=%.4f: accuracy %.3f (max L∞ %.5f, L2 %.4f) in %v", norm, e, r.Accuracy, r.MaxLinf, r.MaxL2, time.Since(start).Round(time.Millisecond))
			if e == 0 {
				if r.Accuracy != cleanAcc {
					t.Errorf("%s ε=0: accuracy %v, clean %v", norm, r.Accuracy, cleanAcc)
				}
				for j := range clean {
					if r.Logits[j] != clean[j] {
						t.Fatalf("%s ε=0: logit %d is %v, clean %v (the attack moved the image)", norm, j, r.Logits[j], clean[j])
					}
				}
				if r.MaxLinf != 0 {
					t.Errorf("%s ε=0: perturbation %v", norm, r.MaxLinf)
				}
			}
			if i > 0 && r.Accuracy > prev+tol {
				t.Errorf("%s: accuracy rose from %.3f to %.3f as ε grew to %g", norm, prev, r.Accuracy, e)
			}
			if e > 0 && r.MaxLinf == 0 {
				t.Errorf("%s ε=%g: the attack never moved an image", norm, e)
			}
			prev = r.Accuracy
		}
		if norm == "linf" && prev > 0.05 {
			t.Errorf("linf ε=0.3: accuracy %.3f, want about 0", prev)
		}
	}
	// A stronger attack (more steps, more restarts) must not help the model.
	weak := run(t, m, test, Config{Norm: "linf", Eps: 2.0 / 255, Steps: 2, RandomStart: true, Seed: 2})
	strong := run(t, m, test, Config{Norm: "linf", Eps: 2.0 / 255, Steps: 12, Restarts: 2, RandomStart: true, Seed: 2})
	t.Logf("linf ε=2/255: 2 steps %.3f, 12 steps ×2 restarts %.3f", weak.Accuracy, strong.Accuracy)
	if strong.Accuracy > weak.Accuracy+tol {
		t.Errorf("12 steps with 2 restarts give %.3f, 2 steps %.3f", strong.Accuracy, weak.Accuracy)
	}
	if weak.Accuracy >= cleanAcc {
		t.Errorf("PGD at ε=2/255 did not lower accuracy (%.3f, clean %.3f)", weak.Accuracy, cleanAcc)
	}
}

// TestPGDFreesEverything: an attack leaves no tensor handle behind, whether it succeeds or fails.
func TestPGDFreesEverything(t *testing.T) {
	m := trainedWRN(t)
	_, test := fashion(t)
	small := head(test, 30)
	base := torch.LiveTensors()
	for _, norm := range Norms {
		run(t, m, small, Config{Norm: norm, Eps: 0.1, Steps: 3, Restarts: 2, RandomStart: true, Seed: 1})
		if n := torch.LiveTensors(); n != base {
			t.Errorf("%s: %d live tensors after the attack, %d before", norm, n, base)
		}
	}
	if _, err := CleanLogits(context.Background(), m, small, Options{BatchSize: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := GradNormScores(context.Background(), m, small, 0.03, 1, Options{BatchSize: 7}); err != nil {
		t.Fatal(err)
	}
	// A failing forward pass (labels out of range for the cross-entropy) must clean up too.
	bad := head(small, 5)
	bad.Labels = []int64{0, 1, 2, 3, 99}
	if _, err := Run(context.Background(), m, bad, Config{Norm: "linf", Eps: 0.1, Steps: 2}, Options{}); err == nil {
		t.Error("an out-of-range label did not fail the attack")
	}
	if n := torch.LiveTensors(); n != base {
		t.Errorf("%d live tensors at the end, %d before", n, base)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, m, small, Config{Norm: "l2", Eps: 0.1, Steps: 2}, Options{}); err == nil {
		t.Error("a cancelled context did not stop the attack")
	}
}

// linear is f(x) = W·x + b over flattened inputs: its input gradients have a closed form.
type linear struct{ w, b *torch.Tensor }

func (l linear) Forward(s *torch.Scope, x *torch.Tensor, _ bool) *torch.Tensor {
	return s.Linear(s.Flatten(x, 1, -1), l.w, l.b)
}

func newLinear(t *testing.T, store *torch.Scope, c, d int) (linear, []float64, []float64) {
	w, b := make([]float32, c*d), make([]float32, c)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)*0.37)) * 0.05
	}
	for i := range b {
		b[i] = float32(i%3) * 0.1
	}
	w64, b64 := make([]float64, len(w)), make([]float64, len(b))
	for i, v := range w {
		w64[i] = float64(v)
	}
	for i, v := range b {
		b64[i] = float64(v)
	}
	m := linear{store.FromFloat32(w, int64(c), int64(d)), store.FromFloat32(b, int64(c))}
	if err := store.Err(); err != nil {
		t.Fatal(err)
	}
	return m, w64, b64
}

// softmaxGrad returns p = softmax(W·u + b) for a model input u.
func softmaxOf(w, b []float64, u []float64) []float64 {
	c, d := len(b), len(u)
	z := make([]float64, c)
	mx := math.Inf(-1)
	for k := range c {
		z[k] = b[k]
		for j := range d {
			z[k] += w[k*d+j] * u[j]
		}
		mx = max(mx, z[k])
	}
	var sum float64
	for k := range z {
		z[k] = math.Exp(z[k] - mx)
		sum += z[k]
	}
	for k := range z {
		z[k] /= sum
	}
	return z
}

// TestPGDStepMatchesClosedForm: one PGD step from the clean image on a linear model moves along
// the analytic gradient of the cross-entropy, 2·Wᵀ(p − e_y) in pixel space (the factor 2 is the
// [0, 1] → [-1, 1] scaling inside the attacked function): its sign for L∞, its direction for L2.
func TestPGDStepMatchesClosedForm(t *testing.T) {
	_, test := fashion(t)
	d := head(test, 20)
	store := torch.NewScope()
	defer store.Close()
	const classes, dim = 10, 28 * 28
	m, w, b := newLinear(t, store, classes, dim)
	for _, norm := range Norms {
		eps := map[string]float64{"linf": 0.05, "l2": 1.5}[norm]
		r := run(t, m, d, Config{Norm: norm, Eps: eps, Steps: 1, StepSize: eps})
		// Recompute the adversarial image in Go and compare its logits with the attack's.
		for i := range d.N {
			x := make([]float64, dim)
			u := make([]float64, dim)
			for j, v := range d.Image(i) {
				x[j] = float64(float32(v) / 255)
				u[j] = 2*x[j] - 1
			}
			p := softmaxOf(w, b, u)
			p[d.Labels[i]]--
			g := make([]float64, dim)
			var gn float64
			for j := range dim {
				for k := range classes {
					g[j] += 2 * w[k*dim+j] * p[k]
				}
				gn += g[j] * g[j]
			}
			gn = math.Sqrt(gn)
			adv := make([]float64, dim)
			for j := range dim {
				switch norm {
				case "linf":
					adv[j] = x[j] + eps*sign(g[j])
				case "l2":
					adv[j] = x[j] + eps*g[j]/gn
				}
				adv[j] = min(1, max(0, adv[j]))
				u[j] = 2*adv[j] - 1
			}
			want := logitsOf(w, b, u)
			got := r.Logits[i*classes : (i+1)*classes]
			for k := range classes {
				if math.Abs(float64(got[k])-want[k]) > 2e-4 {
					t.Fatalf("%s image %d: logit %d after one step %v, closed form %v", norm, i, k, got[k], want[k])
				}
			}
		}
	}
}

func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

func logitsOf(w, b []float64, u []float64) []float64 {
	c, d := len(b), len(u)
	z := make([]float64, c)
	for k := range c {
		z[k] = b[k]
		for j := range d {
			z[k] += w[k*d+j] * u[j]
		}
	}
	return z
}

// TestGradNormScoresClosedForm: for a linear model ∇ᵤ logsumexp(W·u + b) = Wᵀ softmax(W·u + b), so
// the score is −‖Wᵀp‖₂ at the (noise-free) model input u.
func TestGradNormScoresClosedForm(t *testing.T) {
	_, test := fashion(t)
	d := head(test, 37)
	store := torch.NewScope()
	defer store.Close()
	const classes, dim = 10, 28 * 28
	m, w, b := newLinear(t, store, classes, dim)
	got, err := GradNormScores(context.Background(), m, d, 0, 1, Options{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != d.N {
		t.Fatalf("%d scores for %d images", len(got), d.N)
	}
	for i := range d.N {
		u := make([]float64, dim)
		for j, v := range d.Image(i) {
			u[j] = float64(float32(v)/127.5 - 1)
		}
		p := softmaxOf(w, b, u)
		var n2 float64
		for j := range dim {
			var g float64
			for k := range classes {
				g += w[k*dim+j] * p[k]
			}
			n2 += g * g
		}
		if want := -math.Sqrt(n2); math.Abs(got[i]-want) > 1e-5*math.Abs(want)+1e-7 {
			t.Errorf("image %d: score %v, closed form %v", i, got[i], want)
		}
	}
	// With noise the scores move, deterministically for a seed.
	a, err := GradNormScores(context.Background(), m, d, 0.1, 5, Options{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := GradNormScores(context.Background(), m, d, 0.1, 5, Options{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	for i := range a {
		moved = moved || a[i] != got[i]
		if math.Abs(a[i]-bb[i]) > 1e-6*math.Abs(a[i]) {
			t.Fatalf("image %d: score %v, then %v with the same seed", i, a[i], bb[i])
		}
	}
	if !moved {
		t.Error("noise σ=0.1 did not change any score")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want bool
	}{
		{Config{Norm: "linf", Eps: 8.0 / 255, Steps: 10}, true},
		{Config{Norm: "l2", Eps: 0.5, Steps: 0}, true},
		{Config{Norm: "l1", Eps: 0.5}, false},
		{Config{Norm: "linf", Eps: -1}, false},
		{Config{Norm: "linf", Eps: math.NaN()}, false},
		{Config{Norm: "linf", Eps: 2}, false},
		{Config{Norm: "l2", Eps: math.Inf(1)}, false},
		{Config{Norm: "l2", Eps: 1, Steps: -1}, false},
		{Config{Norm: "l2", Eps: 1, StepSize: math.NaN()}, false},
		{Config{Norm: "l2", Eps: 1, Noise: -0.1}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.want {
			t.Errorf("%+v: Validate() = %v", tc.c, err)
		}
	}
	if a := (Config{Norm: "linf", Eps: 0.04, Steps: 10}).Alpha(); math.Abs(a-0.01) > 1e-15 {
		t.Errorf("default step size %v, want 2.5·ε/steps = 0.01", a)
	}
	if a := (Config{Norm: "linf", Eps: 0.04, Steps: 10, StepSize: 0.002}).Alpha(); a != 0.002 {
		t.Errorf("explicit step size %v", a)
	}
}
