package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

// Results is everything one benchmark run measured; it is written as JSON and rendered as the
// markdown report.
type Results struct {
	Machine     Machine           `json:"machine"`
	Settings    Settings          `json:"settings"`
	Parity      Parity            `json:"parity"`
	Training    []TrainRow        `json:"training"`
	StepRatio   []StepRatioRow    `json:"step_ratio"`
	Contrastive []ContrastRow     `json:"contrastive"`
	Pipeline    []PipelineRow     `json:"pipeline"`
	Eval        EvalRow           `json:"eval"`
	FLOPs       []FLOPRow         `json:"flops"`
	DDP         []DDPRow          `json:"ddp,omitempty"`
	Objectives  *ObjectivesResult `json:"objectives,omitempty"`
	Targets     []Target          `json:"targets"`
	Seconds     float64           `json:"seconds"`
}

// Settings are the run's knobs.
type Settings struct {
	Quick        bool   `json:"quick"`
	Command      string `json:"command"`
	Workers      int    `json:"workers"`
	PipelineReps int    `json:"pipeline_reps"`
	EvalReps     int    `json:"eval_reps"`
	Precision    string `json:"precision,omitempty"`
}

// Parity compares hdge-torch and the Python reference on the same weights, batch and queue.
type Parity struct {
	Model           string  `json:"model"`
	Batch           int     `json:"batch"`
	Classes         int     `json:"classes"`
	K               int     `json:"k"`
	MaxAbsLogitDiff float64 `json:"max_abs_logit_diff"`
	MaxAbsLogit     float64 `json:"max_abs_logit"`
	GoLoss          float64 `json:"go_loss"`
	PyLoss          float64 `json:"py_loss"`
	LossRelDiff     float64 `json:"loss_rel_diff"`
	OK              bool    `json:"ok"`
}

// TrainSide is one side's figures for a training configuration: medians over repetitions of
// each run's throughput over its measured steps, and the largest memory peaks.
type TrainSide struct {
	ImgPerS     float64   `json:"img_per_s"`
	StepMS      float64   `json:"step_ms"` // median over all measured steps of all repetitions
	DataWaitPct float64   `json:"data_wait_pct"`
	MaxRSSMiB   float64   `json:"max_rss_mib"`  // the main process (VmHWM)
	TreePSSMiB  float64   `json:"tree_pss_mib"` // the process and its loader workers (sampled Pss)
	RepImgPerS  []float64 `json:"rep_img_per_s"`
}

// TrainRow is one training configuration. Speedup is Go img/s over Python img/s.
type TrainRow struct {
	Dataset   string    `json:"dataset"`
	Model     string    `json:"model"`
	Batch     int       `json:"batch"`
	Objective string    `json:"objective"`
	K         int       `json:"k,omitempty"`
	Variant   string    `json:"variant,omitempty"`
	Reps      int       `json:"reps"`
	Go        TrainSide `json:"go"`
	Py        TrainSide `json:"python"`
	Speedup   float64   `json:"speedup"`
}

// StepRatioRow is HDGE's step time against CE's for one model, batch and class count, each
// side alternating the two objectives within one process.
type StepRatioRow struct {
	Model     string     `json:"model"`
	Shape     []int      `json:"shape"`
	Batch     int        `json:"batch"`
	Classes   int        `json:"classes"`
	K         int        `json:"k"`
	GoCEMS    float64    `json:"go_ce_ms"`
	GoHDGMS   float64    `json:"go_hdge_ms"`
	GoRatio   float64    `json:"go_hdge_over_ce"` // median over step pairs of HDGE time / CE time
	GoRatioCI [2]float64 `json:"go_hdge_over_ce_ci95"`
	// Direct is 1 + the Go contrastive term's time alone (same C, K, B) over the Go CE step.
	Direct  float64 `json:"go_direct_estimate,omitempty"`
	PyCEMS  float64 `json:"py_ce_ms"`
	PyHDGMS float64 `json:"py_hdge_ms"`
	PyRatio float64 `json:"py_hdge_over_ce"`
	// HDGESpeedup is the Python HDGE step time over the Go one.
	HDGESpeedup float64 `json:"hdge_speedup"`
}

// ContrastRow is the contrastive term alone at one (C, K).
type ContrastRow struct {
	Classes    int     `json:"classes"`
	K          int     `json:"k"`
	Batch      int     `json:"batch"`
	GoMS       float64 `json:"go_ms"`
	PyMS       float64 `json:"py_ms"`
	Speedup    float64 `json:"speedup"`      // Python time over Go time
	GoPeakMiB  float64 `json:"go_peak_mib"`  // high-water mark over the resident set before the steps
	PyPeakMiB  float64 `json:"py_peak_mib"`  // same for Python
	GoStateMiB float64 `json:"go_state_mib"` // queue (and hdge-torch's table) and inputs
	PyStateMiB float64 `json:"py_state_mib"`
	// PeakReset says whether both sides could restart VmHWM before the steps; without it the
	// peaks include setting up.
	PeakReset bool `json:"peak_reset"`
	// PyDevicePeakMiB is torch.cuda.max_memory_allocated over the steps (CUDA runs only).
	PyDevicePeakMiB float64 `json:"py_device_peak_mib,omitempty"`
}

// PipelineRow is the training data loader alone.
type PipelineRow struct {
	Dataset string  `json:"dataset"`
	Batch   int     `json:"batch"`
	Workers int     `json:"workers"`
	GoImgS  float64 `json:"go_img_per_s"`
	PyImgS  float64 `json:"py_img_per_s"`
	Speedup float64 `json:"speedup"`
}

// EvalRow is the evaluation path: logits of the test set and the OOD sets, then the metrics.
type EvalRow struct {
	Model      string   `json:"model"`
	Sets       []string `json:"sets"`
	Images     int      `json:"images"`
	GoImgS     float64  `json:"go_img_per_s"`
	PyImgS     float64  `json:"py_img_per_s"`
	Speedup    float64  `json:"speedup"`
	GoLogitsS  float64  `json:"go_logits_s"`
	GoMetricsS float64  `json:"go_metrics_s"`
	PyLogitsS  float64  `json:"py_logits_s"`
	PyMetricsS float64  `json:"py_metrics_s"`
	// MaxAUROCDiff is the largest AUROC difference between the sides (the same weights; the
	// test-time noise differs, so small differences are expected).
	MaxAUROCDiff float64 `json:"max_auroc_diff"`
	GoMetrics    Metrics `json:"go_metrics"`
	PyMetrics    Metrics `json:"py_metrics"`
}

// FLOPRow is the share of the CPU's peak that a training step reaches.
type FLOPRow struct {
	Config          string  `json:"config"`
	ForwardGFLOPImg float64 `json:"forward_gflop_per_image"`
	StepGFLOP       float64 `json:"step_gflop"` // 3 × forward × batch
	GoGFLOPS        float64 `json:"go_gflops"`
	PyGFLOPS        float64 `json:"py_gflops"`
	GoPctTheory     float64 `json:"go_pct_of_theoretical"`
	PyPctTheory     float64 `json:"py_pct_of_theoretical"`
	GoPctMeasured   float64 `json:"go_pct_of_measured"`
	PyPctMeasured   float64 `json:"py_pct_of_measured"`
}

// Target is one of the goals, checked against this run.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is a/b, or 0 where b is 0 or either is not finite, so that results stay valid JSON.
func ratio(a, b float64) float64 {
	r := a / b
	if b == 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return 0
	}
	return r
}

func sum(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// writeJSON writes v atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return atomicfile.WriteFile(path, b)
}
