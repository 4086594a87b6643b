package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/eval/npy"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func synth(rng *rand.Rand, n, c int, margin float64) (eval.Logits, []int64) {
	data := make([]float32, n*c)
	labels := make([]int64, n)
	for i := range n {
		y := rng.IntN(c)
		labels[i] = int64(y)
		for j := range c {
			v := rng.NormFloat64()
			if j == y {
				v += margin + 0.8*rng.NormFloat64()
			}
			data[i*c+j] = float32(2.5 * v)
		}
	}
	l, err := eval.NewLogits(data, n, c)
	if err != nil {
		panic(err)
	}
	return l, labels
}

// writeEval makes an evaluation folder the way eval does: metrics.json from a Report, a logits
// folder with index.json and .npy files, and the run's metrics.jsonl beside it. margin sets how
// good the model is.
func writeEval(t *testing.T, dir string, seed uint64, margin float64, withPGD bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	must(t, os.MkdirAll(filepath.Join(dir, "logits"), 0o755))
	r := eval.NewReport("synthetic", "m", nil)
	in, labels := synth(rng, 400, 10, margin)
	out, _ := synth(rng, 300, 10, margin/3)
	must(t, r.AddClassification("test", in, labels))
	must(t, r.AddOODLogits("in", in, "noise", out))
	if withPGD {
		var rows []eval.RobustnessRow
		for _, eps := range []float64{0, 2.0 / 255, 8.0 / 255} {
			rows = append(rows, eval.RobustnessRow{Norm: "linf", Eps: eps, Steps: 10, Accuracy: r.Classification.Accuracy / (1 + 30*eps/margin)})
		}
		must(t, r.AddRobustness(rows))
	}
	must(t, r.WriteJSON(filepath.Join(dir, "metrics.json")))
	must(t, npy.WriteFloat32(filepath.Join(dir, "logits", "test.npy"), in.Data, in.N, in.C))
	must(t, npy.WriteInt64(filepath.Join(dir, "logits", "test_labels.npy"), labels, len(labels)))
	must(t, npy.WriteFloat32(filepath.Join(dir, "logits", "noise.npy"), out.Data, out.N, out.C))
	idx := map[string]any{"format": "hdge-torch-logits/1", "model": "m",
		"test": map[string]any{"name": "test", "dataset": "synthetic", "n": in.N, "num_classes": in.C, "logits": "test.npy", "labels": "test_labels.npy"},
		"ood":  []any{map[string]any{"name": "noise", "n": out.N, "num_classes": out.C, "logits": "noise.npy"}}}
	b, _ := json.Marshal(idx)
	must(t, os.WriteFile(filepath.Join(dir, "logits", "index.json"), b, 0o644))
	var log strings.Builder
	for step := 10; step <= 100; step += 10 {
		fmt.Fprintf(&log, `{"step":%d,"loss":%g,"train_acc":%g}`+"\n", step, 2.3/float64(step/10)+0.01*float64(seed), 0.5+0.004*float64(step))
	}
	must(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "metrics.jsonl"), []byte(log.String()), 0o644))
}

func TestMeanStd(t *testing.T) {
	for _, tc := range []struct {
		xs        []float64
		mean, std float64
		n         int
	}{
		{[]float64{0.90, 0.92, 0.94}, 0.92, 0.02, 3},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, math.Sqrt(32.0 / 7), 8},
		{[]float64{0.5}, 0.5, 0, 1},
		{[]float64{1, math.NaN(), 3}, 2, math.Sqrt2, 2},
	} {
		s := MeanStd(tc.xs)
		if math.Abs(s.Mean-tc.mean) > 1e-12 || math.Abs(s.Std-tc.std) > 1e-12 || s.N != tc.n {
			t.Errorf("MeanStd(%v) = %+v, want %g ± %g (n=%d)", tc.xs, s, tc.mean, tc.std, tc.n)
		}
	}
	if s := MeanStd(nil); !math.IsNaN(s.Mean) || s.N != 0 {
		t.Errorf("MeanStd(nil) = %+v", s)
	}
}

