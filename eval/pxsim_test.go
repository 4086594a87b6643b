package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/npy"
)

// TestContrastiveScoresMatchReleasedFormula compares ContrastiveScores with the released
// evaluation's formula computed literally (B×C×K einsum) by testdata/pxsim_reference.py, for both
// contrast forms, with and without normalisation and smoothing. Tolerance 1e-9: both sides work
// in float64 from the same float32 inputs.
func TestContrastiveScoresMatchReleasedFormula(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("Debian's python3-torch is not installed")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	const b, c, k = 40, 7, 50
	l, _ := synthLogits(rng, b, c, 2, 3)
	queue := make([]float32, c*k)
	for i := range queue {
		queue[i] = float32(3 * rng.NormFloat64())
	}
	dir := t.TempDir()
	lp, qp := filepath.Join(dir, "logits.npy"), filepath.Join(dir, "queue.npy")
	mustNoErr(t, npy.WriteFloat32(lp, l.Data, b, c))
	mustNoErr(t, npy.WriteFloat32(qp, queue, c, k))
	for i, cfg := range []ContrastConfig{
		{Tau: 0.1, NormLogits: true, Form: "official"},
		{Tau: 1, NormLogits: false, Form: "official", LabelSmoothing: 0.1},
		{Tau: 0.5, NormLogits: true, Form: "eq13", LabelSmoothing: 0.2},
		{Tau: 0.07, NormLogits: false, Form: "eq13"},
	} {
		t.Run(fmt.Sprintf("%s-norm%v-eps%g", cfg.Form, cfg.NormLogits, cfg.LabelSmoothing), func(t *testing.T) {
			got, err := ContrastiveScores(l, queue, k, cfg)
			mustNoErr(t, err)
			out := filepath.Join(dir, fmt.Sprintf("want%d.npy", i))
			norm := "0"
			if cfg.NormLogits {
				norm = "1"
			}
			if b, err := exec.Command(python, "testdata/pxsim_reference.py", lp, qp, out, fmt.Sprint(cfg.Tau), norm, cfg.Form,
				fmt.Sprint(cfg.LabelSmoothing)).CombinedOutput(); err != nil {
				t.Fatalf("reference: %v\n%s", err, b)
			}
			a, err := npy.Read(out)
			mustNoErr(t, err)
			want, err := a.Float64s()
			mustNoErr(t, err)
			var worst float64
			for j := range want {
				worst = max(worst, math.Abs(got[j]-want[j]))
			}
			if worst > 1e-9 {
				t.Errorf("max |diff| %g against the released formula (first: got %g, want %g)", worst, got[0], want[0])
			}
		})
	}
}

func TestContrastiveScoresErrors(t *testing.T) {
	l, _ := synthLogits(rand.New(rand.NewPCG(1, 2)), 4, 3, 1, 1)
	ok := ContrastConfig{Tau: 0.1, NormLogits: true, Form: "official"}
	for _, tc := range []struct {
		cfg   ContrastConfig
		queue []float32
		k     int
		want  string
	}{
		{ok, make([]float32, 3*5), 4, "queue of 15 values is not 3 classes × K=4"},
		{ContrastConfig{Tau: 0, Form: "official"}, make([]float32, 3), 1, "--tau must be positive"},
		{ContrastConfig{Tau: 1, Form: "eq12"}, make([]float32, 3), 1, `--contrast must be official or eq13, got "eq12"`},
		{ContrastConfig{Tau: 1, Form: "eq13", LabelSmoothing: 1}, make([]float32, 3), 1, "--label-smoothing"},
	} {
		if _, err := ContrastiveScores(l, tc.queue, tc.k, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// An all-zero queue with normalisation: columns stay zero instead of dividing by zero.
	s, err := ContrastiveScores(l, make([]float32, 3*2), 2, ok)
	mustNoErr(t, err)
	for _, v := range s {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("zero queue gives %v", s)
		}
	}
}
