package experiment

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/suite"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
)

// paperRuns are the runs experiments/paper-cifar10-gpu.json promises, with their objectives.
var paperRuns = map[string]string{
	"ce": "ce", "hdge": "hdge", "hdge-eq13": "hdge", "hdge-alpha0": "hdge", "hdge-inbatch": "hdge-inbatch",
	"hdge-k64": "hdge", "hdge-k128": "hdge", "hdge-k256": "hdge",
	"jem": "jem", "hdge-jem": "hdge-jem", "jem-n128": "jem",
	"supcon": "supcon", "supcon-linear": "ce", "simclr": "simclr", "simclr-linear": "ce", "jointloss": "jointloss",
	"adv-linf": "adv", "adv-l2": "adv",
	"hdge-resnet50": "hdge", "simclr-resnet50": "simclr", "jointloss-resnet50": "jointloss",
}

// scriptList reads NAME="..." from scripts/paper-gpu.sh: the lists of runs it samples and trains
// with a third seed, which must be the spec's.
func scriptList(t *testing.T, script, name string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `="([^"]*)"$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("scripts/paper-gpu.sh has no %s=\"...\" line", name)
	}
	return strings.FieldsFunc(m[1], func(r rune) bool { return r == ' ' || r == ',' })
}

// TestPaperGPUSpec: the GPU protocol spec, read by the runner's own parser and validator, expands
// to the runs × seeds that scripts/paper-gpu.sh trains, every unit's settings pass the check
// `experiment run` makes before training (trainer.Config.Validate), each run has the paper's
// set-up, and the Table 6 values of K and N are there.
func TestPaperGPUSpec(t *testing.T) {
	root := testutil.RepoRoot()
	s, err := Load(filepath.Join(root, "experiments", "paper-cifar10-gpu.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "scripts", "paper-gpu.sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	if !strings.Contains(script, "SPEC=experiments/paper-cifar10-gpu.json\n") || !strings.Contains(script, "OUT="+s.Out+"\n") {
		t.Errorf("scripts/paper-gpu.sh does not name the spec and its out folder %s", s.Out)
	}
	names := s.RunNames()
	for r := range paperRuns {
		if !slices.Contains(names, r) {
			t.Errorf("the spec has no run %s", r)
		}
	}
	if len(names) != len(paperRuns) {
		t.Errorf("runs %v, want the %d of the protocol", names, len(paperRuns))
	}
	if s.Baseline != "ce" {
		t.Errorf("baseline %q, want ce", s.Baseline)
	}

	// The script's sittings: seeds 1 and 2 of every run, then seed 3 of THIRD_SEED_RUNS.
	first, err := s.Units(nil, []uint64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	third := scriptList(t, script, "THIRD_SEED_RUNS")
	extra, err := s.Units(third, []uint64{3})
	if err != nil {
		t.Fatalf("THIRD_SEED_RUNS: %v", err)
	}
	seeds := map[string]int{}
	for _, u := range append(first, extra...) {
		seeds[u.Run]++
	}
	for r := range paperRuns {
		want := 2
		if r == "ce" || r == "hdge" {
			want = 3
		}
		if seeds[r] < want {
			t.Errorf("%s: the script trains %d seeds, want at least %d", r, seeds[r], want)
		}
	}
	if len(first) != 2*len(paperRuns) || len(extra) != len(third) {
		t.Errorf("%d + %d units, want %d + %d", len(first), len(extra), 2*len(paperRuns), len(third))
	}

	all, err := s.Units(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	queues := map[int]bool{}
	jemBatches := map[int]bool{}
	for _, u := range all {
		c := u.cfg
		where := fmt.Sprintf("%s seed %d", u.Run, u.Seed)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		if c.Objective != paperRuns[u.Run] {
			t.Errorf("%s: objective %s, want %s", where, c.Objective, paperRuns[u.Run])
		}
		model, norm := "wrn-28-10", "none"
		if strings.HasSuffix(u.Run, "-resnet50") {
			model, norm = "resnet-50", "batch" // JointLoss's network, with its batch norm
		}
		if c.Dataset != "cifar10" || c.ValSize != 5000 || c.Model != model || c.Norm != norm || c.Dropout != 0 ||
			c.Noise != 0.03 || c.Crop != 4 || c.Flip != "on" || c.Device != "cuda" || c.Precision != "fp32" || c.Steps != 0 {
			t.Errorf("%s: not the paper's set-up: dataset %s val %d model %s norm %s dropout %g noise %g crop %d flip %s device %s precision %s steps %d",
				where, c.Dataset, c.ValSize, c.Model, c.Norm, c.Dropout, c.Noise, c.Crop, c.Flip, c.Device, c.Precision, c.Steps)
		}
		linear := strings.HasSuffix(u.Run, "-linear")
		stage1 := u.Run == "supcon" || u.Run == "simclr" || u.Run == "simclr-resnet50"
		if !linear && !stage1 && (c.Optimizer != "adam" || c.LR != 1e-4 || c.WeightDecay != 0 || c.Warmup != 1000 || c.Schedule != "step" ||
			!slices.Equal(c.DecayEpochs, []int{160, 180}) || c.DecayRate != 0.3 || c.Epochs != 200) {
			t.Errorf("%s: not JEM's optimiser: %s lr %g wd %g warm-up %d %s %v ×%g, %d epochs", where, c.Optimizer, c.LR, c.WeightDecay, c.Warmup,
				c.Schedule, c.DecayEpochs, c.DecayRate, c.Epochs)
		}
		if stage1 && (c.Epochs != 200 || c.Optimizer != "sgd") {
			t.Errorf("%s: stage 1 is %d epochs of %s", where, c.Epochs, c.Optimizer)
		}
		if want := 64; u.Run != "jem-n128" && c.BatchSize != want {
			t.Errorf("%s: batch %d, want %d", where, c.BatchSize, want)
		}
		switch u.Run {
		case "supcon-linear", "simclr-linear", "jointloss", "jointloss-resnet50":
			stage := "supcon"
			if u.Run == "jointloss-resnet50" {
				stage = "simclr-resnet50"
			} else if u.Run != "supcon-linear" {
				stage = "simclr"
			}
			if c.Init != s.RunDir(stage, u.Seed) || u.needs != c.Init || c.FreezeFeatures != linear {
				t.Errorf("%s: init %q (needs %q) freeze %v, want %s's folder of the same seed", where, c.Init, u.needs, c.FreezeFeatures, stage)
			}
		case "adv-linf", "adv-l2":
			if c.AdvSteps != 7 || (u.Run == "adv-linf") != (c.AdvNorm == "linf" && c.AdvEps == 8.0/255) || (u.Run == "adv-l2") != (c.AdvNorm == "l2" && c.AdvEps == 0.5) {
				t.Errorf("%s: adversarial training %s eps %g, %d steps", where, c.AdvNorm, c.AdvEps, c.AdvSteps)
			}
		}
		if c.Objective == "hdge" || c.Objective == "hdge-jem" {
			if c.Temperature != 0.1 || !c.NormLogits || c.Alpha != 0.5 && u.Run != "hdge-alpha0" {
				t.Errorf("%s: tau %g norm-logits %v alpha %g", where, c.Temperature, c.NormLogits, c.Alpha)
			}
			if c.Objective == "hdge" && c.Contrast == "official" && c.Alpha == 0.5 {
				queues[c.QueueSize] = true
			}
		}
		if c.Objective == "jem" || c.Objective == "hdge-jem" {
			if c.SGLDSteps != 20 || c.SGLDLR != 1 || c.SGLDStd != 0.01 || c.BufferSize != 10000 || c.ReinitFreq != 0.05 || c.SGLDCond ||
				c.PYXWeight != 1 || c.PXWeight != 1 || c.PXYWeight != 0 || c.EnergyL2 != 0 {
				t.Errorf("%s: not JEM's sampler: %+v", where, c.JEMSettings)
			}
			if c.Objective == "jem" {
				// N, the SGLD chains of a step, is the batch size (trainer/jem.go samples one per image).
				jemBatches[c.BatchSize] = true
			}
		}
	}
	for _, k := range []int{64, 128, 256, 65536} {
		if !queues[k] {
			t.Errorf("Table 6: no HDGE run with K = %d (have %v)", k, queues)
		}
	}
	for _, n := range []int{64, 128} {
		if !jemBatches[n] {
			t.Errorf("Table 6: no JEM run with N = %d (have %v)", n, jemBatches)
		}
	}

	// Every run is evaluated with the four OOD scores on the CIFAR-10 defaults (SVHN and CIFAR-100
	// when present, interp, both noises), calibration and both PGD curves.
	ev := s.eval.cfg
	for _, sc := range []string{"logqx", "maxprob", "gradnorm", "pxsim"} {
		if !slices.Contains(ev.Scores, sc) {
			t.Errorf("eval scores %v lack %s", ev.Scores, sc)
		}
	}
	if ev.OOD != nil {
		t.Errorf("eval names its OOD sets %v: the CIFAR-10 defaults (SVHN optional) are meant", ev.OOD)
	}
	var sets []string
	for _, set := range suite.DefaultOOD("cifar10") {
		sets = append(sets, set.Name)
	}
	for _, want := range []string{"svhn", "cifar100", "interp", "uniform", "gaussian"} {
		if !slices.Contains(sets, want) {
			t.Errorf("the default OOD sets of cifar10 %v lack %s", sets, want)
		}
	}
	for _, su := range []string{"classify", "ood", "calibration", "robustness"} {
		if !slices.Contains(ev.Suites, su) {
			t.Errorf("eval suites %v lack %s", ev.Suites, su)
		}
	}
	if !slices.Equal(ev.PGD.Norms, []string{"linf", "l2"}) || !slices.Contains(ev.PGD.Eps["linf"], 8.0/255) || len(ev.PGD.Eps["l2"]) < 3 {
		t.Errorf("PGD curves: %+v", ev.PGD)
	}

	// The script samples exactly the runs that keep a replay buffer.
	gen := scriptList(t, script, "GEN_RUNS")
	for _, r := range names {
		c, err := s.Config(r, 1)
		if err != nil {
			t.Fatal(err)
		}
		buffer := c.Objective == "jem" || c.Objective == "hdge-jem"
		if buffer != slices.Contains(gen, r) {
			t.Errorf("GEN_RUNS %v and run %s (objective %s) disagree", gen, r, c.Objective)
		}
	}
	if len(gen) != 3 {
		t.Errorf("GEN_RUNS %v: want jem, hdge-jem and jem-n128", gen)
	}
}

// TestPaperRegimeSpecsPinFP32: the CPU specs of the paper's regime train in fp32, the paper's
// precision, whatever the machine: under "auto" a CPU with native bf16 would train some of a grid's
// units in bf16 and another machine the rest in fp32, in one table.
func TestPaperRegimeSpecsPinFP32(t *testing.T) {
	for _, name := range []string{"fashion-jem.json", "fashion-collapse.json", "cifar10-paper.json"} {
		s, err := Load(filepath.Join(testutil.RepoRoot(), "experiments", name))
		if err != nil {
			t.Fatal(err)
		}
		units, err := s.Units(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range units {
			if u.cfg.Precision != "fp32" {
				t.Errorf("%s: %s seed %d trains with --precision %s", name, u.Run, u.Seed, u.cfg.Precision)
			}
		}
	}
}