// handEval writes a metrics.json with given numbers only, as an evaluation without logits.
func handEval(t *testing.T, dir string, acc, ece, auroc float64, pgd *float64) {
	t.Helper()
	m := map[string]any{"schema_version": 1, "created": "2026-01-01T00:00:00Z", "warnings": []any{},
		"classification": map[string]any{"accuracy": acc, "nll": 1 - acc, "n": 100, "num_classes": 10},
		"calibration": map[string]any{"ece": ece, "brier": 0.1, "n": 100, "num_bins": 2, "bins": []any{
			map[string]any{"lo": 0, "hi": 0.5, "count": 40, "accuracy": 0.3, "confidence": 0.4},
			map[string]any{"lo": 0.5, "hi": 1, "count": 60, "accuracy": acc, "confidence": 0.8}}},
		"ood": map[string]any{"svhn": map[string]any{"logqx": map[string]any{"auroc": auroc}}}}
	if pgd != nil {
		m["robustness"] = []any{map[string]any{"norm": "linf", "eps": 0, "steps": 10, "accuracy": acc},
			map[string]any{"norm": "linf", "eps": 8.0 / 255, "steps": 10, "accuracy": *pgd}}
	}
	b, _ := json.Marshal(m)
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "metrics.json"), b, 0o644))
}

// TestSummarizeSeeds checks the table's mean ± std over seeds on hand-made experiment folders, a
// seed without an evaluation kept as missing, and a suite one run lacks shown as missing.
func TestSummarizeSeeds(t *testing.T) {
	exp := t.TempDir()
	p := func(v float64) *float64 { return &v }
	handEval(t, filepath.Join(exp, "hdge", "seed-1", "eval"), 0.90, 0.02, 0.80, p(0.30))
	handEval(t, filepath.Join(exp, "hdge", "seed-2", "eval"), 0.92, 0.04, 0.84, p(0.34))
	handEval(t, filepath.Join(exp, "hdge", "seed-3", "eval"), 0.94, 0.06, 0.88, p(0.38))
	must(t, os.MkdirAll(filepath.Join(exp, "hdge", "seed-4"), 0o755)) // trained, not evaluated
	handEval(t, filepath.Join(exp, "ce", "seed-1", "eval"), 0.95, 0.01, 0.70, nil)
	must(t, os.WriteFile(filepath.Join(exp, "results.md"), nil, 0o644))

	runs, err := Resolve([]string{exp})
	must(t, err)
	if len(runs) != 2 || runs[0].Name != "ce" || runs[1].Name != "hdge" || len(runs[1].Seeds) != 4 || len(runs[1].Present()) != 3 {
		t.Fatalf("resolved %d runs: %+v", len(runs), runs)
	}
	if r := runs[1].Seeds[3]; r.Eval != nil || r.Seed != 4 || !strings.Contains(r.Reason, "seed-4") {
		t.Errorf("seed 4: %+v", r)
	}
	table := Summarize(runs)
	get := func(key string) Metric {
		for _, m := range table {
			if m.Key == key {
				return m
			}
		}
		t.Fatalf("summary lacks %s (has %v)", key, table)
		return Metric{}
	}
	near := func(c Cell, mean, std float64, n int) bool {
		return !c.Missing && math.Abs(c.Mean-mean) < 1e-12 && math.Abs(c.Std-std) < 1e-12 && c.N == n
	}
	acc := get("accuracy")
	if !near(acc.Cells[1], 0.92, 0.02, 3) || !near(acc.Cells[0], 0.95, 0, 1) || !acc.Cells[0].Best || acc.Cells[1].Best {
		t.Errorf("accuracy cells %+v", acc.Cells)
	}
	if got := acc.Cells[1].Text(true); got != "92.00 ± 2.00%" {
		t.Errorf("accuracy text %q", got)
	}
	if ece := get("ece"); !near(ece.Cells[1], 0.04, 0.02, 3) || !ece.Cells[0].Best {
		t.Errorf("ECE cells %+v (lower is better)", ece.Cells)
	}
	if a := get("ood/svhn/logqx"); !near(a.Cells[1], 0.84, 0.04, 3) || !a.Cells[1].Best {
		t.Errorf("AUROC cells %+v", a.Cells)
	}
	pgd := get(fmt.Sprintf("pgd/linf/%g/10", 8.0/255))
	if !pgd.Cells[0].Missing || pgd.Cells[0].Text(true) != "missing" || !near(pgd.Cells[1], 0.34, 0.04, 3) {
		t.Errorf("PGD cells %+v", pgd.Cells)
	}
	if !strings.Contains(pgd.Label, "8/255") {
		t.Errorf("PGD label %q", pgd.Label)
	}

	// Pooled bins: 3 seeds × (40, 60) samples; the high bin's accuracy is the seeds' mean.
	cal, n, ok := PoolCalibration(runs[1].Present())
	if !ok || n != 3 || cal.N != 300 || cal.Bins[1].Count != 180 || math.Abs(cal.Bins[1].Accuracy-0.92) > 1e-12 ||
		math.Abs(cal.ECE-(0.4*0.1+0.6*0.12)) > 1e-12 || math.Abs(cal.Accuracy-(0.4*0.3+0.6*0.92)) > 1e-12 {
		t.Errorf("pooled calibration %+v (n=%d)", cal, n)
	}

	// Pointing at one run of the experiment gives that run alone; a plain folder is an error.
	runs, err = Resolve([]string{filepath.Join(exp, "hdge")})
	if err != nil || len(runs) != 1 || len(runs[0].Seeds) != 4 {
		t.Errorf("one run: %v %v", runs, err)
	}
	empty := filepath.Join(t.TempDir(), "nothing-here")
	must(t, os.MkdirAll(filepath.Join(empty, "sub"), 0o755))
	if _, err := Resolve([]string{exp, empty}); err == nil || !strings.Contains(err.Error(), empty+" holds no evaluation") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := Resolve([]string{filepath.Join(exp, "hdge", "seed-4")}); err == nil || !strings.Contains(err.Error(), "seed-4 holds no evaluation") {
		t.Errorf("empty seed folder: %v", err)
	}
	// A training run without eval/ is a run not yet evaluated: missing beside others, an error alone.
	trained := filepath.Join(t.TempDir(), "trained")
	must(t, os.MkdirAll(trained, 0o755))
	must(t, os.WriteFile(filepath.Join(trained, "metrics.jsonl"), []byte(`{"step":1,"loss":2}`+"\n"), 0o644))
	runs, err = Resolve([]string{exp, trained})
	if err != nil || len(runs) != 3 || runs[2].Name != "trained" || len(runs[2].Present()) != 0 {
		t.Errorf("unevaluated training run beside an experiment: %v %v", runs, err)
	}
	if _, err := Resolve([]string{trained}); err == nil || !strings.Contains(err.Error(), "none of the runs has been evaluated") ||
		!strings.Contains(err.Error(), filepath.Join(trained, "eval", "metrics.json")) {
		t.Errorf("only an unevaluated run: %v", err)
	}
	if _, err := Resolve([]string{filepath.Join(exp, "absent")}); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("absent folder: %v", err)
	}
}

