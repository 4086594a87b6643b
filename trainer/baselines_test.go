package trainer

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/attack"
	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

// baselineFixture is a tiny model, a batch of two random views and an objective built on them.
type baselineFixture struct {
	m     *model.Model
	obj   Objective
	views []*torch.Tensor
	y     *torch.Tensor
	store *torch.Scope
}

func newBaselineFixture(t *testing.T, cfg Config, b int) *baselineFixture {
	t.Helper()
	cfg.Model, cfg.Norm = "wrn-10-1", "none" // no running statistics: two forward passes see one model
	m, err := model.Build(cfg.modelSettings(), 1, 4, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	gen := newGen(t, 11)
	obj, err := NewObjective(Env{Config: cfg, Classes: 4, Shape: [3]int{1, 12, 12}, Model: m, Gen: gen, Dev: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(obj.Close)
	f := &baselineFixture{m: m, obj: obj, store: torch.NewScope()}
	t.Cleanup(f.store.Close)
	r := rand.New(rand.NewPCG(5, 6))
	for range 2 {
		x := make([]float32, b*12*12)
		for i := range x {
			x[i] = float32(r.Float64()*2 - 1)
		}
		f.views = append(f.views, f.store.FromFloat32(x, int64(b), 1, 12, 12))
	}
	y := make([]int64, b)
	for i := range y {
		y[i] = int64(i % 3) // repeated labels: SupCon has positives beyond the other view
	}
	f.y = f.store.FromInt64(y, int64(b))
	return f
}

func newGen(t *testing.T, seed uint64) *torch.Generator {
	t.Helper()
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// lossAndGrads is a loss's value and its gradient for every parameter of the model and head.
func lossAndGrads(t *testing.T, s *torch.Scope, loss *torch.Tensor, params []*torch.Tensor) (float64, [][]float64) {
	t.Helper()
	v, err := loss.Item()
	if err != nil {
		t.Fatal(err)
	}
	gs := s.Gradients([]*torch.Tensor{loss}, params, false)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	out := make([][]float64, len(gs))
	for i, g := range gs {
		if out[i], err = g.Float64s(); err != nil {
			t.Fatal(err)
		}
	}
	return v, out
}

func compareGrads(t *testing.T, what string, got, want [][]float64, tol float64) {
	t.Helper()
	var scale, worst float64
	for i := range want {
		for j := range want[i] {
			scale = math.Max(scale, math.Abs(want[i][j]))
		}
	}
	for i := range want {
		for j := range want[i] {
			worst = math.Max(worst, math.Abs(got[i][j]-want[i][j]))
		}
	}
	if scale == 0 || worst > tol*scale {
		t.Errorf("%s: gradients differ by %.3g of their scale %.3g (tolerance %g)", what, worst/scale, scale, tol)
	}
}

// TestBaselineLossesMatchNN: each baseline objective's loss and its gradients (model and
// projection head) equal those of the tested nn losses applied by hand to the same model, head
// and views. Tolerance 1e-5 relative (float32, the same ops in another order at most).
func TestBaselineLossesMatchNN(t *testing.T) {
	const b = 6
	for _, name := range []string{"supcon", "simclr", "jointloss"} {
		t.Run(name, func(t *testing.T) {
			cfg := Defaults()
			cfg.Objective = name
			cfg.LabelSmoothing = 0.1
			cfg.JointWeight = 0.7
			f := newBaselineFixture(t, cfg, b)
			params := f.m.Parameters()
			if name != "jointloss" { // the classifier head takes no part in stage-1 losses
				params = params[:len(params)-len(f.m.HeadParameters())]
			}
			params = append(params, f.obj.Parameters()...)

			s := torch.NewScope()
			defer s.Close()
			st := &Step{S: s, Views: f.views, Y: f.y, Model: f.m}
			loss, terms := f.obj.Loss(st)
			if st.err != nil {
				t.Fatal(st.err)
			}
			if len(terms) == 0 {
				t.Fatal("no terms")
			}
			got, gotG := lossAndGrads(t, s, loss, params)

			// By hand: encoder over both views at once, the head as SupContrast's MLP, then nn's loss.
			r := torch.NewScope()
			defer r.Close()
			h := f.obj.(interface {
				State(*torch.Scope) map[string]*torch.Tensor
			}).State(r)
			feat := f.m.Features(r, r.Cat(f.views, 0), true)
			z := r.Linear(r.ReLU(r.Linear(feat, h["head.0.weight"], h["head.0.bias"])), h["head.2.weight"], h["head.2.bias"])
			z = r.Normalize(z, 2, 1, 1e-12)
			pair := r.Stack([]*torch.Tensor{r.Narrow(z, 0, 0, b), r.Narrow(z, 0, b, b)}, 1)
			var want *torch.Tensor
			var err error
			switch name {
			case "supcon":
				want, err = nn.SupConLoss(r, pair, f.y, nn.DefaultSupCon())
			case "simclr":
				want, err = nn.NTXentLoss(r, pair, 0.5)
			case "jointloss":
				var nt *torch.Tensor
				nt, err = nn.NTXentLoss(r, pair, 0.5)
				ce := r.CrossEntropy(f.m.Head(r, r.Narrow(feat, 0, 0, b)), f.y, 0.1, torch.Mean)
				want = r.Add(ce, r.MulScalar(nt, 0.7))
			}
			if err != nil {
				t.Fatal(err)
			}
			wantV, wantG := lossAndGrads(t, r, want, params)
			if math.Abs(got-wantV) > 1e-5*math.Abs(wantV) {
				t.Errorf("loss %v, nn gives %v", got, wantV)
			}
			compareGrads(t, name, gotG, wantG, 1e-5)
		})
	}
}

// TestAdvLossIsCEOnPGD: the adv objective's loss is cross-entropy (train mode) on attack.PGD's
// examples from the same random start; with --adv-bn train the running statistics after the step
// are those one train-mode forward pass leaves, not eight.
func TestAdvLossIsCEOnPGD(t *testing.T) {
	cfg := Defaults()
	cfg.Objective = "adv"
	f := newBaselineFixture(t, cfg, 6)
	s := torch.NewScope()
	defer s.Close()
	st := &Step{S: s, Views: f.views[:1], Y: f.y, Model: f.m, Gen: newGen(t, 3)}
	loss, _ := f.obj.Loss(st)
	if st.err != nil {
		t.Fatal(st.err)
	}
	got, gotG := lossAndGrads(t, s, loss, f.m.Parameters())

	r := torch.NewScope()
	defer r.Close()
	x0 := r.Clamp(r.AddScalar(r.MulScalar(f.views[0], 0.5), 0.5), 0, 1)
	adv, err := attack.PGD(r, f.m, x0, f.y, advConfig(cfg), newGen(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	want := r.CrossEntropy(f.m.Forward(r, r.SubScalar(r.MulScalar(adv, 2), 1), true), f.y, 0, torch.Mean)
	wantV, wantG := lossAndGrads(t, r, want, f.m.Parameters())
	if math.Abs(got-wantV) > 1e-5*math.Abs(wantV) {
		t.Errorf("adv loss %v, CE on PGD examples %v", got, wantV)
	}
	compareGrads(t, "adv", gotG, wantG, 1e-5)
	clean := r.CrossEntropy(f.m.Forward(r, f.views[0], false), f.y, 0, torch.Mean)
	if cv, _ := clean.Item(); !(got > cv) {
		t.Errorf("adversarial loss %v is not above the clean loss %v", got, cv)
	}

	t.Run("bn-train", func(t *testing.T) {
		bn := Defaults()
		bn.Objective, bn.AdvBN, bn.Model, bn.Norm = "adv", "train", "wrn-10-1", "batch"
		runStats := func(attackFirst bool) []float64 {
			m, err := model.Build(bn.modelSettings(), 1, 4, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s := torch.NewScope()
			defer s.Close()
			if attackFirst {
				obj, err := NewObjective(Env{Config: bn, Classes: 4, Model: m, Gen: newGen(t, 3)})
				if err != nil {
					t.Fatal(err)
				}
				defer obj.Close()
				st := &Step{S: s, Views: f.views[:1], Y: f.y, Model: m, Gen: newGen(t, 3)}
				if _, _ = obj.Loss(st); st.err != nil {
					t.Fatal(st.err)
				}
			} else {
				m.Forward(s, f.views[0], true)
			}
			var out []float64
			for _, p := range m.StateDict() {
				if strings.HasSuffix(p.Name, "num_batches_tracked") {
					v, _ := p.T.Float64s()
					out = append(out, v...)
				}
			}
			return out
		}
		adv, one := runStats(true), runStats(false)
		for i := range one {
			if adv[i] != one[i] || one[i] != 1 {
				t.Fatalf("num_batches_tracked after an adv step %v, after one forward pass %v: want 1 each", adv, one)
			}
		}
	})
}

// TestContrastiveBatchTooSmall: a batch of one image has no negative. The settings refuse
// --batch-size 1 naming the flag; a step that still gets one image (the end of a shard) fails for
// NT-Xent naming --batch-size, while SupCon's loss is 0 there (up to rounding) (the other view is the
// anchor's only contrast and its positive), so it learns nothing from it but does not fail.
func TestContrastiveBatchTooSmall(t *testing.T) {
	for _, name := range []string{"supcon", "simclr", "jointloss"} {
		c := Defaults()
		c.Objective, c.BatchSize = name, 1
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--batch-size") {
			t.Errorf("%s with --batch-size 1: %v, want an error naming --batch-size", name, err)
		}
	}
	for _, name := range []string{"simclr", "supcon"} {
		cfg := Defaults()
		cfg.Objective = name
		f := newBaselineFixture(t, cfg, 1)
		s := torch.NewScope()
		st := &Step{S: s, Views: f.views, Y: f.y, Model: f.m}
		loss, _ := f.obj.Loss(st)
		switch name {
		case "simclr":
			if st.err == nil || !strings.Contains(st.err.Error(), "--batch-size 1") {
				t.Errorf("simclr on one image: %v, want an error naming --batch-size", st.err)
			}
		case "supcon":
			if st.err != nil {
				t.Fatal(st.err)
			}
			if v, _ := loss.Item(); math.Abs(v) > 1e-6 {
				t.Errorf("supcon on one image: loss %v, want 0 (up to rounding)", v)
			}
		}
		s.Close()
	}
}

// TestLinearProbeAndInit: stage 1 (supcon) then stage 2 (--init, --freeze-features, ce): the
// probe's checkpoint holds every encoder tensor bit for bit as stage 1 left it, buffers included,
// while the head has changed; config.json records --init. --init of another architecture or class
// count fails naming the tensor and the file.
func TestLinearProbeAndInit(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 160, 20)
	base := Defaults()
	base.Dataset, base.Model, base.ValSize, base.BatchSize, base.Threads, base.Workers = ds, "wrn-10-1", 32, 16, 1, 1
	base.Steps, base.LogEvery, base.Warmup, base.TensorBoard = 4, 0, 0, false
	stage1 := base
	stage1.Objective = "supcon"
	stage1.Out = filepath.Join(t.TempDir(), "stage1")
	s1, err := Train(context.Background(), stage1, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}
	probe := base
	probe.Objective, probe.Init, probe.FreezeFeatures = "ce", stage1.Out, true
	probe.LR = 0.05
	probe.Out = filepath.Join(t.TempDir(), "probe")
	s2, err := Train(context.Background(), probe, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}
	before, after := weights(t, s1.Checkpoint), weights(t, s2.Checkpoint)
	for k, w := range before {
		if strings.HasPrefix(k, "objective.") || strings.HasPrefix(k, "optim.") {
			continue
		}
		head := strings.HasPrefix(k, "linear.")
		same := len(w) == len(after[k])
		for i := range w {
			same = same && w[i] == after[k][i]
		}
		switch {
		case head && same:
			t.Errorf("head %s did not change in the probe", k)
		case !head && !same:
			t.Errorf("encoder tensor %s changed in the linear probe", k)
		}
	}
	rec, err := ReadConfig(probe.Out)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Init != stage1.Out || !rec.FreezeFeatures {
		t.Errorf("config.json records init %q freeze %v, want %q true", rec.Init, rec.FreezeFeatures, stage1.Out)
	}

	for _, bad := range []struct {
		mut    func(*Config)
		tensor string
	}{
		{func(c *Config) { c.Model = "wrn-10-2" }, "layer1.0.conv1.weight"},
		{func(c *Config) { c.Model = "resnet-18" }, "conv1.weight"},
	} {
		c := probe
		c.Out = filepath.Join(t.TempDir(), "bad")
		bad.mut(&c)
		_, err := Train(context.Background(), c, Options{SkipTest: true})
		if err == nil || !strings.Contains(err.Error(), bad.tensor) || !strings.Contains(err.Error(), "--init "+s1.Checkpoint) {
			t.Errorf("--init into %s: %v, want an error naming %s and %s", c.Model, err, bad.tensor, s1.Checkpoint)
		}
	}
	// Another class count: the same stage-1 weights into a 4-class model.
	m, err := model.Build(probe.modelSettings(), 1, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := loadInit(m, stage1.Out); err == nil || !strings.Contains(err.Error(), "linear.weight") || !strings.Contains(err.Error(), s1.Checkpoint) {
		t.Errorf("--init into 4 classes: %v, want an error naming linear.weight and the file", err)
	}
	nf := base
	nf.FreezeFeatures = true
	if err := nf.Validate(); err == nil || !strings.Contains(err.Error(), "--freeze-features") || !strings.Contains(err.Error(), "--init") {
		t.Errorf("--freeze-features without --init: %v", err)
	}
}

// TestAdversarialTrainingIsMoreRobust: the same small model trained for the same steps on the
// same Fashion-MNIST images, with CE and with PGD adversarial training, then attacked by a
// stronger PGD (L∞ 0.1, 5 steps against the training attack's 3, with a random start) on held-out images: the adversarially trained one keeps more of
// its accuracy.
func TestAdversarialTrainingIsMoreRobust(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two models")
	}
	ds := testutil.SmallFashion(t, t.TempDir(), 1000, 100)
	base := Defaults()
	base.Dataset, base.Model, base.Norm, base.ValSize, base.BatchSize = ds, "wrn-10-1", "batch", 0, 32
	base.Threads, base.Workers, base.Steps, base.LogEvery, base.Warmup, base.TensorBoard = 2, 1, 60, 0, 10, false
	base.LR, base.Noise, base.CkptEvery = 3e-3, 0, 0
	base.AdvEps, base.AdvSteps, base.AdvStepSize = 0.1, 3, 0.05
	robust := map[string]float64{}
	clean := map[string]float64{}
	test, err := data.DefaultSource("").Load(ds, data.Split("test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"ce", "adv"} {
		c := base
		c.Objective = obj
		c.Out = filepath.Join(t.TempDir(), obj)
		sum, err := Train(context.Background(), c, Options{SkipTest: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.Load(sum.Checkpoint, "cpu")
		if err != nil {
			t.Fatal(err)
		}
		res, err := attack.Run(context.Background(), m, test, attack.Config{Norm: "linf", Eps: 0.1, Steps: 5, StepSize: 0.04, RandomStart: true, Seed: 1}, attack.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := attack.Run(context.Background(), m, test, attack.Config{Norm: "linf", Eps: 0}, attack.Options{})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		robust[obj], clean[obj] = res.Accuracy, cl.Accuracy
	}
	t.Logf("clean accuracy ce %.3f adv %.3f; PGD L∞ 0.1 accuracy ce %.3f adv %.3f", clean["ce"], clean["adv"], robust["ce"], robust["adv"])
	if !(robust["adv"] > robust["ce"]+0.1) {
		t.Errorf("PGD accuracy: adversarial training %.3f, CE %.3f: want adv ahead by more than 0.1", robust["adv"], robust["ce"])
	}
	if clean["adv"] < 0.25 { // chance is 0.1; 60 adversarial steps reach about 0.4
		t.Errorf("adversarially trained clean accuracy %.3f: it did not learn", clean["adv"])
	}
}
