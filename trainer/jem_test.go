package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/sampler"
	"github.com/hdge-torch/hdge-torch/torch"
)

// jemEnv is a tiny model and a jem-family configuration over 1×8×8 inputs of 10 classes.
func jemEnv(t *testing.T, objective string) (Config, *model.Model, *torch.Generator) {
	t.Helper()
	c := Defaults()
	c.Objective = objective
	c.Model = "wrn-10-1"
	c.Norm = "none"
	c.BufferSize = 40
	c.SGLDSteps = 3
	c.SGLDCond = true
	c.QueueSize = 50
	m, err := model.Build(c.modelSettings(), 1, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	g, err := torch.NewGenerator(9, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return c, m, g
}

func scalar(t *testing.T, x *torch.Tensor) float64 {
	t.Helper()
	v, err := x.Item()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func termsOf(t *testing.T, terms []Term) map[string]float64 {
	out := map[string]float64{}
	for _, tm := range terms {
		out[tm.Name] = scalar(t, tm.Value)
	}
	return out
}

// batch is 6 random images in [-1, 1] with labels.
func batch(t *testing.T, s *torch.Scope, g *torch.Generator) (x, y *torch.Tensor) {
	x = s.AddScalar(s.MulScalar(s.Rand(g, []int64{6, 1, 8, 8}, torch.Float32, torch.CPU), 2), -1)
	y = s.FromInt64([]int64{0, 3, 3, 7, 9, 1})
	return x, y
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-5*math.Max(1, math.Abs(b)) }

// TestJEMLossIsTheDirectComputation: jem's loss is pyx·CE + px·(-(mean lse f(x) - mean lse
// f(x_q))) + pxy·(-(mean f(x)[y] - mean f(x_q')[y])) + the L2 penalty, with x_q the buffer's
// SGLD samples drawn from the run's generator, written back into the buffer.
func TestJEMLossIsTheDirectComputation(t *testing.T) {
	c, m, g := jemEnv(t, "jem")
	c.PYXWeight, c.PXWeight, c.PXYWeight, c.EnergyL2 = 0.7, 0.4, 0.3, 0.1
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	obj, err := NewObjective(Env{Config: c, Classes: 10, Shape: [3]int{1, 8, 8}, Model: m, Gen: g, Dev: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	s := torch.NewScope()
	defer s.Close()
	x, y := batch(t, s, g)
	// The same buffer and generator, copied, replay the objective's draws.
	before, err := obj.State(s)[sampler.TensorSamples].Float64s()
	if err != nil {
		t.Fatal(err)
	}
	gState, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	loss, terms := obj.Loss(&Step{S: s, Views: []*torch.Tensor{x}, Y: y, Model: m, Gen: g})
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	got := termsOf(t, terms)

	store := torch.NewScope()
	defer store.Close()
	g2, _ := torch.NewGenerator(1, torch.CPU)
	defer g2.Close()
	if err := g2.SetState(gState); err != nil {
		t.Fatal(err)
	}
	buf, err := c.samplerSettings().NewBuffer(store, g2, []int64{1, 8, 8}, 10, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := buf.LoadTensors(map[string]*torch.Tensor{sampler.TensorSamples: store.ToDType(store.FromFloat64(before, 40, 1, 8, 8), torch.Float32)}); err != nil {
		t.Fatal(err)
	}
	if err := g2.SetState(gState); err != nil {
		t.Fatal(err)
	}
	e := sampler.JEMEnergy(m.Forward)
	xq, _, err := buf.Sample(s, g2, e, 6, nil, c.ReinitFreq, c.samplerSettings().SGLD)
	if err != nil {
		t.Fatal(err)
	}
	xqy, _, err := buf.Sample(s, g2, e, 6, y, c.ReinitFreq, c.samplerSettings().SGLD)
	if err != nil {
		t.Fatal(err)
	}
	fx := m.Forward(s, x, true)
	ce := scalar(t, s.CrossEntropy(fx, y, 0, torch.Mean))
	mean := func(v []float64) float64 {
		sum := 0.0
		for _, u := range v {
			sum += u
		}
		return sum / float64(len(v))
	}
	vals := func(x *torch.Tensor) []float64 {
		v, err := x.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	lse := func(logits []float64) []float64 {
		out := make([]float64, 6)
		for i := range out {
			row := logits[10*i : 10*i+10]
			mx := math.Inf(-1)
			for _, u := range row {
				mx = math.Max(mx, u)
			}
			sum := 0.0
			for _, u := range row {
				sum += math.Exp(u - mx)
			}
			out[i] = mx + math.Log(sum)
		}
		return out
	}
	pick := func(logits []float64) []float64 {
		labels, _ := y.Int64s()
		out := make([]float64, 6)
		for i, l := range labels {
			out[i] = logits[10*i+int(l)]
		}
		return out
	}
	sq := func(v []float64) []float64 {
		out := make([]float64, len(v))
		for i, u := range v {
			out[i] = u * u
		}
		return out
	}
	lx, lq, lqy := vals(fx), vals(m.Forward(s, xq, true)), vals(m.Forward(s, xqy, true))
	ed, eq := lse(lx), lse(lq)
	px := -(mean(ed) - mean(eq)) + 0.1*(mean(sq(ed))+mean(sq(eq)))
	edy, eqy := pick(lx), pick(lqy)
	pxy := -(mean(edy) - mean(eqy)) + 0.1*(mean(sq(edy))+mean(sq(eqy)))
	for name, want := range map[string]float64{"ce": ce, "px": px, "pxy": pxy, "energy_data": mean(ed), "energy_sample": mean(eq), "energy_sample_y": mean(eqy)} {
		if !near(got[name], want) {
			t.Errorf("term %s = %.7g, direct computation %.7g", name, got[name], want)
		}
	}
	if want := 0.7*ce + 0.4*px + 0.3*pxy; !near(scalar(t, loss), want) {
		t.Errorf("loss %.7g, want 0.7·ce + 0.4·px + 0.3·pxy = %.7g", scalar(t, loss), want)
	}
	after, _ := obj.State(s)[sampler.TensorSamples].Float64s()
	replayed, _ := buf.Samples().Float64s()
	changed := 0
	for i := range after {
		if after[i] != before[i] {
			changed++
		}
		if after[i] != replayed[i] {
			t.Fatalf("buffer element %d: %v, the replay wrote %v", i, after[i], replayed[i])
		}
	}
	if changed == 0 {
		t.Fatal("the samples were not written back to the buffer")
	}
}

// TestHDGEJEMWeighsEachTermByItsOwnFlag: hdge-jem's loss is pyx·CE + pxy-contrast·(hdge's
// -log q(x|y) on the same queue) + px·(JEM's p(x) term), each weight on its own term (the
// released code weighs two terms by the wrong flag).
func TestHDGEJEMWeighsEachTermByItsOwnFlag(t *testing.T) {
	c, m, g := jemEnv(t, "hdge-jem")
	c.SGLDCond = false
	c.PYXWeight, c.PXYContrastWeight, c.PXWeight = 0.6, 0.25, 0.15
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	gState, _ := g.State()
	obj, err := NewObjective(Env{Config: c, Classes: 10, Shape: [3]int{1, 8, 8}, Model: m, Gen: g, Dev: torch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	// An hdge objective from the same generator state holds the same queue.
	g2, _ := torch.NewGenerator(1, torch.CPU)
	defer g2.Close()
	_ = g2.SetState(gState)
	h, err := newHDGE(hdgeConfigOf(c, 10), g2, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := torch.NewScope()
	defer s.Close()
	x, y := batch(t, s, g)
	st := &Step{S: s, Views: []*torch.Tensor{x}, Y: y, Model: m, Gen: g}
	loss, terms := obj.Loss(st)
	got := termsOf(t, terms)
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	if want := scalar(t, h.genLoss(s, st.Logits(), y)); !near(got["gen"], want) {
		t.Errorf("contrastive term %.7g, hdge's %.7g", got["gen"], want)
	}
	if want := scalar(t, s.CrossEntropy(st.Logits(), y, 0, torch.Mean)); !near(got["ce"], want) {
		t.Errorf("ce %.7g, want %.7g", got["ce"], want)
	}
	if want := -(got["energy_data"] - got["energy_sample"]); !near(got["px"], want) {
		t.Errorf("px %.7g, want -(E_data - E_sample) = %.7g", got["px"], want)
	}
	if want := 0.6*got["ce"] + 0.25*got["gen"] + 0.15*got["px"]; !near(scalar(t, loss), want) {
		t.Errorf("loss %.7g, want 0.6·ce + 0.25·gen + 0.15·px = %.7g", scalar(t, loss), want)
	}
	// AfterStep feeds HDGE's queue; State holds the queue and the buffer, and loads back.
	if err := obj.AfterStep(st); err != nil {
		t.Fatal(err)
	}
	state := obj.State(s)
	for _, k := range []string{"queue", "queue_ptr", sampler.TensorSamples} {
		if _, ok := state[k]; !ok {
			t.Errorf("state has no %s", k)
		}
	}
	if p, _ := state["queue_ptr"].Item(); p != 6 {
		t.Errorf("queue_ptr %v after one batch of 6", p)
	}
	if err := obj.LoadState(state); err != nil {
		t.Fatal(err)
	}
}

func TestJEMRefusesWhatSGLDCannotTrain(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Objective, c.Norm = "jem", "batch" }, "--norm"},
		{func(c *Config) { c.Objective, c.Norm = "hdge-jem", "batch" }, "batch norm does not work with SGLD"},
		{func(c *Config) { c.Objective, c.Norm, c.PXYWeight = "jem", "none", 1 }, "--sgld-cond"},
		{func(c *Config) { c.Objective, c.Norm, c.SGLDSteps = "jem", "none", 0 }, "--sgld-steps"},
		{func(c *Config) { c.Objective, c.Norm, c.SGLDLR = "jem", "none", -1 }, "--sgld-lr"},
		{func(c *Config) { c.Objective, c.Norm, c.BufferSize = "jem", "none", 0 }, "--buffer-size"},
		{func(c *Config) { c.Objective, c.Norm, c.ReinitFreq = "jem", "none", 1.5 }, "--reinit-freq"},
		{func(c *Config) { c.Objective, c.Norm, c.PXWeight = "jem", "none", -1 }, "--px-weight"},
		{func(c *Config) { c.OnDivergence = "retry" }, "--on-divergence"},
		{func(c *Config) { c.RestartLRScale = 0 }, "--restart-lr-scale"},
	} {
		c := Defaults()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error containing %q, got %v", tc.want, err)
		}
	}
	c, m, g := jemEnv(t, "jem")
	c.BufferSize = 45 // not a multiple of 10 classes with --sgld-cond
	if _, err := NewObjective(Env{Config: c, Classes: 10, Shape: [3]int{1, 8, 8}, Model: m, Gen: g, Dev: torch.CPU}); err == nil || !strings.Contains(err.Error(), "--buffer-size") {
		t.Errorf("a buffer of 45 for 10 classes: %v", err)
	}
}

func jemRunConfig(t *testing.T, ds string) Config {
	c := tinyConfig(t, ds)
	c.Objective = "jem"
	c.Dropout = 0
	c.BufferSize = 50
	c.SGLDSteps = 2
	c.SGLDCond = true
	c.PXYWeight = 0.5
	return c
}

func readBuffer(t *testing.T, ckpt string) []float64 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	ck, err := model.ReadCheckpoint(s, ckpt)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := ck.Objective[sampler.TensorSamples]
	if !ok {
		t.Fatalf("%s has no replay buffer", ckpt)
	}
	v, err := b.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestJEMResumeContinuesTheChains: a jem run interrupted and resumed ends with the replay buffer
// (and weights) of the uninterrupted run: the buffer and the generator are checkpoint state.
func TestJEMResumeContinuesTheChains(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	full := jemRunConfig(t, ds)
	full.Steps = 8
	sumA, err := Train(context.Background(), full, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}
	part := full
	part.Out = filepath.Join(t.TempDir(), "run")
	part.Steps = 5
	if _, err := Train(context.Background(), part, Options{SkipTest: true}); err != nil {
		t.Fatal(err)
	}
	mid := readBuffer(t, filepath.Join(model.CheckpointDir(part.Out), model.StepCheckpointName(5)))
	part.Steps = 8
	sumB, err := Train(context.Background(), part, Options{SkipTest: true, Resume: part.Out})
	if err != nil {
		t.Fatal(err)
	}
	a, b := readBuffer(t, sumA.Checkpoint), readBuffer(t, sumB.Checkpoint)
	moved := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("buffer element %d: resumed %v, uninterrupted %v", i, b[i], a[i])
		}
		if a[i] != mid[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the buffer did not change after step 5: the test shows nothing")
	}
	wa, wb := weights(t, sumA.Checkpoint), weights(t, sumB.Checkpoint)
	for k, va := range wa {
		for i := range va {
			if math.Abs(va[i]-wb[k][i]) > 1e-4*math.Max(1, math.Abs(va[i])) {
				t.Fatalf("%s[%d]: resumed %v, uninterrupted %v", k, i, wb[k][i], va[i])
			}
		}
	}
}

func metricEvents(t *testing.T, run string) map[string][]map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]map[string]any{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if ev, ok := m["event"].(string); ok {
			out[ev] = append(out[ev], m)
		}
	}
	return out
}

// TestDivergenceRestartIsLoggedAndBounded: energies above --divergence-energy count as
// divergence; with --on-divergence restart the run rolls back to its last checkpoint, re-seeds
// the sampler and scales the lr, each restart recorded in metrics.jsonl, and gives up after
// --max-restarts; with stop it stops at once as before.
func TestDivergenceRestartIsLoggedAndBounded(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	c := jemRunConfig(t, ds)
	c.PXYWeight = 0
	c.Steps = 20
	c.CkptEvery = 2
	c.DivergenceEnergy = 1e-9 // every energy is above it: a forced divergence at once
	c.OnDivergence = "restart"
	c.MaxRestarts = 2
	c.RestartLRScale = 0.5
	_, err := Train(context.Background(), c, Options{SkipTest: true})
	if err == nil || !strings.Contains(err.Error(), "--max-restarts 2") || !strings.Contains(err.Error(), "--divergence-energy") {
		t.Fatalf("want the run to give up naming --max-restarts 2 and the reason, got %v", err)
	}
	ev := metricEvents(t, c.Out)
	if len(ev["restart"]) != 2 || len(ev["divergence"]) != 3 {
		t.Fatalf("%d restarts and %d divergences recorded, want 2 and 3", len(ev["restart"]), len(ev["divergence"]))
	}
	seeds := map[float64]bool{}
	for i, r := range ev["restart"] {
		if r["restart"] != float64(i+1) || r["step"] != float64(0) || r["lr_scale"] != math.Pow(0.5, float64(i+1)) {
			t.Errorf("restart record %d: %v", i, r)
		}
		seeds[r["objective_seed"].(float64)] = true
	}
	if len(seeds) != 2 {
		t.Errorf("the restarts did not re-seed the sampler differently: %v", ev["restart"])
	}

	// A divergence after a few good steps rolls back to the newest checkpoint.
	c.Out = filepath.Join(t.TempDir(), "run")
	c.DivergenceEnergy = 0
	c.OnDivergence = "stop"
	c.LR = 1e12
	c.Optimizer = "sgd"
	c.Warmup = 0
	_, err = Train(context.Background(), c, Options{SkipTest: true})
	if err == nil || !strings.Contains(err.Error(), "not finite") || !strings.Contains(err.Error(), "Last good checkpoint") {
		t.Fatalf("stop: want the non-finite stop, got %v", err)
	}
	if ev := metricEvents(t, c.Out); len(ev["restart"]) != 0 || len(ev["divergence"]) != 1 {
		t.Fatalf("stop recorded %d restarts, %d divergences", len(ev["restart"]), len(ev["divergence"]))
	}
}

// TestDivergenceCE: with --divergence-ce a cross-entropy term above it counts as divergence (the
// way HDGE+JEM fails when its logits blow up under the energy threshold); off by default.
func TestDivergenceCE(t *testing.T) {
	var c Config
	vals := map[string]float64{"loss": 90, "loss_ce": 100, "loss_energy_data": 9000}
	c.DivergenceEnergy = 1e4
	if why := c.divergence(vals); why != "" {
		t.Errorf("--divergence-ce off: %q, want no divergence", why)
	}
	c.DivergenceCE = 11.5
	if why := c.divergence(vals); !strings.Contains(why, "loss_ce = 100 is above --divergence-ce 11.5") {
		t.Errorf("--divergence-ce 11.5, loss_ce 100: %q", why)
	}
	vals["loss_ce"] = 2.3
	if why := c.divergence(vals); why != "" {
		t.Errorf("loss_ce 2.3 under --divergence-ce 11.5: %q", why)
	}

	// A real run: any CE counts above 1e-6, so the first logged step stops the run, naming it.
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	cfg := tinyConfig(t, ds)
	cfg.Objective, cfg.Steps, cfg.DivergenceCE = "ce", 4, 1e-6
	_, err := Train(context.Background(), cfg, Options{SkipTest: true})
	if err == nil || !strings.Contains(err.Error(), "--divergence-ce") {
		t.Fatalf("want the CE run to stop naming --divergence-ce, got %v", err)
	}
	if ev := metricEvents(t, cfg.Out); len(ev["divergence"]) != 1 {
		t.Errorf("%d divergences recorded in metrics.jsonl, want 1", len(ev["divergence"]))
	}
}

// TestResumeKeepsRestarts: a run that used up its restarts in one sitting does not get a fresh
// --max-restarts (and the configured lr) in the next: resuming reads its restart events back.
func TestResumeKeepsRestarts(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	c := jemRunConfig(t, ds)
	c.PXYWeight = 0
	c.Steps = 20
	c.CkptEvery = 2
	c.DivergenceEnergy = 1e-9 // every step diverges
	c.OnDivergence = "restart"
	c.MaxRestarts = 2
	c.RestartLRScale = 0.5
	if _, err := Train(context.Background(), c, Options{SkipTest: true}); err == nil {
		t.Fatal("the first sitting succeeded although every step diverges")
	}
	if n := len(metricEvents(t, c.Out)["restart"]); n != 2 {
		t.Fatalf("first sitting: %d restarts, want 2", n)
	}
	d, err := resumedDivergence(c.Out, 0)
	if err != nil || d.restarts != 2 || d.scale() != 0.25 {
		t.Fatalf("resumed state %+v (%v), want 2 restarts at lr scale 0.25", d, err)
	}
	_, err = Train(context.Background(), c, Options{SkipTest: true, Resume: c.Out})
	if err == nil || !strings.Contains(err.Error(), "after 2 restarts (--max-restarts 2)") {
		t.Fatalf("second sitting: want it to give up at once, after the first sitting's 2 restarts; got %v", err)
	}
	if n := len(metricEvents(t, c.Out)["restart"]); n != 2 {
		t.Errorf("after the second sitting: %d restarts recorded, want still 2", n)
	}
}
