package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

func tinyConfig(t *testing.T, dataset string) Config {
	c := Defaults()
	c.Dataset = dataset
	c.Model = "wrn-10-1"
	// JEM's architecture, without batch norm: with batch norm the conv biases that feed a norm
	// layer get gradients of pure rounding noise (~1e-9), which Adam's m/√v normalises into full
	// steps, so two identical runs drift apart wherever the BLAS rounds differently.
	c.Norm = "none"
	c.Dropout = 0.2 // makes the resume test depend on the restored dropout RNG
	c.ValSize = 64
	c.BatchSize = 24
	c.QueueSize = 100 // 24 does not divide 100: exercises the wrap-around
	c.Threads = 1
	c.Workers = 2
	c.Epochs = 3
	c.LogEvery = 1
	c.CkptEvery = 5
	c.Out = filepath.Join(t.TempDir(), "run")
	return c
}

func weights(t *testing.T, path string) map[string][]float64 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	ck, err := model.ReadCheckpoint(s, path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for k, v := range ck.Model {
		out[k], err = v.Float64s()
		if err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range ck.Objective {
		out["objective."+k], _ = v.Float64s()
	}
	for k, v := range ck.OptState {
		out["optim."+k], _ = v.Float64s()
	}
	return out
}

// TestResumeMatchesUninterrupted: a run interrupted after some steps and resumed ends with the
// same weights, optimiser state and queue as one that ran straight through. Cross-entropy runs
// repeat bit for bit; HDGE runs on this libtorch differ between two identical uninterrupted runs
// by float32 rounding that 14 steps grow to ~1e-4 of a tensor's scale in rare entries (with
// OPENBLAS_NUM_THREADS=1 repeats were identical, so a threaded BLAS kernel is the likely source).
// A resume that lost any state (data position, optimiser moments, queue, dropout RNG) differs
// by orders of magnitude more, so the bound below still catches it.
func TestResumeMatchesUninterrupted(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	full := tinyConfig(t, ds)
	full.Steps = 14 // crosses an epoch boundary: (200-64)/24 = 5 batches per epoch
	sumA, err := Train(context.Background(), full, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}

	part := full
	part.Out = filepath.Join(t.TempDir(), "run")
	part.Steps = 8
	if _, err := Train(context.Background(), part, Options{SkipTest: true}); err != nil {
		t.Fatal(err)
	}
	part.Steps = 14
	sumB, err := Train(context.Background(), part, Options{SkipTest: true, Resume: part.Out})
	if err != nil {
		t.Fatal(err)
	}
	if sumB.Steps != 14 {
		t.Fatalf("resumed run ended at step %d, want 14", sumB.Steps)
	}
	a, b := weights(t, sumA.Checkpoint), weights(t, sumB.Checkpoint)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("checkpoints hold %d and %d tensors", len(a), len(b))
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			t.Fatalf("%s: %d vs %d values", k, len(va), len(vb))
		}
		var scale, diff float64
		for i := range va {
			scale = math.Max(scale, math.Abs(va[i]))
			diff = math.Max(diff, math.Abs(va[i]-vb[i]))
		}
		if diff > 1e-3*scale {
			t.Errorf("%s: resumed run differs from the uninterrupted one by %.3g (values up to %.3g)", k, diff, scale)
		}
	}
}

