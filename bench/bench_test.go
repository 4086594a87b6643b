package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
)

// TestMain lets the test binary serve as the Go child of the benchmark runs it starts.
func TestMain(m *testing.M) {
	ChildMain()
	os.Exit(m.Run())
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func positive(t *testing.T, name string, v float64) {
	t.Helper()
	if !(v > 0) || math.IsInf(v, 0) {
		t.Errorf("%s = %v, want a positive finite number", name, v)
	}
}

// TestQuickBench runs the whole benchmark in quick mode (tiny sets, two steps, one repetition),
// both sides, and checks that every figure of the report came out.
func TestQuickBench(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch, numpy, sklearn").Run(); err != nil {
		t.Skip("Debian's python3-torch, numpy and sklearn are needed; `make deps` installs them")
	}
	shared, fashion := testutil.SharedData(), testutil.FashionDir
	if shared == "" {
		t.Skip("the shared datasets are absent (HDGE_SHARED_DATA, default ../shared/data beside the repository)")
	}
	for _, d := range []string{fashion, filepath.Join(shared, "cifar-10-batches-bin"), filepath.Join(shared, "mnist")} {
		if _, err := os.Stat(d); err != nil {
			t.Skipf("dataset folder %s is absent", d)
		}
	}
	dir := t.TempDir()
	md, js := filepath.Join(dir, "results.md"), filepath.Join(dir, "results.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Quick: true, Work: filepath.Join(dir, "work"), Out: md, JSON: js,
		SharedData: shared, FashionDir: fashion, Command: "go test ./bench", Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var got Results
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if got.Machine.CPU == "" || got.Machine.Libtorch == "" || got.Machine.PyTorch == "" || len(got.Machine.Load) != 2 {
		t.Errorf("machine description incomplete: %+v", got.Machine)
	}
	positive(t, "theoretical peak", got.Machine.PeakTheoryGFLOPS)
	positive(t, "measured GEMM peak", got.Machine.PeakGEMMGFLOPS)
	positive(t, "measured convolution peak", got.Machine.PeakConvGFLOPS)
	if !got.Parity.OK {
		t.Errorf("parity: %+v", got.Parity)
	}

	if len(got.Training) != 5 {
		t.Fatalf("%d training rows, want 4 and the released-loop row", len(got.Training))
	}
	for _, r := range got.Training {
		name := r.Dataset + " " + r.Objective + " " + r.Variant
		for side, s := range map[string]TrainSide{"go": r.Go, "python": r.Py} {
			positive(t, name+" "+side+" img/s", s.ImgPerS)
			positive(t, name+" "+side+" step ms", s.StepMS)
			positive(t, name+" "+side+" peak RSS", s.MaxRSSMiB)
			positive(t, name+" "+side+" Pss", s.TreePSSMiB)
			if s.DataWaitPct < 0 || s.DataWaitPct > 100 {
				t.Errorf("%s %s data wait %v %%", name, side, s.DataWaitPct)
			}
		}
		positive(t, name+" speed-up", r.Speedup)
	}
	if len(got.StepRatio) != 2 {
		t.Errorf("%d step-ratio rows, want C=10 and C=100", len(got.StepRatio))
	}
	for _, r := range got.StepRatio {
		for _, v := range []float64{r.GoCEMS, r.GoHDGMS, r.PyCEMS, r.PyHDGMS, r.GoRatio, r.PyRatio, r.HDGESpeedup} {
			positive(t, fmt.Sprintf("step ratio C=%d", r.Classes), v)
		}
	}
	su := quickSuite()
	if len(got.Contrastive) != len(su.Contrast.Ks)*len(su.Contrast.Classes) {
		t.Errorf("%d contrastive rows", len(got.Contrastive))
	}
	for _, r := range got.Contrastive {
		positive(t, "contrastive Go ms", r.GoMS)
		positive(t, "contrastive Python ms", r.PyMS)
		if r.GoPeakMiB < 0 || r.PyPeakMiB < 0 {
			t.Errorf("C=%d K=%d: negative step peak %v / %v", r.Classes, r.K, r.GoPeakMiB, r.PyPeakMiB)
		}
	}
	if len(got.Pipeline) != 2 {
		t.Errorf("%d pipeline rows", len(got.Pipeline))
	}
	for _, r := range got.Pipeline {
		positive(t, r.Dataset+" Go pipeline", r.GoImgS)
		positive(t, r.Dataset+" Python pipeline", r.PyImgS)
	}
	e := got.Eval
	positive(t, "eval Go img/s", e.GoImgS)
	positive(t, "eval Python img/s", e.PyImgS)
	if e.Images != 4*su.Eval.PerSet {
		t.Errorf("eval over %d images, want %d", e.Images, 4*su.Eval.PerSet)
	}
	for _, key := range []string{"accuracy", "nll", "ece", "mnist/logqx", "interp/maxprob", "uniform/logqx"} {
		if e.GoMetrics[key] == nil || e.PyMetrics[key] == nil {
			t.Errorf("eval metric %q missing: go %v python %v", key, e.GoMetrics[key], e.PyMetrics[key])
		}
	}
	// Same weights and sets; only the test-time noise differs between the sides.
	if e.MaxAUROCDiff > 0.25 {
		t.Errorf("AUROC differs by %v between the sides", e.MaxAUROCDiff)
	}
	if len(got.FLOPs) != 2 {
		t.Errorf("%d FLOP rows", len(got.FLOPs))
	}
	for _, f := range got.FLOPs {
		positive(t, f.Config+" GFLOP/step", f.StepGFLOP)
		positive(t, f.Config+" Go GFLOP/s", f.GoGFLOPS)
		positive(t, f.Config+" Python GFLOP/s", f.PyGFLOPS)
	}
	if len(got.DDP) != 4 {
		t.Errorf("%d data-parallel rows, want 1×1, 1×2, 2×1 and two independent 1×1", len(got.DDP))
	}
	for _, r := range got.DDP {
		positive(t, r.Layout+" Go img/s", r.GoImgPerS)
		if r.Independent {
			positive(t, r.Layout+" efficiency", r.GoEfficiency)
			continue
		}
		positive(t, r.Layout+" Python img/s", r.PyImgPerS)
		if r.Processes > 1 {
			positive(t, r.Layout+" Go all-reduce ms", r.GoAllReduceMS)
			positive(t, r.Layout+" Python all-reduce ms", r.PyAllReduceMS)
		}
	}
	checkObjectives(t, got.Objectives)
	if len(got.Targets) != 4+2+1+1+2+3 {
		t.Errorf("%d targets, want 13", len(got.Targets))
	}

	text, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if string(text) != Markdown(res) {
		t.Error("results.md differs from the rendered results")
	}
	for _, h := range []string{"## Targets", "## Training throughput", "## HDGE step against CE step", "## The contrastive term alone",
		"## Data pipeline", "## Evaluation", "## Peak memory of a training run", "## FLOP rate of a training step", "## Parity", "## Data-parallel training",
		"## The objectives' training steps", "### The replay buffer's memory"} {
		if !strings.Contains(string(text), h) {
			t.Errorf("results.md lacks %q", h)
		}
	}
}

// checkObjectives checks the objectives section: every objective's step, a Python figure for
// the three with a reference, and the replay buffer's sizes.
func checkObjectives(t *testing.T, o *ObjectivesResult) {
	t.Helper()
	if o == nil {
		t.Fatal("no objectives section")
	}
	auto := strings.HasPrefix(o.AutoLayout, "channels-last")
	if want := goObjectives(auto); len(o.Steps) != len(want) {
		t.Errorf("%d objective rows, want %d", len(o.Steps), len(want))
	}
	// The explicit rows run the layout auto did not pick, so that both are measured.
	for _, r := range o.Steps {
		if r.Auto != (r.Layout == layoutName(auto)) {
			t.Errorf("%s: layout %s (auto %v) with auto resolving to %q", r.Objective, r.Layout, r.Auto, o.AutoLayout)
		}
	}
	oc := objectivesSuite(true)
	for _, r := range o.Steps {
		positive(t, r.Objective+" Go ms", r.GoMS)
		positive(t, r.Objective+" Go / CE", r.OverCE)
		if r.OverCECI[0] > r.OverCE || r.OverCE > r.OverCECI[1] {
			t.Errorf("%s: Go / CE %v outside its interval %v", r.Objective, r.OverCE, r.OverCECI)
		}
		wantPy := slices.Contains(oc.Python, r.Objective)
		if wantPy {
			positive(t, r.Objective+" Python ms", r.PyMS)
			positive(t, r.Objective+" speed-up in the shared process", r.SharedSpeedup)
			if r.Auto {
				positive(t, r.Objective+" Go alone ms", r.GoAloneMS)
				positive(t, r.Objective+" speed-up", r.Speedup)
				if r.AloneSteps != r.PySteps {
					t.Errorf("%s: %d Go alone steps against %d Python steps", r.Objective, r.AloneSteps, r.PySteps)
				}
			}
			if r.PySteps != oc.PySteps[r.Objective]*oc.Reps {
				t.Errorf("%s: %d Python steps, want %d", r.Objective, r.PySteps, oc.PySteps[r.Objective]*oc.Reps)
			}
		} else if r.PySteps != 0 {
			t.Errorf("%s has Python figures but no reference", r.Objective)
		}
		if sgld := (r.Objective == "jem" || r.Objective == "hdge-jem") && r.Auto; sgld != (r.OverHDGE > 0) {
			t.Errorf("%s: Go / HDGE = %v", r.Objective, r.OverHDGE)
		}
	}
	if len(o.Memory) != len(oc.MemShapes) {
		t.Fatalf("%d buffer memory rows, want %d", len(o.Memory), len(oc.MemShapes))
	}
	for _, r := range o.Memory {
		want := int64(4 * oc.MemChains)
		for _, d := range r.Shape {
			want *= int64(d)
		}
		if r.BufferBytes != want {
			t.Errorf("buffer of %d × %v: %d bytes, want %d", r.Chains, r.Shape, r.BufferBytes, want)
		}
		if r.GoCheckpointBytes <= r.BufferBytes || r.PyCheckpointBytes <= r.BufferBytes {
			t.Errorf("checkpoints of %d and %d bytes cannot hold a buffer of %d", r.GoCheckpointBytes, r.PyCheckpointBytes, r.BufferBytes)
		}
	}
}

func TestHelpers(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median of nothing = %v", m)
	}
	a, b := make([]float64, 25), make([]float64, 25)
	for i := range a {
		a[i], b[i] = float64(i+1), 1
	}
	if r, ci := pairedRatio(a, b), pairedRatioCI(a, b); r != 13 || ci[0] != 8 || ci[1] != 18 {
		t.Errorf("paired ratio of 1..25 over 1: %v (CI %v), want 13 (8–18)", r, ci)
	}
	if r := ratio(1, 0); r != 0 {
		t.Errorf("ratio by zero = %v", r)
	}
	p, v, _ := theoreticalPeak(2, 2600, map[string]bool{"avx512f": true, "avx2": true, "fma": true})
	if p != 332.8 || v != "avx512" {
		t.Errorf("avx512 peak %v %s, want 332.8 avx512", p, v)
	}
	if p, _, _ := theoreticalPeak(1, 3000, map[string]bool{"avx2": true, "fma": true}); p != 96 {
		t.Errorf("avx2 peak %v, want 96", p)
	}
	if _, err := lastJSON([]byte("warning\n{\"step_s\":[1,2]}\n")); err != nil {
		t.Error(err)
	}
	if _, err := lastJSON([]byte("no result\n")); err == nil {
		t.Error("a child without a JSON line gave no error")
	}
	if v := selfKiB("VmRSS"); v <= 0 {
		t.Errorf("VmRSS = %d", v)
	}
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer cmd.Process.Kill()
	found := false
	for _, pid := range descendants(os.Getpid()) {
		found = found || pid == cmd.Process.Pid
	}
	if !found {
		t.Error("descendants misses a child process")
	}
	if treePSS(os.Getpid()) <= 0 {
		t.Error("no Pss measured for this process")
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	work := t.TempDir()
	lock, err := lockWork(work)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Work: work, Python: "/bin/true"})
	lock.Close()
	if err == nil || !strings.Contains(err.Error(), "another benchmark") {
		t.Errorf("a busy work folder: %v", err)
	}
	if _, err := Run(context.Background(), Options{Work: t.TempDir(), Only: []string{"nope"}, Python: "/bin/true"}); err == nil ||
		!strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown section: %v", err)
	}
	if _, err := Run(context.Background(), Options{Work: t.TempDir(), Python: "/no/such/python"}); err == nil ||
		!strings.Contains(err.Error(), "/no/such/python") {
		t.Errorf("missing python: %v", err)
	}
}
