package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// TestCompareCommand trains two seeds of a tiny model in an experiment's layout
// (OUT/RUN/seed-N, evaluated into seed-N/eval by the built binary) beside a third seed folder
// without an evaluation, and compares the experiment with the binary: the page exists, averages the two
// seeds and shows the third as missing; a folder without any evaluation is refused by name.
func TestCompareCommand(t *testing.T) {
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "fashion"), 0o755); err != nil {
		t.Fatal(err)
	}
	ds := testutil.SmallFashion(t, filepath.Join(tmp, "fashion"), 300, 200)
	bin := filepath.Join(tmp, "hdge-torch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exp := filepath.Join(tmp, "exp")
	// seed-3 stands for a seed whose training has not finished: no evaluation yet.
	if err := os.MkdirAll(filepath.Join(exp, "hdge", "seed-3"), 0o755); err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 2; seed++ {
		cfg := trainer.Defaults()
		cfg.Dataset, cfg.Model, cfg.ValSize, cfg.BatchSize, cfg.QueueSize = ds, "wrn-10-1", 50, 32, 64
		cfg.Steps, cfg.Threads, cfg.Workers, cfg.LogEvery, cfg.Warmup, cfg.Seed = 15, 2, 1, 5, 5, seed
		cfg.Out = filepath.Join(exp, "hdge", fmt.Sprintf("seed-%d", seed))
		if _, err := trainer.Train(context.Background(), cfg, trainer.Options{}); err != nil {
			t.Fatal(err)
		}
		res := runCLI(t, bin, nil, "eval", "--checkpoint", cfg.Out, "--out", filepath.Join(cfg.Out, "eval"),
			"--ood", "uniform,gaussian", "--ood-limit", "100", "--pgd-limit", "20", "--pgd-steps", "2",
			"--pgd-linf-eps", "0,8/255", "--pgd-l2-eps", "0,0.5", "--threads", "2", "--no-progress")
		if res.code != 0 {
			t.Fatalf("eval exited %d\n%s", res.code, res.stderr)
		}
	}
	out := filepath.Join(tmp, "cmp")
	res := runCLI(t, bin, nil, "compare", exp, "--out", out)
	if res.code != 0 {
		t.Fatalf("compare exited %d\n%s", res.code, res.stderr)
	}
	page, err := os.ReadFile(filepath.Join(out, "compare.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`id="summary-table"`, "<th>hdge</th>", " ± ", "AUROC uniform, log q(x)", "PGD-2 L∞ ε=8/255 accuracy",
		`id="calibration"`, `id="ood"`, `id="robustness"`, `id="training"`, "seed-3", "2 of 3", "hdge (2 seeds)"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("compare.html lacks %q", s)
		}
	}
	if pngs, _ := filepath.Glob(filepath.Join(out, "*.png")); len(pngs) < 8 {
		t.Errorf("%d PNGs written", len(pngs))
	}
	if res := runCLI(t, bin, nil, "compare", filepath.Join(tmp, "fashion"), "--out", out); res.code != 2 ||
		!strings.Contains(res.stderr, filepath.Join(tmp, "fashion")+" holds no evaluation") {
		t.Errorf("compare of a data folder: exit %d\n%s", res.code, res.stderr)
	}
	if res := runCLI(t, bin, nil, "compare", exp); res.code != 2 || !strings.Contains(res.stderr, "--out") {
		t.Errorf("compare without --out: exit %d\n%s", res.code, res.stderr)
	}
}
