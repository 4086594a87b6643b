package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/npy"
	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// TestSampleCommand: a tiny jem run and a tiny CE run, then `sample` end to end: conditional
// from the buffer with classifier-feature metrics, unconditional from noise, and the bad inputs.
func TestSampleCommand(t *testing.T) {
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, filepath.Join(tmp, "fashion"), 200, 100)
	bin := buildCLI(t)
	train := func(objective string) string {
		cfg := trainer.Defaults()
		cfg.Dataset, cfg.Model, cfg.Norm, cfg.ValSize, cfg.BatchSize = ds, "wrn-10-1", "none", 20, 20
		cfg.Objective, cfg.Steps, cfg.Threads, cfg.Workers, cfg.LogEvery = objective, 4, 2, 1, 2
		cfg.BufferSize, cfg.SGLDSteps, cfg.SGLDCond, cfg.TensorBoard = 50, 2, true, false
		cfg.Out = filepath.Join(tmp, objective)
		if _, err := trainer.Train(context.Background(), cfg, trainer.Options{SkipTest: true}); err != nil {
			t.Fatal(err)
		}
		return cfg.Out
	}
	jem, ce := train("jem"), train("ce")

	out := filepath.Join(tmp, "samples")
	// An evaluation's metrics.json already there keeps its sections.
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "metrics.json"), []byte(`{"classification": {"accuracy": 0.5}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, bin, nil, "sample", "--checkpoint", jem, "--out", out, "--class", "all", "--from-buffer", "--n", "3",
		"--steps", "2", "--rounds", "2", "--top", "2", "--feature-checkpoint", ce, "--real-n", "40", "--threads", "2")
	if res.code != 0 {
		t.Fatalf("sample exited %d\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "IS (classifier)") || !strings.Contains(res.stdout, "FD (classifier features)") || strings.Contains(res.stdout, "FID") {
		t.Errorf("the metrics are not labelled as classifier-feature ones:\n%s", res.stdout)
	}
	f, err := os.Open(filepath.Join(out, "samples.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("samples.png: %v", err)
	}
	// 10 rows of 3 samples of 28×28 with a 1-pixel border.
	if b := img.Bounds(); b.Dx() != 3*29+1 || b.Dy() != 10*29+1 {
		t.Errorf("grid is %v, want one row per class of 3", b)
	}
	a, err := npy.Read(filepath.Join(out, "samples.npy"))
	if err != nil {
		t.Fatal(err)
	}
	x, ok := a.Data.([]float32)
	if !ok || fmt.Sprint(a.Shape) != "[30 1 28 28]" || len(x) != 30*28*28 {
		t.Fatalf("samples.npy: %s shape %v", a.DType, a.Shape)
	}
	// sample.json gives the samples' range and the share of values off the data's [-1, 1].
	var info struct {
		Min, Max     float64
		OutsideRange float64 `json:"outside_data_range"`
	}
	if b, err := os.ReadFile(filepath.Join(out, "sample.json")); err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("sample.json: %v", err)
	}
	lo, hi, off := math.Inf(1), math.Inf(-1), 0
	for _, v := range x {
		lo, hi = min(lo, float64(v)), max(hi, float64(v))
		if v < -1 || v > 1 {
			off++
		}
	}
	if info.Min != lo || info.Max != hi || math.Abs(info.OutsideRange-float64(off)/float64(len(x))) > 1e-12 {
		t.Errorf("sample.json range [%g, %g], %g outside; samples.npy [%g, %g], %g", info.Min, info.Max, info.OutsideRange, lo, hi, float64(off)/float64(len(x)))
	}
	a, err = npy.Read(filepath.Join(out, "labels.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if labels, ok := a.Data.([]int64); !ok || fmt.Sprint(a.Shape) != "[30]" || labels[0] != 0 || labels[3] != 1 || labels[29] != 9 {
		t.Fatalf("labels.npy: %s shape %v %v", a.DType, a.Shape, a.Data)
	}
	if _, err := os.Stat(filepath.Join(out, "top.png")); err != nil {
		t.Error(err)
	}
	m := readMetrics(t, filepath.Join(out, "metrics.json"))
	if v := dig(t, m, "classification.accuracy"); v != 0.5 {
		t.Errorf("the evaluation's section was lost: %v", m)
	}
	if v, _ := dig(t, m, "generation.feature_net").(string); !strings.HasPrefix(v, "classifier:") {
		t.Errorf("generation.feature_net %q", v)
	}
	if v, _ := dig(t, m, "generation.n").(float64); v != 30 {
		t.Errorf("generation.n %v", v)
	}
	if v, _ := dig(t, m, "generation.is_mean").(float64); !(v >= 1 && v <= 10) {
		t.Errorf("IS %v outside [1, classes]", v)
	}
	if v, _ := dig(t, m, "generation.fd").(float64); !(v > 0) {
		t.Errorf("FD %v", v)
	}

	// Unconditional from noise: a square grid, labels the model's predictions.
	out2 := filepath.Join(tmp, "uncond")
	res = runCLI(t, bin, nil, "sample", "--checkpoint", ce, "--out", out2, "--n", "5", "--steps", "3", "--threads", "2")
	if res.code != 0 {
		t.Fatalf("unconditional sample exited %d\n%s", res.code, res.stderr)
	}
	if a, err := npy.Read(filepath.Join(out2, "samples.npy")); err != nil || a.Shape[0] != 5 {
		t.Fatalf("samples.npy %v", err)
	}

	before, _ := os.ReadFile(filepath.Join(out, "samples.npy"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--checkpoint", ce, "--from-buffer"}, "--from-buffer"},
		{[]string{"--checkpoint", jem, "--steps", "0"}, "--steps"},
		{[]string{"--checkpoint", jem, "--steps", "-2"}, "--steps"},
		{[]string{"--checkpoint", jem, "--n", "0"}, "--n"},
		{[]string{"--checkpoint", jem, "--rounds", "0"}, "--rounds"},
		{[]string{"--checkpoint", jem, "--sgld-lr", "-1"}, "--sgld-lr"},
		{[]string{"--checkpoint", jem, "--batch-size", "0"}, "--batch-size"},
		{[]string{"--checkpoint", jem, "--class", "12"}, "--class"},
		{[]string{"--checkpoint", jem, "--class", "dog"}, "--class"},
		{[]string{"--checkpoint", jem, "--fid-weights", filepath.Join(ce, "config.json")}, "config.json"},
		{[]string{"--checkpoint", jem, "--fid-weights", filepath.Join(ce, "checkpoints", "best.pt")}, "best.pt"},
		{[]string{"--checkpoint", jem, "--from-buffer", "--class", "all", "--n", "6"}, "--n"},
		{[]string{"--checkpoint", filepath.Join(tmp, "nothing")}, "--checkpoint"},
	} {
		res := runCLI(t, bin, nil, append([]string{"sample", "--out", out}, tc.args...)...)
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) || strings.Contains(res.stderr, "panic") {
			t.Errorf("%v: exit %d, want 2 with %q in:\n%s", tc.args, res.code, tc.want, res.stderr)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(out, "samples.npy")); string(after) != string(before) {
		t.Error("a refused command changed the samples already written")
	}
}
