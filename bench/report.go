package bench

import (
	"cmp"
	"fmt"
	"strings"
)

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func shapeString(s []int) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, "×")
}

// Markdown renders the results as the report printed by hdgebench and written to results.md.
func Markdown(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	title := "hdge-torch against PyTorch on the same libtorch"
	if res.Settings.Quick {
		title += " (quick mode: tiny inputs, not a measurement)"
	}
	p("# %s\n\n", title)
	p("Measured %s on **%s** (%d cores, %.0f MHz, %s), %s. Both sides run libtorch %s: hdge-torch with %s, "+
		"the reference with Python %s and torch %s. %d intra-op thread(s) and %d data-loader worker(s) on each side. "+
		"Load average (1, 5, 15 min) %s at the start and %s at the end: the machine is shared, and runs alternate "+
		"between the sides so that load hits both alike. The kernels are the same; what differs is the orchestration "+
		"and the memory layout: hdge-torch runs its default, --channels-last auto, which here lays convolution weights and "+
		"activations out %s for models with batch norm and %s for models without, the reference the released code's "+
		"row-major NCHW. Training precision %s on both sides. Total time %.1f min.\n\n",
		m.Date, m.CPU, m.Cores, m.MHz, m.Vector, deviceWords(m.Device), m.Libtorch, m.Go, m.Python, m.PyTorch,
		m.Threads, res.Settings.Workers, first(m.Load), last(m.Load), cmp.Or(m.AutoLayoutBN, "channels-last"),
		cmp.Or(m.AutoLayoutNoBN, "channels-last"), precisionWords(res.Settings.Precision), res.Seconds/60)
	if res.Settings.Command != "" {
		p("Command: `%s`.\n\n", res.Settings.Command)
	}
	p("Speed-ups are hdge-torch's rate over the reference's (> 1: hdge-torch is faster), from medians over the "+
		"repetitions of this run: training as given per row, the data pipeline %d, evaluation %d; the step-ratio and "+
		"contrastive figures are medians over steps within one run per side.\n\n", res.Settings.PipelineReps, res.Settings.EvalReps)

	p("## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|\n")
	for _, t := range res.Targets {
		p("| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, yesNo(t.Met))
	}

	if len(res.Training) > 0 {
		p("\n## Training throughput\n\nThe real loops: `trainer.Train` (one metrics line per step) against the reference's " +
			"train_wrn.py loop; warm-up steps excluded; a step's time runs from asking for its batch to the end of the optimiser " +
			"step; data wait is the time spent waiting for the batch.\n\n")
		p("| data | model | batch | objective | reps | Go img/s | Python img/s | speed-up | Go step ms | Python step ms | Go data wait | Python data wait |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range res.Training {
			obj := r.Objective
			if r.K > 0 {
				obj = fmt.Sprintf("%s K=%d", obj, r.K)
			}
			if r.Variant != "" {
				obj += ", Python: " + r.Variant + " (2 forwards, 2 loaders)"
			}
			p("| %s | %s | %d | %s | %d | %.1f | %.1f | %.2f× | %.0f | %.0f | %.2f %% | %.2f %% |\n", r.Dataset, r.Model, r.Batch, obj,
				r.Reps, r.Go.ImgPerS, r.Py.ImgPerS, r.Speedup, r.Go.StepMS, r.Py.StepMS, r.Go.DataWaitPct, r.Py.DataWaitPct)
		}
	}

	b.WriteString(ddpMarkdown(res))
	b.WriteString(objectivesMarkdown(res))
	if len(res.StepRatio) > 0 {
		p("\n## HDGE step against CE step\n\nOne model and a fixed random batch; each process alternates CE and HDGE steps " +
			"(order flipped every pair). Step times are medians; HDGE/CE is the median over pairs of the two steps' ratio, with a " +
			"distribution-free 95 %% interval; \"CE + term alone\" is 1 + the contrastive term's time measured alone (next " +
			"table, same C, K and batch) over the CE step.\n\n")
		p("| model | input | batch | C | K | Go CE ms | Go HDGE ms | Go HDGE/CE (95 %% CI) | Go CE + term alone | Python CE ms | Python HDGE ms | Python HDGE/CE | HDGE step speed-up |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range res.StepRatio {
			direct := "–"
			if r.Direct > 0 {
				direct = fmt.Sprintf("%.3f", r.Direct)
			}
			p("| %s | %s | %d | %d | %d | %.0f | %.0f | %.3f (%.3f–%.3f) | %s | %.0f | %.0f | %.3f | %.2f× |\n", r.Model,
				shapeString(r.Shape), r.Batch, r.Classes, r.K, r.GoCEMS, r.GoHDGMS, r.GoRatio, r.GoRatioCI[0], r.GoRatioCI[1],
				direct, r.PyCEMS, r.PyHDGMS, r.PyRatio, r.HDGESpeedup)
		}
	}

	if len(res.Contrastive) > 0 {
		p("\n## The contrastive term alone\n\nLoss on B×C random logits against a full C×K queue, backward to the logits, queue " +
			"update: hdge-torch's per-class table against the released code's B×C×K einsum. Peak: what the steps add to the " +
			"resident set at their highest (VmHWM, restarted through /proc/self/clear_refs once the queue and inputs exist, " +
			"minus the resident set then); state: what creating the queue (and hdge-torch's tables) left resident.\n\n")
		p("| C | K | B | Go ms | Python (einsum) ms | speed-up | Go peak MiB | Python peak MiB | Go state MiB | Python state MiB |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range res.Contrastive {
			p("| %d | %d | %d | %.2f | %.2f | %.1f× | %.1f | %.1f | %.1f | %.1f |\n", r.Classes, r.K, r.Batch, r.GoMS, r.PyMS,
				r.Speedup, r.GoPeakMiB, r.PyPeakMiB, r.GoStateMiB, r.PyStateMiB)
		}
	}

	if len(res.Pipeline) > 0 {
		p("\n## Data pipeline\n\nThe training loader alone (reflect pad 4 + random crop, flip, noise σ 0.03), batches taken as " +
			"fast as they come: `data.Loader` (goroutines) against a DataLoader with per-sample transforms (worker processes).\n\n")
		p("| data | batch | workers | Go img/s | Python img/s | speed-up |\n|---|---|---|---|---|---|\n")
		for _, r := range res.Pipeline {
			p("| %s | %d | %d | %.0f | %.0f | %.1f× |\n", r.Dataset, r.Batch, r.Workers, r.GoImgS, r.PyImgS, r.Speedup)
		}
	}

	if res.Eval.Images > 0 {
		e := res.Eval
		p("\n## Evaluation\n\nLogits of the test set and the OOD sets (test-time noise σ 0.03, eval mode), then accuracy, NLL, " +
			"ECE (20 bins) and per OOD set and score (log q(x), max p(y|x)) AUROC, AUPR-in/out and FPR@95%%TPR: " +
			"`trainer.Logits` + package eval against torch + scikit-learn. Same weights on both sides.\n\n")
		p("| model | sets | images | Go img/s | Python img/s | speed-up | Go logits + metrics s | Python logits + metrics s | largest AUROC difference |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		p("| %s | %s | %d | %.0f | %.0f | %.2f× | %.2f + %.3f | %.2f + %.3f | %.3f |\n", e.Model, strings.Join(e.Sets, ", "), e.Images,
			e.GoImgS, e.PyImgS, e.Speedup, e.GoLogitsS, e.GoMetricsS, e.PyLogitsS, e.PyMetricsS, e.MaxAUROCDiff)
	}

	if len(res.Training) > 0 {
		p("\n## Peak memory of a training run\n\nPeak resident set of the training process (its VmHWM when it ends), and the peak of the summed "+
			"proportional set size (Pss) of the process and its data-loader worker processes, sampled every %v.\n\n", sampleEvery)
		p("| data | model | objective | Go max RSS MiB | Python max RSS MiB | Go Pss MiB | Python Pss MiB (with workers) | Go/Python (Pss) |\n")
		p("|---|---|---|---|---|---|---|---|\n")
		for _, r := range res.Training {
			if r.Variant != "" {
				continue
			}
			p("| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f |\n", r.Dataset, r.Model, r.Objective, r.Go.MaxRSSMiB, r.Py.MaxRSSMiB,
				r.Go.TreePSSMiB, r.Py.TreePSSMiB, ratio(r.Go.TreePSSMiB, r.Py.TreePSSMiB))
		}
	}

	if len(res.FLOPs) > 0 {
		p("\n## FLOP rate of a training step\n\nModel FLOPs from `nn.WideResNet.FLOPs` (2 × multiply-adds of the convolutions "+
			"and the linear layer), a training step counted as 3 forward passes, over the median CE step time. Peak of the %d "+
			"thread(s) used, theoretical: %.0f GFLOP/s = %s; the whole CPU: %.0f GFLOP/s. Peak, measured on the same threads "+
			"under the same load: %.0f GFLOP/s, the larger of a %d×%d float32 matrix product through libtorch (%.0f GFLOP/s, "+
			"its BLAS) and a 64×256×16×16 3×3 convolution to 256 channels (%.0f GFLOP/s, oneDNN).\n\n",
			m.Threads, m.PeakTheoryGFLOPS, m.PeakMethod, m.PeakCPUGFLOPS, m.PeakMeasuredGFLOPS, m.GEMMSize, m.GEMMSize,
			m.PeakGEMMGFLOPS, m.PeakConvGFLOPS)
		p("| configuration | forward GFLOP/image | GFLOP/step | Go GFLOP/s | Python GFLOP/s | Go %% of theoretical | Python %% of theoretical | Go %% of measured | Python %% of measured |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range res.FLOPs {
			p("| %s | %.3f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", f.Config, f.ForwardGFLOPImg, f.StepGFLOP,
				f.GoGFLOPS, f.PyGFLOPS, f.GoPctTheory, f.PyPctTheory, f.GoPctMeasured, f.PyPctMeasured)
		}
	}

	par := res.Parity
	p("\n## Parity\n\nThe reference loads hdge-torch's %s weights with `load_state_dict(strict=True)` and computes logits and "+
		"the HDGE loss (released einsum form, C=%d, K=%d) on hdge-torch's batch of %d and queue: largest logit difference "+
		"%.2g (largest logit %.3g); loss %.6f (Go) vs %.6f (Python), relative difference %.1e. Agreement: %s.\n",
		par.Model, par.Classes, par.K, par.Batch, par.MaxAbsLogitDiff, par.MaxAbsLogit, par.GoLoss, par.PyLoss, par.LossRelDiff, yesNo(par.OK))
	return b.String()
}

func deviceWords(d string) string {
	if strings.HasPrefix(d, "cuda") {
		return "tensors on " + d
	}
	return "CPU tensors"
}

func first(s []string) string {
	if len(s) == 0 {
		return "?"
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return "?"
	}
	return s[len(s)-1]
}

// precisionWords names the training precision: fp32, or bf16 as each side runs it.
func precisionWords(p string) string {
	if p == "bf16" {
		return "bf16 (hdge-torch --precision bf16; the reference under torch.autocast(bfloat16))"
	}
	return "fp32"
}