func TestAggregateCurves(t *testing.T) {
	c := Aggregate([]map[float64]float64{{0: 1, 1: 2, 2: 3}, {0: 3, 1: 4}})
	if fmt.Sprint(c.X, c.Mean, c.Std, c.Seeds) != fmt.Sprint([]float64{0, 1}, []float64{2, 3}, []float64{math.Sqrt2, math.Sqrt2}, 2) {
		t.Errorf("Aggregate: %+v", c)
	}
	// A ROC curve with a vertical step at FPR 0.5: the grid point there takes the top of the step.
	r := ROCAt([]float64{0, 0, 0.5, 0.5, 1}, []float64{0, 0.2, 0.4, 0.9, 1})
	for fpr, want := range map[float64]float64{0: 0.2, 0.25: 0.3, 0.5: 0.9, 0.75: 0.95, 1: 1} {
		if math.Abs(r[fpr]-want) > 1e-12 {
			t.Errorf("ROC at FPR %g: %g, want %g", fpr, r[fpr], want)
		}
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestComparePageInChromium builds a comparison of an experiment (two runs, two seeds, one seed
// missing, one run without PGD) and a lone evaluation folder, then opens it in headless Chromium:
// every section is there and every image decodes.
func TestComparePageInChromium(t *testing.T) {
	root := t.TempDir()
	exp := filepath.Join(root, "exp")
	writeEval(t, filepath.Join(exp, "hdge", "seed-1", "eval"), 1, 2.0, true)
	writeEval(t, filepath.Join(exp, "hdge", "seed-2", "eval"), 2, 2.2, true)
	writeEval(t, filepath.Join(exp, "ce", "seed-1", "eval"), 3, 2.8, false)
	writeEval(t, filepath.Join(exp, "ce", "seed-2", "eval"), 4, 2.6, false)
	must(t, os.MkdirAll(filepath.Join(exp, "ce", "seed-3"), 0o755))
	lone := filepath.Join(root, "single", "eval")
	writeEval(t, lone, 5, 1.5, true)

	runs, err := Resolve([]string{exp, lone})
	must(t, err)
	pg, err := Build(runs)
	must(t, err)
	out := filepath.Join(root, "cmp")
	must(t, pg.Write(out))
	page, err := os.ReadFile(filepath.Join(out, PageFile))
	must(t, err)
	if d := os.Getenv("EVAL_PLOT_DIR"); d != "" {
		os.WriteFile(filepath.Join(d, "compare.html"), page, 0o644)
	}
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:|//|file:)`).Find(page); m != nil {
		t.Errorf("page references an external resource: %s", m)
	}
	// 3 reliability, 2 ROC (logqx, maxprob), 3×2 histograms, 1 robustness, 2 training.
	nFigs := 3 + 2 + 6 + 1 + 2
	pngs, _ := filepath.Glob(filepath.Join(out, "*.png"))
	if n := strings.Count(string(page), `src="data:image/png;base64,`); n != nFigs || len(pngs) != nFigs {
		t.Errorf("%d inline images and %d PNG files, want %d", n, len(pngs), nFigs)
	}
	if len(pg.Robustness) != 1 || len(pg.Training) != 2 || len(pg.ROC) != 2 {
		t.Errorf("figures: %d robustness, %d training, %d ROC", len(pg.Robustness), len(pg.Training), len(pg.ROC))
	}

	// compare.json holds the mean ± std of what each seed's metrics.json says.
	var summary struct {
		Metrics []struct {
			Key    string
			Values map[string]struct {
				Mean, Std float64
				N         int
			}
		}
	}
	js, err := os.ReadFile(filepath.Join(out, SummaryFile))
	must(t, err)
	must(t, json.Unmarshal(js, &summary))
	var accs []float64
	for _, s := range []string{"seed-1", "seed-2"} {
		e, err := LoadEval(filepath.Join(exp, "hdge", s, "eval"))
		must(t, err)
		accs = append(accs, e.Metrics.Classification.Accuracy)
	}
	found := false
	for _, m := range summary.Metrics {
		if m.Key == "accuracy" {
			found = true
			v := m.Values["hdge"]
			if want := (accs[0] + accs[1]) / 2; math.Abs(v.Mean-want) > 1e-12 || v.N != 2 || math.Abs(v.Std-math.Abs(accs[0]-accs[1])/math.Sqrt2) > 1e-12 {
				t.Errorf("compare.json hdge accuracy %+v, seeds %v", v, accs)
			}
		}
		if strings.HasPrefix(m.Key, "pgd/") {
			if _, ok := m.Values["ce"]; ok {
				t.Errorf("compare.json gives ce a %s it was never attacked for", m.Key)
			}
		}
	}
	if !found {
		t.Error("compare.json has no accuracy")
	}

	bin := findChromium()
	if bin == "" {
		t.Skip("chromium not installed")
	}
	probe := strings.Replace(string(page), "</body>", `<script>
addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  const d = document.createElement('div');
  d.id = 'render-check';
  d.textContent = 'decoded ' + ok.length + '/' + imgs.length;
  document.body.appendChild(d);
});
</script></body>`, 1)
	probePath := filepath.Join(root, "probe.html")
	must(t, os.WriteFile(probePath, []byte(probe), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
		"--disable-background-networking", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", "file://"+probePath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	d := string(dom)
	if want := fmt.Sprintf(`id="render-check">decoded %d/%d<`, nFigs, nFigs); !strings.Contains(d, want) {
		t.Errorf("rendered DOM lacks %s", want)
	}
	last := -1
	for _, id := range []string{"warnings", "summary-table", "calibration", "ood", "robustness", "training", "runs-table"} {
		i := strings.Index(d, `id="`+id+`"`)
		if i < 0 || i < last {
			t.Errorf("section #%s at %d (previous at %d)", id, i, last)
		}
		last = i
	}
	for _, s := range []string{"<th>ce</th>", "<th>hdge</th>", "<th>single</th>", "AUROC noise, log q(x)", "PGD-10 L∞ ε=8/255 accuracy",
		"ROC: noise, max p(y|x)", "hdge (2 seeds)", "seed-3", "2 of 3", `class="missing">missing<`} {
		if !strings.Contains(d, s) {
			t.Errorf("rendered DOM lacks %q", s)
		}
	}
}
