package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildReport assembles a report with every section from synthetic data.
func buildReport(t *testing.T) *Report {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	r := NewReport("HDGE on CIFAR-10 (synthetic)", "HDGE", map[string]any{
		"dataset": "cifar10", "alpha": 0.5, "queue": map[string]any{"k": 65536, "tau": 0.1},
		"epochs": 200, "augment": true,
	})
	log := synthTrainingLog(t, 300)
	mustNoErr(t, r.AddTraining(log.Source))
	in, labels := synthLogits(rng, 2000, 10, 2.6, 2.8)
	in.Source = "cifar10_test_logits.npy"
	mustNoErr(t, r.AddClassification("CIFAR-10 test", in, labels))
	for _, set := range []struct {
		name   string
		margin float64
	}{{"SVHN", 0.8}, {"CIFAR-100", 1.6}} {
		out, _ := synthLogits(rng, 1000, 10, set.margin, 2.8)
		mustNoErr(t, r.AddOODLogits("CIFAR-10", in, set.name, out))
	}
	var rows []RobustnessRow
	for _, model := range []string{"HDGE", "CE"} {
		for _, eps := range []float64{0, 1, 2, 4, 8} {
			acc := r.Classification.Accuracy / (1 + eps*map[string]float64{"HDGE": 0.3, "CE": 1.5}[model])
			if model == "CE" && eps == 0 {
				acc = 0.93
			}
			rows = append(rows, RobustnessRow{Model: model, Norm: "linf", Eps: eps, Steps: 20, Accuracy: acc})
			rows = append(rows, RobustnessRow{Model: model, Norm: "l2", Eps: eps / 8, Steps: 20, Accuracy: acc})
		}
	}
	mustNoErr(t, r.AddRobustness(rows))
	return r
}

