package trainer

import (
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/torch"
)

// newBaselineBench is newStepBench for a baseline: the batch gets the objective's views and the
// step updates the objective's own parameters (the projection head) too, as the loop does.
func newBaselineBench(b *testing.B, objective string) *stepBench {
	b.Helper()
	cfg := Defaults()
	cfg.Objective = objective
	sb := newStepBenchFor(b, cfg, 10, 1, 28)
	sb.params = append(sb.st.model.Parameters(), sb.st.obj.Parameters()...)
	sb.st.opt.Close()
	sb.st.opt = NewOptimizer(cfg, sb.params)
	if v := viewsOf(cfg); v > 1 {
		r := rand.New(rand.NewPCG(7, 8))
		sb.batch.Views = [][]float32{sb.batch.X}
		for range v - 1 {
			x := make([]float32, len(sb.batch.X))
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			sb.batch.Views = append(sb.batch.Views, x)
		}
	}
	return sb
}

// BenchmarkBaselinesOverCE alternates each baseline's training step with a CE step of the same
// model (wrn-10-2, batch norm) and batch (64 of 1×28×28), the order flipped every pair, and
// reports the median step times and the median over pairs of baseline/CE. SupCon, SimCLR and
// JointLoss run the encoder on both views (2B images); adv runs 7 PGD steps (forward and input
// gradient) before its training step, so about 8× is its expected cost.
func BenchmarkBaselinesOverCE(b *testing.B) {
	benchThreads(b)
	for _, objective := range []string{"supcon", "simclr", "jointloss", "adv"} {
		b.Run(objective, func(b *testing.B) {
			ts := alternate(b, newStepBench(b, "ce", 10), newBaselineBench(b, objective))
			ceT, oT := ts[0], ts[1]
			b.ReportMetric(medianOf(ceT)*1e3, "ce-ms/step")
			b.ReportMetric(medianOf(oT)*1e3, objective+"-ms/step")
			b.ReportMetric(medianRatio(oT, ceT), objective+"/ce")
		})
	}
}

// BenchmarkBaselinesAgainstPython times the SupCon and adversarial-training steps here and the
// same steps in python3-torch (bench/baselines_reference.py, on the same libtorch, the same model,
// batch, optimiser and thread count; each side in its faster memory layout), in rounds that alternate the two so machine load hits both
// alike, and reports the medians and python/go (the speed-up; target ≥ 1.10).
func BenchmarkBaselinesAgainstPython(b *testing.B) {
	if err := exec.Command(refPython, "-c", "import torch").Run(); err != nil {
		b.Skip("Debian's python3-torch is not installed; `make deps` installs it")
	}
	benchThreads(b)
	script := filepath.Join(testutil.RepoRoot(), "bench", "baselines_reference.py")
	for _, objective := range []string{"supcon", "adv"} {
		b.Run(objective, func(b *testing.B) {
			sb := newBaselineBench(b, objective)
			sb.step(b)
			const perRound = 5
			var goT, pyT []float64
			for b.Loop() {
				// --nchw: row-major is Python's faster layout on this libtorch (channels-last, the
				// Go side's default and its faster one, measured 24.4 against 17.1 s an adv step there).
				out, err := exec.Command(refPython, script, "--objective", objective, "--steps", strconv.Itoa(perRound),
					"--threads", strconv.Itoa(torch.NumThreads()), "--nchw").Output()
				if err != nil {
					b.Fatalf("%s: %v", script, err)
				}
				var py struct {
					MS float64 `json:"ms_per_step"`
				}
				if err := json.Unmarshal(out, &py); err != nil {
					b.Fatalf("%s printed %q: %v", script, out, err)
				}
				pyT = append(pyT, py.MS/1e3)
				var round []float64
				for range perRound {
					t0 := time.Now()
					sb.step(b)
					round = append(round, time.Since(t0).Seconds())
				}
				goT = append(goT, medianOf(round))
			}
			ratios := make([]float64, len(goT))
			for i := range goT {
				ratios[i] = pyT[i] / goT[i]
			}
			b.ReportMetric(medianOf(goT)*1e3, "go-ms/step")
			b.ReportMetric(medianOf(pyT)*1e3, "py-ms/step")
			b.ReportMetric(medianOf(ratios), "python/go")
		})
	}
}
