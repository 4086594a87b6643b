package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
	"github.com/hdge-torch/hdge-torch/trainer"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, bin string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := cliResult{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %v: %v", args, err)
	}
	return res
}

func readMetrics(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// dig walks a decoded JSON value along a dotted path.
func dig(t *testing.T, v any, path string) any {
	t.Helper()
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok || m[k] == nil {
			t.Fatalf("metrics.json lacks %s (at %q)", path, k)
		}
		v = m[k]
	}
	return v
}

// TestEvalCommand trains a tiny HDGE model, evaluates it with the built binary, checks metrics.json,
// the .npy logits (with numpy and scikit-learn), report.html (in Chromium), re-scoring with --logits,
// and the errors for a mismatched checkpoint, damaged logits and an unusable OOD set.
func TestEvalCommand(t *testing.T) {
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "fashion"), 0o755); err != nil {
		t.Fatal(err)
	}
	ds := testutil.SmallFashion(t, filepath.Join(tmp, "fashion"), 400, 300)
	start := time.Now()
	bin := filepath.Join(tmp, "hdge-torch")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	cfg := trainer.Defaults()
	cfg.Dataset, cfg.Model, cfg.ValSize, cfg.BatchSize, cfg.QueueSize = ds, "wrn-10-1", 50, 32, 128
	cfg.Steps, cfg.Threads, cfg.Workers, cfg.LogEvery, cfg.Warmup = 40, 2, 1, 5, 10
	cfg.Out = filepath.Join(tmp, "run")
	if _, err := trainer.Train(context.Background(), cfg, trainer.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("trained in %v", time.Since(start).Round(time.Millisecond))

	shared := testutil.SharedData()
	ood := "interp,uniform,gaussian"
	var env []string
	if shared != "" {
		ood = "mnist,cifar10," + ood
		env = append(env, "HDGE_DATA="+shared)
	} else {
		t.Log("no shared data folder: MNIST and CIFAR-10 left out of the OOD sets")
	}
	out1 := filepath.Join(tmp, "out1")
	start = time.Now()
	res := runCLI(t, bin, env, "eval", "--checkpoint", cfg.Out, "--out", out1, "--ood", ood, "--ood-limit", "200",
		"--pgd-limit", "60", "--pgd-steps", "2,4", "--pgd-linf-eps", "0,2/255,8/255", "--pgd-l2-eps", "0,0.5",
		"--scores", "logqx,maxprob,gradnorm", "--threads", "2", "--no-progress")
	if res.code != 0 {
		t.Fatalf("eval exited %d\n%s", res.code, res.stderr)
	}
	t.Logf("evaluated in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(res.stdout, "report: "+filepath.Join(out1, "report.html")) {
		t.Errorf("stdout does not say where the report is:\n%s", res.stdout)
	}

	m := readMetrics(t, filepath.Join(out1, "metrics.json"))
	if v := dig(t, m, "schema_version"); v != 1.0 {
		t.Errorf("schema_version %v", v)
	}
	acc := dig(t, m, "classification.accuracy").(float64)
	if dig(t, m, "classification.n") != 300.0 || acc < 0 || acc > 1 {
		t.Errorf("classification %v", m["classification"])
	}
	if dig(t, m, "calibration.num_bins") != 20.0 || len(dig(t, m, "calibration.bins").([]any)) != 20 {
		t.Errorf("calibration %v", m["calibration"])
	}
	sets := strings.Split(ood, ",")
	for _, set := range sets {
		for _, score := range []string{"logqx", "maxprob", "gradnorm"} {
			for _, k := range []string{"auroc", "aupr_in", "aupr_out", "fpr95"} {
				if v := dig(t, m, "ood."+set+"."+score+"."+k).(float64); v < 0 || v > 1 {
					t.Errorf("ood.%s.%s.%s = %v", set, score, k, v)
				}
			}
			if dig(t, m, "ood."+set+"."+score+".n_in") != 300.0 || dig(t, m, "ood."+set+"."+score+".n_out") != 200.0 {
				t.Errorf("ood.%s.%s counts %v", set, score, dig(t, m, "ood."+set+"."+score))
			}
		}
	}
	if rows := dig(t, m, "robustness").([]any); len(rows) != (3+2)*2 {
		t.Errorf("%d robustness rows, want 10", len(rows))
	}
	checks := dig(t, m, "robustness_checks").([]any)
	if len(checks) != 3 {
		t.Errorf("robustness checks %v", checks)
	}
	for _, c := range checks {
		if c.(map[string]any)["passed"] != true {
			t.Errorf("PGD sanity check failed: %v", c)
		}
	}
	if dig(t, m, "training.records").(float64) < 1 || dig(t, m, "config.run.model") != "wrn-10-1" {
		t.Errorf("training %v, config.run.model %v", m["training"], dig(t, m, "config.run.model"))
	}
	for _, p := range dig(t, m, "plots").([]any) {
		f := p.(map[string]any)["file"].(string)
		if _, err := os.Stat(filepath.Join(out1, f)); err != nil {
			t.Errorf("plot file: %v", err)
		}
	}

	t.Run("numpy and sklearn read the logits", func(t *testing.T) { checkWithSklearn(t, filepath.Join(out1, "logits"), m, sets) })
	t.Run("report renders", func(t *testing.T) { checkReportRenders(t, filepath.Join(out1, "report.html")) })

	t.Run("rescoring from logits gives the same metrics", func(t *testing.T) {
		out2 := filepath.Join(tmp, "out2")
		res := runCLI(t, bin, nil, "eval", "--logits", filepath.Join(out1, "logits"), "--out", out2)
		if res.code != 0 {
			t.Fatalf("eval --logits exited %d\n%s", res.code, res.stderr)
		}
		m2 := readMetrics(t, filepath.Join(out2, "metrics.json"))
		delete(m, "created")
		delete(m2, "created")
		if !reflect.DeepEqual(m, m2) {
			a, _ := json.MarshalIndent(m, "", " ")
			b, _ := json.MarshalIndent(m2, "", " ")
			t.Errorf("metrics differ after --logits:\n%s\n---\n%s", a, b)
		}
	})

	t.Run("mismatched checkpoint", func(t *testing.T) {
		best, err := model.ResolveCheckpoint(cfg.Out, true)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ptfile.Read(best)
		if err != nil {
			t.Fatal(err)
		}
		root := v.(*ptfile.OrderedDict)
		text, _ := root.Get("config")
		// The weights stay a WideResNet-10-1's; the config now claims a WideResNet-16-1.
		root.Set("config", strings.Replace(text.(string), `"model":"wrn-10-1"`, `"model":"wrn-16-1"`, 1))
		bad := filepath.Join(tmp, "other-shape.pt")
		if err := ptfile.Write(bad, root); err != nil {
			t.Fatal(err)
		}
		res := runCLI(t, bin, nil, "eval", "--checkpoint", bad, "--out", filepath.Join(tmp, "bad1"), "--suites", "classify")
		if res.code != 2 || !strings.Contains(res.stderr, "--checkpoint: "+bad) || !strings.Contains(res.stderr, "checkpoint lacks parameter") {
			t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
		}
		if shared != "" {
			res := runCLI(t, bin, env, "eval", "--checkpoint", cfg.Out, "--test", "cifar10", "--out", filepath.Join(tmp, "bad2"), "--suites", "classify")
			if res.code != 2 || !strings.Contains(res.stderr, "--test: cifar10 has 3-channel images, but the model") {
				t.Errorf("3-channel test set for a 1-channel model: exit %d, stderr:\n%s", res.code, res.stderr)
			}
		}
	})

	t.Run("damaged logits", func(t *testing.T) {
		for _, tc := range []struct {
			file  string
			write func(path string) error
			want  string
		}{
			{"test_labels.npy", func(p string) error { return npy.WriteInt64(p, make([]int64, 299), 299) }, "has 300 rows but labels %s has 299"},
			{"interp.npy", func(p string) error { return npy.WriteFloat32(p, make([]float32, 1990), 199, 10) }, "%s holds 199×10 logits, the index says 200×10"},
		} {
			dir := filepath.Join(tmp, "damaged-"+tc.file)
			if err := os.CopyFS(dir, os.DirFS(filepath.Join(out1, "logits"))); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, tc.file)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(p); err != nil {
				t.Fatal(err)
			}
			res := runCLI(t, bin, nil, "eval", "--logits", dir, "--out", dir+"-out")
			if want := fmt.Sprintf(tc.want, p); res.code != 2 || !strings.Contains(res.stderr, "--logits: ") || !strings.Contains(res.stderr, want) {
				t.Errorf("%s: exit %d, stderr:\n%s\nwant it to contain %q", tc.file, res.code, res.stderr, want)
			}
		}
	})

	t.Run("unusable OOD set", func(t *testing.T) {
		// Two images of different sizes: no single shape to convert from.
		folder := filepath.Join(tmp, "mixed", "things")
		if err := os.MkdirAll(folder, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, size := range []int{20, 24} {
			img := image.NewGray(image.Rect(0, 0, size, size))
			img.SetGray(1, 1, color.Gray{Y: 200})
			var b bytes.Buffer
			if err := png.Encode(&b, img); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(folder, fmt.Sprintf("%d.png", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res := runCLI(t, bin, nil, "eval", "--checkpoint", cfg.Out, "--out", filepath.Join(tmp, "bad3"), "--suites", "ood",
			"--ood", "mixed=folder:"+filepath.Join(tmp, "mixed"))
		if res.code != 2 || !strings.Contains(res.stderr, "--ood: set mixed: ") || !strings.Contains(res.stderr, "images in a folder must share one size") {
			t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--logits", out1, "--out", tmp, "--ood", "mnist"}, "--ood cannot be used with --logits"},
			{[]string{"--checkpoint", cfg.Out, "--pgd-linf-eps", "0,2"}, "--pgd-linf-eps: PGD linf: ε 2 exceeds the pixel range"},
			{[]string{"--checkpoint", cfg.Out, "--pgd-l2-eps", "0,-1"}, "--pgd-l2-eps: \"-1\" is not a budget"},
			{[]string{"--checkpoint", cfg.Out, "--suites", "classify,speed"}, "--suites: unknown suite \"speed\""},
			{[]string{"--checkpoint", filepath.Join(tmp, "nowhere")}, "--checkpoint: stat " + filepath.Join(tmp, "nowhere") + ": no such file"},
			{[]string{"--out", tmp}, "eval needs --checkpoint"},
			{[]string{"--logits", filepath.Join(out1, "logits"), "--out", filepath.Join(tmp, "s"), "--samples", filepath.Join(tmp, "no-samples")},
				"--samples: stat " + filepath.Join(tmp, "no-samples") + ": no such file"},
		} {
			res := runCLI(t, bin, nil, append([]string{"eval"}, tc.args...)...)
			if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("%v: exit %d, stderr:\n%s\nwant %q", tc.args, res.code, res.stderr, tc.want)
			}
		}
		if _, err := os.Stat(filepath.Join(tmp, "nowhere")); err == nil {
			t.Error("a missing --checkpoint left its default output folder behind")
		}
	})
}

// checkWithSklearn reads the exported .npy files with numpy and recomputes accuracy and the OOD
// metrics of the log q(x) score with scikit-learn.
func checkWithSklearn(t *testing.T, dir string, m map[string]any, sets []string) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, sklearn").Run(); err != nil {
		t.Skip("Debian's python3-numpy and python3-sklearn are needed")
	}
	script := `
import json, sys
import numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score, roc_curve
d = sys.argv[1]
def lse(x):
    x = x.astype(np.float64)
    m = x.max(1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]
test = np.load(d + "/test.npy"); y = np.load(d + "/test_labels.npy")
assert test.dtype == np.float32 and test.ndim == 2 and y.dtype == np.int64 and y.shape == (test.shape[0],)
out = {"accuracy": float((test.argmax(1) == y).mean()), "n": int(test.shape[0]), "ood": {}}
s_in = lse(test)
for name in sys.argv[2:]:
    o = np.load(d + "/" + name + ".npy")
    s_out = lse(o)
    s = np.concatenate([s_in, s_out]); lab = np.concatenate([np.ones_like(s_in), np.zeros_like(s_out)])
    fpr, tpr, _ = roc_curve(lab, s)
    out["ood"][name] = {"auroc": roc_auc_score(lab, s), "aupr_in": average_precision_score(lab, s),
        "aupr_out": average_precision_score(1 - lab, -s), "fpr95": float(fpr[np.searchsorted(tpr, 0.95)])}
print(json.dumps(out))
`
	out, err := exec.Command(py, append([]string{"-c", script, dir}, sets...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got struct {
		Accuracy float64
		N        int
		OOD      map[string]map[string]float64
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %s: %v", out, err)
	}
	if acc := dig(t, m, "classification.accuracy").(float64); got.Accuracy != acc || got.N != 300 {
		t.Errorf("numpy accuracy %v on %d images, metrics.json %v", got.Accuracy, got.N, acc)
	}
	for _, set := range sets {
		for k, want := range got.OOD[set] {
			if v := dig(t, m, "ood."+set+".logqx."+k).(float64); math.Abs(v-want) > 1e-9 {
				t.Errorf("ood.%s.logqx.%s = %v, scikit-learn %v", set, k, v, want)
			}
		}
	}
}

// checkReportRenders opens report.html in headless Chromium and checks the tables and images are
// in the rendered page.
func checkReportRenders(t *testing.T, path string) {
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:|//|file:)`).Find(page); m != nil {
		t.Errorf("report references an external resource: %s", m)
	}
	inline := strings.Count(string(page), `src="data:image/png;base64,`)
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium not installed")
	}
	probe := strings.Replace(string(page), "</body>", `<script>
addEventListener('load', () => {
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  const d = document.createElement('div');
  d.id = 'render-check';
  d.textContent = 'decoded ' + ok + '/' + document.images.length;
  document.body.appendChild(d);
});
</script></body>`, 1)
	probePath := filepath.Join(t.TempDir(), "probe.html")
	if err := os.WriteFile(probePath, []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
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
	want := fmt.Sprintf("decoded %d/%d", inline, inline)
	if !strings.Contains(string(dom), `id="render-check">`+want+"<") || inline < 10 {
		t.Errorf("rendered page: want %q with %d inline images; render check: %s", want, inline, regexp.MustCompile(`id="render-check">[^<]*`).Find(dom))
	}
	for _, id := range []string{"config-table", "training-table", "classification-table", "calibration-table", "ood-table",
		"robustness-table-linf", "robustness-table-l2", "robustness-checks"} {
		if !strings.Contains(string(dom), `id="`+id+`"`) {
			t.Errorf("rendered page lacks #%s", id)
		}
	}
}