func TestReportJSON(t *testing.T) {
	r := buildReport(t)
	dir := t.TempDir()
	mustNoErr(t, r.WritePlots(filepath.Join(dir, "plots")))
	path := filepath.Join(dir, "metrics.json")
	mustNoErr(t, r.WriteJSON(path))
	b, err := os.ReadFile(path)
	mustNoErr(t, err)
	var m map[string]any
	mustNoErr(t, json.Unmarshal(b, &m))
	get := func(keys ...string) any {
		var v any = m
		for _, k := range keys {
			mm, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("metrics.json: %s is not an object", strings.Join(keys, "."))
			}
			if v, ok = mm[k]; !ok {
				t.Fatalf("metrics.json lacks %s", strings.Join(keys, "."))
			}
		}
		return v
	}
	if get("classification", "accuracy").(float64) != r.Classification.Accuracy {
		t.Error("classification.accuracy differs from the report")
	}
	for _, k := range []string{"nll", "n", "num_classes"} {
		get("classification", k)
	}
	for _, k := range []string{"ece", "mce", "brier", "nll", "num_bins", "bins"} {
		get("calibration", k)
	}
	if n := len(get("calibration", "bins").([]any)); n != 20 {
		t.Errorf("%d calibration bins", n)
	}
	bin := get("calibration", "bins").([]any)[19].(map[string]any)
	for _, k := range []string{"lo", "hi", "count", "accuracy", "confidence"} {
		if _, ok := bin[k]; !ok {
			t.Errorf("calibration bin lacks %s", k)
		}
	}
	for _, set := range []string{"SVHN", "CIFAR-100"} {
		for _, score := range []string{"logqx", "maxprob"} {
			for _, k := range []string{"auroc", "aupr_in", "aupr_out", "fpr95", "n_in", "n_out"} {
				get("ood", set, score, k)
			}
		}
	}
	rob := get("robustness").([]any)
	if len(rob) != 20 || rob[0].(map[string]any)["norm"] == nil || rob[0].(map[string]any)["steps"] == nil {
		t.Errorf("robustness %v", rob[:1])
	}
	if get("training", "records").(float64) != 307 || get("training", "final", "step").(float64) != 300 {
		t.Errorf("training summary %v", get("training"))
	}
	if get("config", "queue", "k").(float64) != 65536 {
		t.Error("config not carried")
	}
	plots := get("plots").([]any)
	if len(plots) != len(r.Figures) || len(plots) != 4+1+4+2 {
		t.Errorf("%d plots in metrics.json, %d figures", len(plots), len(r.Figures))
	}
	for _, p := range plots {
		f := p.(map[string]any)["file"].(string)
		if _, err := os.Stat(f); err != nil {
			t.Errorf("plot file: %v", err)
		}
	}
	// CE's accuracy at ε=0 is not r's clean accuracy but CE is another model: no warning for it.
	// HDGE's rows are consistent. So: no warnings.
	if w := get("warnings").([]any); len(w) != 0 {
		t.Errorf("warnings %v", w)
	}
	r.Robustness[0].Accuracy = 0.2 // HDGE linf ε=0 row now disagrees with clean accuracy
	mustNoErr(t, r.AddRobustness([]RobustnessRow{{Model: "HDGE", Norm: "linf", Eps: 16, Steps: 20, Accuracy: 0.9}}))
	if ws := strings.Join(r.Warnings, "\n"); !strings.Contains(ws, "differs from clean accuracy") || !strings.Contains(ws, "at the smaller ε=8") {
		t.Errorf("warnings after bad rows: %s", ws)
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

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestReportHTMLRendersInChromium opens report.html in headless Chromium: the DOM must hold the
// tables and every embedded image must decode; a screenshot must not be blank.
func TestReportHTMLRendersInChromium(t *testing.T) {
	r := buildReport(t)
	r.Warnings = append(r.Warnings, "example warning <b>escaped</b>")
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	mustNoErr(t, r.WriteHTML(path))
	page, err := os.ReadFile(path)
	mustNoErr(t, err)
	if d := os.Getenv("EVAL_PLOT_DIR"); d != "" {
		mustNoErr(t, os.WriteFile(filepath.Join(d, "report.html"), page, 0o644))
	}
	// Self-contained: nothing fetched from elsewhere.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:|//|file:)`).Find(page); m != nil {
		t.Errorf("report references an external resource: %s", m)
	}
	if n := strings.Count(string(page), `src="data:image/png;base64,`); n != len(r.Figures) {
		t.Errorf("%d inline images, %d figures", n, len(r.Figures))
	}
	if strings.Contains(string(page), "<b>escaped</b>") {
		t.Error("warning text not escaped")
	}
	bin := findChromium()
	if bin == "" {
		t.Skip("chromium not installed")
	}
	// The check script goes into a copy, so the report itself stays script-free.
	probe := strings.Replace(string(page), "</body>", `<script>
addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0);
  const d = document.createElement('div');
  d.id = 'render-check';
  d.textContent = 'decoded ' + ok.length + '/' + imgs.length + ' widths ' + imgs.map(i => i.naturalWidth).join(',');
  document.body.appendChild(d);
});
</script></body>`, 1)
	probePath := filepath.Join(dir, "probe.html")
	mustNoErr(t, os.WriteFile(probePath, []byte(probe), 0o644))
	dom := string(runChromium(t, bin, "--dump-dom", "file://"+probePath))
	check := regexp.MustCompile(`id="render-check">decoded (\d+)/(\d+) widths ([\d,]*)<`).FindStringSubmatch(dom)
	if check == nil {
		t.Fatalf("render check missing from the DOM (%d bytes)", len(dom))
	}
	want := fmt.Sprint(len(r.Figures))
	if check[1] != want || check[2] != want {
		t.Errorf("decoded %s of %s images, want %s", check[1], check[2], want)
	}
	for _, w := range strings.Split(check[3], ",") {
		if w != "960" {
			t.Errorf("image natural widths %s, want 960 each", check[3])
			break
		}
	}
	for _, id := range []string{"config-table", "training-table", "classification-table", "calibration-table",
		"ood-table", "robustness-table-linf", "robustness-table-l2", "warnings"} {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("rendered DOM lacks #%s", id)
		}
	}
	// Results lead: summary cards, then OOD, calibration and robustness, then training; the
	// configuration comes last, collapsed.
	order := []string{`id="summary"`, `id="ood"`, `id="calibration"`, `id="robustness"`, `id="training"`, `id="config"`}
	last := -1
	for _, id := range order {
		i := strings.Index(dom, id)
		if i < 0 || i < last {
			t.Errorf("rendered DOM: %s at %d, after the previous section at %d (want order %v)", id, i, last, order)
		}
		last = i
	}
	if !regexp.MustCompile(`<details id="config-details">\s*<summary>`).MatchString(dom) ||
		strings.Contains(dom, `<details id="config-details" open`) {
		t.Error("configuration is not in a collapsed <details>")
	}
	summary := dom[strings.Index(dom, `id="summary"`):strings.Index(dom, `id="ood"`)]
	bestAUROC := 0.0
	for _, o := range r.OOD {
		bestAUROC = max(bestAUROC, o.AUROC)
	}
	hdgeAt8 := r.Classification.Accuracy / (1 + 8*0.3)
	for _, s := range []string{"Accuracy", "NLL", "ECE", "Brier", "Best OOD AUROC", fmt.Sprintf("%.4f", bestAUROC),
		"PGD L∞ accuracy", fmt.Sprintf("%.2f%%", 100*hdgeAt8), "PGD L2 accuracy", "ε = 1, 20 steps"} {
		if !strings.Contains(summary, s) {
			t.Errorf("summary cards lack %q", s)
		}
	}
	for _, s := range []string{"SVHN", "CIFAR-100", "log q(x)", "max p(y|x)", fmt.Sprintf("%.2f%%", 100*r.Classification.Accuracy), "queue.k", "65536"} {
		if !strings.Contains(dom, s) {
			t.Errorf("rendered DOM lacks %q", s)
		}
	}

	shot := filepath.Join(dir, "report.png")
	runChromium(t, bin, "--hide-scrollbars", "--window-size=1280,2400", "--screenshot="+shot, "file://"+path)
	b, err := os.ReadFile(shot)
	mustNoErr(t, err)
	keepPNG(t, "report_screenshot.png", b)
	img, err := png.Decode(bytes.NewReader(b))
	mustNoErr(t, err)
	colours := map[uint32]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 4 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 4 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			colours[(cr>>11)<<10|(cg>>11)<<5|cb>>11]++
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot looks blank: %d colours", len(colours))
	}
}