// TestInterruptSavesCheckpoint: cancelling the context (what Ctrl-C does) saves a checkpoint
// at the current step, and the run can be continued from it.
func TestInterruptSavesCheckpoint(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	cfg := tinyConfig(t, ds)
	cfg.Steps = 1000
	cfg.CkptEvery = 0
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			b, _ := os.ReadFile(filepath.Join(cfg.Out, "metrics.jsonl"))
			if strings.Count(string(b), "\n") >= 3 {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	sum, err := Train(ctx, cfg, Options{SkipTest: true})
	cancel()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	if sum.Steps < 3 || sum.Steps >= 1000 {
		t.Fatalf("interrupted at step %d", sum.Steps)
	}
	if _, err := os.Stat(sum.Checkpoint); err != nil {
		t.Fatalf("no checkpoint after interrupt: %v", err)
	}
	cfg.Steps = sum.Steps + 2
	sum2, err := Train(context.Background(), cfg, Options{SkipTest: true, Resume: cfg.Out})
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Steps != sum.Steps+2 {
		t.Fatalf("resumed to step %d, want %d", sum2.Steps, sum.Steps+2)
	}
}

// TestNonFiniteLossStops: a diverging run stops with a clear error and leaves the last good
// checkpoint, with finite weights, in place.
func TestNonFiniteLossStops(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 200, 200)
	cfg := tinyConfig(t, ds)
	cfg.Optimizer = "sgd"
	cfg.Momentum = 0.9
	cfg.LR = 1e12
	cfg.Warmup = 0
	cfg.Steps = 200
	cfg.CkptEvery = 1
	_, err := Train(context.Background(), cfg, Options{SkipTest: true})
	if err == nil || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("want a non-finite loss error, got %v", err)
	}
	if !strings.Contains(err.Error(), "--lr") {
		t.Errorf("the error should suggest a remedy: %v", err)
	}
	last, err := model.ResolveCheckpoint(cfg.Out, false)
	if err != nil {
		t.Skipf("diverged before the first checkpoint: %v", err)
	}
	for k, v := range weights(t, last) {
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("last checkpoint %s holds a non-finite %s", last, k)
			}
		}
	}
}

func TestConfigValidationNamesTheFlag(t *testing.T) {
	cases := []struct {
		mut  func(*Config)
		flag string
	}{
		{func(c *Config) { c.Objective = "vae" }, "--objective"},
		{func(c *Config) { c.Contrast = "paper" }, "--contrast"},
		{func(c *Config) { c.Alpha = 1.5 }, "--alpha"},
		{func(c *Config) { c.QueueSize = 0 }, "--queue-size"},
		{func(c *Config) { c.Temperature = 0 }, "--temperature"},
		{func(c *Config) { c.Model = "resnet-18" }, "--model"},
		{func(c *Config) { c.Model = "wrn-12-2" }, "--model"},
		{func(c *Config) { c.Norm = "layer" }, "--norm"},
		{func(c *Config) { c.Optimizer = "rmsprop" }, "--optimizer"},
		{func(c *Config) { c.LR = -1 }, "--lr"},
		{func(c *Config) { c.BatchSize = 1 }, "--batch-size"},
		{func(c *Config) { c.Device = "tpu" }, "--device"},
		{func(c *Config) { c.Flip = "yes" }, "--flip"},
		{func(c *Config) { c.LabelSmoothing = 1 }, "--label-smoothing"},
		{func(c *Config) { c.Dropout = 1 }, "--dropout"},
	}
	for _, tc := range cases {
		c := Defaults()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: want an error naming %s, got %v", tc.flag, tc.flag, err)
		}
	}
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
}

// TestMetricsRecordLogitNormAndTensorBoard: every log record has the mean logit norm (what a user
// of HDGE watches for the collapse of the logits' scale), and the same scalars go to TensorBoard
// event files beside metrics.jsonl unless --tensorboard=false.
func TestMetricsRecordLogitNormAndTensorBoard(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 120, 50)
	for _, tb := range []bool{true, false} {
		c := tinyConfig(t, ds)
		c.Steps, c.TensorBoard = 3, tb
		if _, err := Train(context.Background(), c, Options{SkipTest: true}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(c.Out, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var norms int
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			if v, ok := m["logit_norm"].(float64); ok {
				if !(v > 0) || math.IsInf(v, 0) {
					t.Errorf("logit_norm %v", v)
				}
				norms++
			}
		}
		if norms != 3 {
			t.Errorf("%d records with logit_norm, want 3", norms)
		}
		events, _ := filepath.Glob(filepath.Join(c.Out, "tensorboard", "events.out.tfevents.*"))
		if !tb {
			if len(events) != 0 {
				t.Errorf("--tensorboard=false wrote %v", events)
			}
			continue
		}
		if len(events) != 1 {
			t.Fatalf("tensorboard files %v, want one", events)
		}
		eb, _ := os.ReadFile(events[0])
		for _, tag := range []string{"loss_ce", "loss_gen", "logit_norm", "lr", "img_per_s", "val_acc"} {
			if !strings.Contains(string(eb), tag) {
				t.Errorf("the event file has no %s scalar", tag)
			}
		}
	}
}
