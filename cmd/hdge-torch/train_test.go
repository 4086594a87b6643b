package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/trainer"
)

func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hdge-torch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestTrainFlagErrors: bad values are refused before any work, naming the flag, with status 2
// (or 1 for things only found when reading data).
func TestTrainFlagErrors(t *testing.T) {
	bin := buildCLI(t)
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, tmp, 100, 50)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--objective", "vae"}, 2, "--objective"},
		{[]string{"--contrast", "paper"}, 2, "--contrast"},
		{[]string{"--model", "resnet-34"}, 2, "--model"},
		{[]string{"--lr", "-1"}, 2, "--lr"},
		{[]string{"--alpha", "2"}, 2, "--alpha"},
		{[]string{"--decay-epochs", "1,x"}, 2, "--decay-epochs"},
		{[]string{"--device", "tpu:0"}, 2, "--device"},
		{[]string{"--optimizer", "lion"}, 2, "--optimizer"},
		{[]string{"--log-format", "xml"}, 2, "--log-format"},
		{[]string{"--dataset", "nosuchset"}, 1, "--dataset"},
		{[]string{"--dataset", "idx:" + filepath.Join(tmp, "missing")}, 1, "missing"},
		{[]string{"--resume", filepath.Join(tmp, "no-run")}, 2, "--resume"},
		{[]string{"--val-size", "100000", "--dataset", ds}, 1, "--val-size"},
		{[]string{"positional"}, 2, "no arguments"},
		{[]string{"--channels-last", "sideways"}, 2, `--channels-last: unknown value "sideways"`},
		// --channels-last was a bool flag: bare, it now takes a value, and the error says how.
		{[]string{"--channels-last", "--skip-test"}, 2, "write --channels-last=true"},
		{[]string{"--channels-last"}, 2, "write --channels-last=true"},
		{[]string{"--regime", "gpu"}, 2, `--regime: unknown value "gpu"`},
		{[]string{"--regime", "paper", "--resume", filepath.Join(tmp, "out")}, 2, "--regime cannot be used with --resume"},
	}
	for _, tc := range cases {
		args := append([]string{"train", "--out", filepath.Join(tmp, "out")}, tc.args...)
		res := runCLI(t, bin, nil, args...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q in:\n%s", tc.args, res.code, tc.code, tc.want, res.stderr)
		}
		if strings.Contains(res.stderr, "panic") || strings.Contains(res.stderr, "goroutine ") {
			t.Errorf("%v: crashed:\n%s", tc.args, res.stderr)
		}
	}
}

// TestTrainRegime: --regime paper starts from the paper's set-up (no batch norm, Adam 1e-4, a
// 1000-step warm-up) and a flag set beside it still wins; the run's config.json records the
// settings themselves, so the run resumes and compares without the regime's name.
func TestTrainRegime(t *testing.T) {
	bin := buildCLI(t)
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, tmp, 200, 50)
	run := filepath.Join(tmp, "paper")
	res := runCLI(t, bin, nil, "train", "--regime", "paper", "--warmup", "5", "--dataset", ds, "--model", "wrn-10-1",
		"--val-size", "50", "--queue-size", "64", "--steps", "2", "--threads", "1", "--skip-test", "--out", run)
	if res.code != 0 {
		t.Fatalf("--regime paper: exit %d\n%s", res.code, res.stderr)
	}
	cfg, err := trainer.ReadConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Norm != "none" || cfg.LR != 1e-4 || cfg.Optimizer != "adam" || cfg.BatchSize != 64 || cfg.Warmup != 5 {
		t.Errorf("--regime paper --warmup 5 recorded norm %q, %s lr %g, batch %d, warm-up %d; want none, adam 1e-4, 64, 5",
			cfg.Norm, cfg.Optimizer, cfg.LR, cfg.BatchSize, cfg.Warmup)
	}
	def := trainer.Defaults()
	if def.Norm != "batch" || def.LR != 1e-3 {
		t.Errorf("the cpu regime (the defaults) changed: norm %q, lr %g", def.Norm, def.LR)
	}
}

// TestTrainCtrlC: SIGINT saves a checkpoint and exits with 130; --resume continues the run, and
// flags that would change it are refused. The run records --channels-last auto; a config.json
// written when the setting was a bool (true) still resumes, in the layout it holds, and an
// operational --channels-last=false on resume is obeyed.
func TestTrainCtrlC(t *testing.T) {
	bin := buildCLI(t)
	tmp := t.TempDir()
	ds := testutil.SmallFashion(t, tmp, 300, 50)
	run := filepath.Join(tmp, "run")
	cmd := exec.Command(bin, "train", "--dataset", ds, "--model", "wrn-10-1", "--val-size", "50", "--batch-size", "16",
		"--queue-size", "64", "--steps", "100000", "--log-every", "1", "--threads", "1", "--out", run)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
		if strings.Count(string(b), "\n") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no training progress:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit status 130\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "resume with: hdge-torch train --resume "+run) {
		t.Errorf("no resume hint:\n%s", stderr.String())
	}
	ckpts, _ := filepath.Glob(filepath.Join(run, "checkpoints", "step-*.pt"))
	if len(ckpts) == 0 {
		t.Fatalf("no checkpoint after SIGINT:\n%s", stderr.String())
	}
	if res := runCLI(t, bin, nil, "train", "--resume", run, "--lr", "0.1"); res.code != 2 || !strings.Contains(res.stderr, "--lr") {
		t.Errorf("changing --lr on resume: exit %d\n%s", res.code, res.stderr)
	}
	// Precision changes the numbers a run learns: a resumed run keeps its own.
	if res := runCLI(t, bin, nil, "train", "--resume", run, "--precision", "fp32"); res.code != 2 || !strings.Contains(res.stderr, "--precision (the run has auto)") {
		t.Errorf("changing --precision on resume: exit %d\n%s", res.code, res.stderr)
	}
	cfgPath := filepath.Join(run, "config.json")
	cj, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cj), `"channels_last": "auto"`) || !strings.Contains(stderr.String(), `(auto: `) {
		t.Errorf("the run does not record or log --channels-last auto:\n%s\n%s", cj, stderr.String())
	}
	old := strings.Replace(string(cj), `"channels_last": "auto"`, `"channels_last": true`, 1)
	if err := os.WriteFile(cfgPath, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, bin, nil, "train", "--resume", run, "--steps", "8", "--skip-test")
	if res.code != 0 {
		t.Fatalf("resume: exit %d\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "resumed") || !strings.Contains(res.stdout, "8 steps") {
		t.Errorf("resume output:\nstdout %s\nstderr %s", res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "channels-last (asked for)") {
		t.Errorf("a config.json with \"channels_last\": true did not resume channels-last:\n%s", res.stderr)
	}
	// The run's own --model repeated is not a change; resuming a finished run says so and names
	// its last checkpoint.
	res = runCLI(t, bin, nil, "train", "--resume", run, "--model", "wrn-10-1", "--steps", "8", "--skip-test", "--channels-last=false")
	if want := "was already complete at step 8; nothing was trained. Last checkpoint: " + filepath.Join(run, "checkpoints", "step-00000008.pt"); res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("resuming a finished run with its own --model: exit %d, want %q\nstdout %s\nstderr %s", res.code, want, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "nchw (asked for)") {
		t.Errorf("--channels-last=false on resume was not obeyed:\n%s", res.stderr)
	}
}
