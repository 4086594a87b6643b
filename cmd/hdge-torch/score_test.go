package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/eval/score"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
	"github.com/urfave/cli/v2"
)

// refPython is Debian's interpreter, which has torch 1.13.
const refPython = "/usr/bin/python3"

func writePNG(t *testing.T, path string, im image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func jsonLines(t *testing.T, s string) []score.Row {
	t.Helper()
	var rows []score.Row
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var r score.Row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

func readThresholdsFile(t *testing.T, path string) []score.Threshold {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Thresholds []score.Threshold }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Thresholds
}

// TestScoreExport trains a tiny HDGE model (and a two-step CE one) and checks, with the built
// binary: score's CSV and JSON lines, a damaged image reported by name while the others are
// scored, a converted image stated, the threshold set on the validation split, cached and
// reused; pxsim in score and eval and its refusal for a CE model; the TensorBoard scalars; and
// export to the released layout, loaded strictly by the released model definition in PyTorch,
// whose own checkpoint eval and score read back with the same logits.
func TestScoreExport(t *testing.T) {
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, filepath.Join(tmp, "fashion"), 400, 300)
	bin := filepath.Join(tmp, "hdge-torch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := trainer.Defaults()
	cfg.Dataset, cfg.Model, cfg.ValSize, cfg.BatchSize, cfg.QueueSize, cfg.Noise = ds, "wrn-10-1", 50, 32, 128, 0
	cfg.Steps, cfg.Threads, cfg.Workers, cfg.LogEvery, cfg.Warmup = 12, 2, 1, 4, 4
	cfg.Out = filepath.Join(tmp, "run")
	if _, err := trainer.Train(context.Background(), cfg, trainer.Options{}); err != nil {
		t.Fatal(err)
	}
	ce := cfg
	ce.Objective, ce.Steps, ce.TensorBoard, ce.Out = "ce", 2, false, filepath.Join(tmp, "run-ce")
	if _, err := trainer.Train(context.Background(), ce, trainer.Options{}); err != nil {
		t.Fatal(err)
	}

	t.Run("tensorboard", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(cfg.Out, "tensorboard", "events.out.tfevents.*"))
		if len(files) != 1 {
			t.Fatalf("event files %v", files)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		var tags []string
		for _, tag := range []string{"loss", "loss_ce", "loss_gen", "lr", "img_per_s", "data_wait_ms", "val_acc", "test_acc"} {
			if !bytes.Contains(b, []byte("\n"+string(rune(len(tag)))+tag)) {
				tags = append(tags, tag)
			}
		}
		if len(tags) > 0 {
			t.Errorf("TensorBoard file lacks the scalars %v", tags)
		}
		if _, err := os.Stat(filepath.Join(ce.Out, "tensorboard")); !os.IsNotExist(err) {
			t.Errorf("--tensorboard=false still wrote %s (%v)", filepath.Join(ce.Out, "tensorboard"), err)
		}
	})

	in := filepath.Join(tmp, "in")
	if err := os.MkdirAll(filepath.Join(in, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	grey := image.NewGray(image.Rect(0, 0, 28, 28))
	rgb := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for y := range 32 {
		for x := range 32 {
			if x < 28 && y < 28 {
				grey.SetGray(x, y, color.Gray{uint8(9 * (x + y))})
			}
			rgb.SetNRGBA(x, y, color.NRGBA{uint8(8 * x), uint8(8 * y), 90, 255})
		}
	}
	writePNG(t, filepath.Join(in, "a.png"), grey)
	writePNG(t, filepath.Join(in, "sub", "rgb.png"), rgb)
	if err := os.WriteFile(filepath.Join(in, "bad.png"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "notes.txt"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	pix := make([]uint8, 3*28*28)
	for i := range pix {
		pix[i] = uint8(i * 7)
	}
	imgs := filepath.Join(tmp, "imgs.npy")
	if err := npy.WriteUint8(imgs, pix, 3, 28, 28); err != nil {
		t.Fatal(err)
	}
	thrFile := filepath.Join(cfg.Out, score.ThresholdsFile)

	// First use: the threshold is set on the 50 validation images and cached.
	res := runCLI(t, bin, nil, "score", "--checkpoint", cfg.Out, "--threads", "2", "--no-progress", in, imgs)
	if res.code != 1 || !strings.Contains(res.stderr, "1 of 6 images could not be scored") {
		t.Fatalf("score with a damaged image: exit %d\n%s", res.code, res.stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(res.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, res.stdout)
	}
	if strings.Join(recs[0], ",") != "input,status,class,class_name,maxprob,logqx,score,score_value,threshold,decision,converted,error" {
		t.Errorf("header %v", recs[0])
	}
	names := []string{filepath.Join(in, "a.png"), filepath.Join(in, "bad.png"), filepath.Join(in, "sub", "rgb.png"), imgs + "#0", imgs + "#1", imgs + "#2"}
	if len(recs) != 7 {
		t.Fatalf("%d rows, want a header and 6:\n%s", len(recs), res.stdout)
	}
	thrs := readThresholdsFile(t, thrFile)
	if len(thrs) != 1 || thrs[0].Score != "logqx" || thrs[0].TPR != 0.95 || thrs[0].N != 50 || thrs[0].Achieved < 0.95 {
		t.Fatalf("thresholds.json: %+v", thrs)
	}
	csvLogQX := map[string]float64{}
	for i, r := range recs[1:] {
		if r[0] != names[i] {
			t.Errorf("row %d is %s, want %s", i, r[0], names[i])
		}
		if r[0] == names[1] {
			if r[1] != "error" || !strings.Contains(r[11], "not a readable PNG or JPEG") {
				t.Errorf("damaged image row %v", r)
			}
			continue
		}
		v, _ := strconv.ParseFloat(r[7], 64)
		thr, _ := strconv.ParseFloat(r[8], 64)
		p, _ := strconv.ParseFloat(r[4], 64)
		csvLogQX[r[0]], _ = strconv.ParseFloat(r[5], 64)
		want := map[bool]string{true: "in", false: "out"}[v >= thr]
		if r[1] != "ok" || r[6] != "logqx" || r[7] != r[5] || thr != thrs[0].Value || r[9] != want || p <= 0.1 || p > 1 || r[3] == "" {
			t.Errorf("row %v (threshold %g)", r, thrs[0].Value)
		}
		if conv := map[bool]string{true: "3x32x32 to 1x28x28", false: ""}[r[0] == names[2]]; r[10] != conv {
			t.Errorf("%s: converted %q, want %q", r[0], r[10], conv)
		}
	}
	cached, _ := os.ReadFile(thrFile)

	// Second use: JSON lines into a file, the cached threshold, the same numbers.
	out := filepath.Join(tmp, "scores.jsonl")
	res = runCLI(t, bin, nil, "score", "--checkpoint", cfg.Out, "--format", "jsonl", "--out", out, "--threads", "2", filepath.Join(in, "a.png"), imgs)
	if res.code != 0 || !strings.Contains(res.stderr, "cache") {
		t.Fatalf("score --format jsonl: exit %d\n%s", res.code, res.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rows := jsonLines(t, string(b))
	if len(rows) != 4 {
		t.Fatalf("%d JSON rows", len(rows))
	}
	for _, r := range rows {
		if r.Status != "ok" || r.LogQX == nil || math.Abs(*r.LogQX-csvLogQX[r.Input]) > 1e-5*math.Max(1, math.Abs(*r.LogQX)) || *r.Threshold != thrs[0].Value {
			t.Errorf("JSON row %+v, CSV logqx %g", r, csvLogQX[r.Input])
		}
	}
	if now, _ := os.ReadFile(thrFile); !bytes.Equal(now, cached) {
		t.Errorf("the cached threshold was set again:\n%s\n%s", cached, now)
	}

	t.Run("pxsim", func(t *testing.T) {
		res := runCLI(t, bin, nil, "score", "--checkpoint", cfg.Out, "--score", "pxsim", "--format", "jsonl", "--threads", "2", imgs)
		if res.code != 0 {
			t.Fatalf("score --score pxsim: exit %d\n%s", res.code, res.stderr)
		}
		for _, r := range jsonLines(t, res.stdout) {
			if r.Score != "pxsim" || r.ScoreValue == nil || math.IsNaN(*r.ScoreValue) {
				t.Errorf("pxsim row %+v", r)
			}
		}
		if thrs := readThresholdsFile(t, thrFile); len(thrs) != 2 || thrs[1].Score != "pxsim" {
			t.Errorf("thresholds after pxsim: %+v", thrs)
		}
		res = runCLI(t, bin, nil, "score", "--checkpoint", ce.Out, "--score", "pxsim", imgs)
		if res.code != 2 || !strings.Contains(res.stderr, "--score: pxsim needs HDGE's queue") || !strings.Contains(res.stderr, ce.Out) {
			t.Errorf("pxsim of a CE model: exit %d\n%s", res.code, res.stderr)
		}
		e := filepath.Join(tmp, "eval-pxsim")
		res = runCLI(t, bin, nil, "eval", "--checkpoint", cfg.Out, "--out", e, "--suites", "ood", "--ood", "uniform", "--ood-limit", "100",
			"--scores", "logqx,pxsim", "--threads", "2", "--no-progress")
		if res.code != 0 {
			t.Fatalf("eval --scores pxsim: exit %d\n%s", res.code, res.stderr)
		}
		if v := dig(t, readMetrics(t, filepath.Join(e, "metrics.json")), "ood.uniform.pxsim.auroc").(float64); v < 0 || v > 1 {
			t.Errorf("pxsim AUROC %v", v)
		}
		if _, err := os.Stat(filepath.Join(e, "logits", "queue.npy")); err != nil {
			t.Error(err)
		}
		cmp := filepath.Join(tmp, "compare-pxsim")
		if res := runCLI(t, bin, nil, "compare", e, "--out", cmp); res.code != 0 {
			t.Errorf("compare of an evaluation with pxsim: exit %d\n%s", res.code, res.stderr)
		} else if page, _ := os.ReadFile(filepath.Join(cmp, "compare.html")); !bytes.Contains(page, []byte("pxsim")) {
			t.Errorf("the compare page does not show pxsim")
		}
		res = runCLI(t, bin, nil, "eval", "--checkpoint", ce.Out, "--out", filepath.Join(tmp, "eval-ce"), "--suites", "ood", "--ood", "uniform",
			"--scores", "pxsim", "--no-progress")
		if res.code != 2 || !strings.Contains(res.stderr, "--scores: pxsim needs HDGE's queue") || !strings.Contains(res.stderr, ce.Out) {
			t.Errorf("eval pxsim of a CE model: exit %d\n%s", res.code, res.stderr)
		}
	})

	t.Run("export released", func(t *testing.T) {
		if err := exec.Command(refPython, "-c", "import torch").Run(); err != nil {
			t.Skip("Debian's python3-torch is not installed; `make deps` installs it")
		}
		rel := filepath.Join(tmp, "released.pt")
		res := runCLI(t, bin, nil, "export", "--checkpoint", cfg.Out, "--format", "released", "--out", rel)
		if res.code != 0 || !strings.Contains(res.stdout, "queue, no replay buffer in the run: JEM's fresh one") {
			t.Fatalf("export: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		pyLogits, resaved := filepath.Join(tmp, "py_logits.npy"), filepath.Join(tmp, "resaved.pt")
		py := exec.Command(refPython, "testdata/released_roundtrip.py", rel, imgs, pyLogits, resaved, "10", "1", "batch", "1", "10", "128")
		if out, err := py.CombinedOutput(); err != nil {
			t.Fatalf("the released model definition refuses the export: %v\n%s", err, out)
		} else {
			t.Logf("PyTorch: %s", strings.TrimSpace(string(out)))
		}
		a, err := npy.Read(pyLogits)
		if err != nil {
			t.Fatal(err)
		}
		lg, _ := a.Float32s()
		pyLQX := make([]float64, 3)
		for i := range pyLQX {
			m, s := math.Inf(-1), 0.0
			for _, v := range lg[i*10 : (i+1)*10] {
				m = math.Max(m, float64(v))
			}
			for _, v := range lg[i*10 : (i+1)*10] {
				s += math.Exp(float64(v) - m)
			}
			pyLQX[i] = m + math.Log(s)
		}
		for i := range 3 {
			if go_ := csvLogQX[imgs+"#"+strconv.Itoa(i)]; math.Abs(go_-pyLQX[i]) > 1e-4*math.Max(1, math.Abs(go_)) {
				t.Errorf("image %d: log q(x) %g in hdge-torch, %g in the released model", i, go_, pyLQX[i])
			}
		}
		// Back: PyTorch's own save of the released model, read by score and eval.
		res = runCLI(t, bin, nil, "score", "--checkpoint", resaved, "--dataset", ds, "--threads", "2", imgs)
		if res.code != 2 || !strings.Contains(res.stderr, "--threshold") {
			t.Errorf("score of a released file without --threshold: exit %d\n%s", res.code, res.stderr)
		}
		res = runCLI(t, bin, nil, "score", "--checkpoint", resaved, "--dataset", ds, "--threshold", "0", "--format", "jsonl", "--threads", "2", imgs)
		if res.code != 0 {
			t.Fatalf("score of the released file: exit %d\n%s", res.code, res.stderr)
		}
		for i, r := range jsonLines(t, res.stdout) {
			if math.Abs(*r.LogQX-pyLQX[i]) > 1e-4*math.Max(1, math.Abs(pyLQX[i])) || r.Converted != "" {
				t.Errorf("released → hdge-torch, image %d: log q(x) %g, PyTorch %g (converted %q)", i, *r.LogQX, pyLQX[i], r.Converted)
			}
		}
		if !strings.Contains(res.stderr, "--model wrn-10-1 and --norm batch from the tensors' shapes") {
			t.Errorf("score does not say what it inferred:\n%s", res.stderr)
		}
		accOf := func(ck string, extra ...string) float64 {
			e := filepath.Join(tmp, "eval-"+filepath.Base(ck))
			args := append([]string{"eval", "--checkpoint", ck, "--out", e, "--suites", "classify", "--threads", "2", "--no-progress"}, extra...)
			res := runCLI(t, bin, nil, args...)
			if res.code != 0 {
				t.Fatalf("eval %s: exit %d\n%s", ck, res.code, res.stderr)
			}
			return dig(t, readMetrics(t, filepath.Join(e, "metrics.json")), "classification.accuracy").(float64)
		}
		if res := runCLI(t, bin, nil, "eval", "--checkpoint", resaved, "--out", filepath.Join(tmp, "e-no-test"), "--suites", "classify"); res.code != 2 || !strings.Contains(res.stderr, "--test") {
			t.Errorf("eval of a released file without --test: exit %d\n%s", res.code, res.stderr)
		}
		if a, b := accOf(cfg.Out), accOf(resaved, "--test", ds); a != b {
			t.Errorf("test accuracy %g from the run, %g from the round trip through the released layout", a, b)
		}
	})
}

// TestScoreFlagAfterInputs: a flag written after the inputs is refused by name instead of being
// scored as a file (the command line stops reading flags at the first input).
func TestScoreFlagAfterInputs(t *testing.T) {
	app := &cli.App{Name: "hdge-torch", Commands: []*cli.Command{scoreCommand()}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.RunContext(context.Background(), []string{"hdge-torch", "score", "--checkpoint", "runs/x", "a.png", "--out", "s.csv"})
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 2 || !strings.Contains(err.Error(), "--out comes after the inputs") {
		t.Fatalf("err = %v, want exit 2 naming --out", err)
	}
}
