package bench

import (
	"fmt"
	"strings"

	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/trainer"
)

// modelName is a model with its normalisation, as the tables show it.
func modelName(model, norm string) string {
	if norm == "batch" {
		return model + " (batch norm)"
	}
	return model
}

const (
	sideGo = "go"
	sidePy = "python"
)

// DataSpec names a dataset both sides read: the official file layouts (idx, cifar10, cifar100)
// from a folder, or a pair of .npy files (images N×C×H×W uint8, labels int64) for prepared sets.
type DataSpec struct {
	Name   string `json:"name,omitempty"`
	Format string `json:"format"`
	Dir    string `json:"dir,omitempty"`
	Split  string `json:"split,omitempty"`
	Images string `json:"images,omitempty"`
	Labels string `json:"labels,omitempty"`
}

// goSpec is the dataset spec hdge-torch's data package and trainer take.
func (d DataSpec) goSpec() (string, error) {
	switch d.Format {
	case "idx", "cifar10", "cifar100":
		return d.Format + ":" + d.Dir, nil
	}
	return "", fmt.Errorf("dataset %q: format %q has no hdge-torch spec", d.Name, d.Format)
}

// AugmentSpec is the training augmentation, the same on both sides.
type AugmentSpec struct {
	Crop  int     `json:"crop"`
	Flip  bool    `json:"flip"`
	Noise float64 `json:"noise"`
}

// RunConfig is one child run's configuration; the same JSON goes to the Go child and to
// reference.py, so both read one definition of every setting.
type RunConfig struct {
	Mode    string `json:"mode"` // train | stepratio | contrastive | pipeline | eval | parity | peak | ddp | objectives | buffer-memory
	Device  string `json:"device"`
	Threads int    `json:"threads"`
	Seed    uint64 `json:"seed"`

	Dataset   *DataSpec   `json:"dataset,omitempty"`
	Sets      []DataSpec  `json:"sets,omitempty"`
	Augment   AugmentSpec `json:"augment"`
	Workers   int         `json:"workers"`
	Batch     int         `json:"batch"`
	EvalBatch int         `json:"eval_batch,omitempty"`

	Model        string  `json:"model,omitempty"`
	Norm         string  `json:"norm,omitempty"` // none | batch
	Weights      string  `json:"weights,omitempty"`
	Classes      int     `json:"classes,omitempty"`
	Shape        []int   `json:"shape,omitempty"` // C, H, W of random inputs
	Objective    string  `json:"objective,omitempty"`
	Alpha        float64 `json:"alpha"`
	QueueSize    int     `json:"queue_size,omitempty"`
	Temperature  float64 `json:"temperature"`
	LR           float64 `json:"lr"`
	ReleasedLoop bool    `json:"released_loop,omitempty"`
	// Precision is fp32 or bf16 (hdge-torch's --precision; the reference's torch.autocast).
	Precision string `json:"precision,omitempty"`

	WarmupSteps   int `json:"warmup_steps,omitempty"`
	Steps         int `json:"steps,omitempty"`
	WarmupBatches int `json:"warmup_batches,omitempty"`
	Batches       int `json:"batches,omitempty"`
	Size          int `json:"size,omitempty"`  // peak: n of the n×n matrix product
	World         int `json:"world,omitempty"` // ddp: processes

	// objectives: the Go child's objectives, alternated; JEM's sampler (0 keeps the trainer's default).
	Objectives []string `json:"objectives,omitempty"`
	SGLDSteps  int      `json:"sgld_steps,omitempty"`
	BufferSize int      `json:"buffer_size,omitempty"`
	// ChannelsLast is the Go side's --channels-last: "" keeps hdge-torch's default, auto; true or
	// false forces a layout.
	ChannelsLast model.Layout `json:"channels_last,omitempty"`

	Dir        string `json:"dir,omitempty"`        // a scratch folder of the run's own
	Checkpoint string `json:"checkpoint,omitempty"` // where a training run saves its final state
	Inputs     string `json:"inputs,omitempty"`     // parity: tensors written by the Go side
}

func (rc RunConfig) label() string {
	var parts []string
	if rc.Dataset != nil {
		parts = append(parts, rc.Dataset.Name)
	}
	if rc.Model != "" {
		parts = append(parts, modelName(rc.Model, rc.Norm))
	}
	if rc.Objective != "" {
		parts = append(parts, rc.Objective)
	}
	if rc.Classes > 0 {
		parts = append(parts, fmt.Sprintf("C=%d", rc.Classes))
	}
	if rc.QueueSize > 0 && (rc.Objective == "hdge" || rc.Mode == "contrastive" || rc.Mode == "stepratio") {
		parts = append(parts, fmt.Sprintf("K=%d", rc.QueueSize))
	}
	if rc.ReleasedLoop {
		parts = append(parts, "released loop")
	}
	return strings.Join(parts, " ")
}

// RunResult is what a child reports (the union of every mode's fields) plus what the parent
// measured of it.
type RunResult struct {
	StepS []float64 `json:"step_s,omitempty"`
	WaitS []float64 `json:"wait_s,omitempty"`
	CES   []float64 `json:"ce_s,omitempty"`
	HDGES []float64 `json:"hdge_s,omitempty"`
	Batch int       `json:"batch,omitempty"`

	RSS0KiB         int64 `json:"rss0_kib,omitempty"`
	RSS1KiB         int64 `json:"rss1_kib,omitempty"`
	HWMKiB          int64 `json:"hwm_kib,omitempty"`
	PeakReset       bool  `json:"peak_reset,omitempty"` // VmHWM was restarted before the steps
	DevicePeakBytes int64 `json:"device_peak_bytes,omitempty"`

	Images   int     `json:"images,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`
	LogitsS  float64 `json:"logits_s,omitempty"`
	MetricsS float64 `json:"metrics_s,omitempty"`
	Metrics  Metrics `json:"metrics,omitempty"`

	Logits []float64 `json:"logits,omitempty"`
	Loss   float64   `json:"loss,omitempty"`
	CE     float64   `json:"ce,omitempty"`
	Gen    float64   `json:"gen,omitempty"`

	GFLOPS     float64 `json:"gflops,omitempty"`      // peak: the matrix product
	ConvGFLOPS float64 `json:"conv_gflops,omitempty"` // peak: the convolution

	// HWMEndKiB is the process's peak resident set (VmHWM) when it finished.
	HWMEndKiB int64  `json:"hwm_kib_end"`
	Threads   int    `json:"threads"`
	Torch     string `json:"torch,omitempty"`
	Python    string `json:"python,omitempty"`

	// ddp: every rank's images per second, and the all-reduce times (bench/ddp.go).
	GlobalImgS float64   `json:"global_img_s,omitempty"`
	AllReduceS []float64 `json:"allreduce_s,omitempty"`

	// objectives: each objective's timed steps (Go), the replay buffer's bytes and the
	// checkpoint's (buffer-memory, both sides).
	ObjectiveS      map[string][]float64 `json:"objective_step_s,omitempty"`
	BufferBytes     int64                `json:"buffer_bytes,omitempty"`
	CheckpointBytes int64                `json:"checkpoint_bytes,omitempty"`

	Measured measured `json:"measured"`
}

// Metrics holds evaluation numbers by name: "accuracy", "nll", "ece", and per OOD set and score
// "SET/SCORE" → {auroc, aupr_in, aupr_out, fpr95}. Values are float64 or map[string]any.
type Metrics map[string]any

// Case sizes. Full is what `make bench` runs; Quick runs every code path on tiny inputs.
type suite struct {
	Quick bool

	Train      []trainCase
	TrainReps  int
	StepRatio  stepRatioCase
	Contrast   contrastCase
	Pipeline   pipelineCase
	Eval       evalCase
	GEMMSize   int
	GEMMReps   int
	ParityK    int
	ParityB    int
	TinyImages int // quick: training sets are cut to this many images
}

type trainCase struct {
	Data        string // fashion-mnist | cifar10
	Model       string
	Norm        string
	Batch       int
	QueueSize   int
	WarmupSteps int
	Steps       int
	Released    bool // also run the released loop (two forwards, two loaders) on the Python side
	Reps        int  // repetitions; 0 means the suite's TrainReps
}

type stepRatioCase struct {
	Model       string
	Norm        string
	Shape       []int
	Batch       int
	QueueSize   int
	Classes     []int
	WarmupSteps int
	Steps       int
}

type contrastCase struct {
	Batch       int
	Ks          []int
	Classes     []int
	WarmupSteps int
	Steps       int
}

type pipelineCase struct {
	Data          []string
	Batch         int
	WarmupBatches int
	Batches       int
	Reps          int
}

type evalCase struct {
	Model   string
	Norm    string
	PerSet  int
	Batch   int
	Reps    int
	Workers int
}

// fullSuite uses the trainer's CPU default model (and normalisation) for Fashion-MNIST, the step
// ratio and evaluation, and the released code's WideResNet without normalisation on CIFAR-10.
func fullSuite() suite {
	cpu := trainer.Defaults()
	return suite{
		Train: []trainCase{
			{Data: "fashion-mnist", Model: cpu.Model, Norm: cpu.Norm, Batch: 64, QueueSize: 65536, WarmupSteps: 2, Steps: 8, Released: true, Reps: 5},
			{Data: "cifar10", Model: "wrn-16-4", Norm: "none", Batch: 64, QueueSize: 65536, WarmupSteps: 1, Steps: 4, Reps: 3},
		},
		TrainReps: 3,
		StepRatio: stepRatioCase{Model: cpu.Model, Norm: cpu.Norm, Shape: []int{1, 28, 28}, Batch: 64, QueueSize: 65536,
			Classes: []int{10, 100}, WarmupSteps: 1, Steps: 24},
		Contrast: contrastCase{Batch: 64, Ks: []int{1024, 4096, 16384, 65536}, Classes: []int{10, 100},
			WarmupSteps: 2, Steps: 5},
		Pipeline: pipelineCase{Data: []string{"fashion-mnist", "cifar10"}, Batch: 64, WarmupBatches: 10, Batches: 300, Reps: 3},
		Eval:     evalCase{Model: cpu.Model, Norm: cpu.Norm, PerSet: 1000, Batch: 256, Reps: 2},
		GEMMSize: 2048, GEMMReps: 5,
		ParityK: 4096, ParityB: 8,
	}
}

func quickSuite() suite {
	cpu := trainer.Defaults()
	return suite{
		Quick: true,
		Train: []trainCase{
			{Data: "fashion-mnist", Model: "wrn-10-1", Norm: cpu.Norm, Batch: 16, QueueSize: 256, WarmupSteps: 1, Steps: 2, Released: true},
			{Data: "cifar10", Model: "wrn-10-1", Norm: "none", Batch: 16, QueueSize: 256, WarmupSteps: 1, Steps: 2},
		},
		TrainReps: 1,
		StepRatio: stepRatioCase{Model: "wrn-10-1", Norm: cpu.Norm, Shape: []int{1, 28, 28}, Batch: 16, QueueSize: 256,
			Classes: []int{10, 100}, WarmupSteps: 1, Steps: 2},
		Contrast: contrastCase{Batch: 16, Ks: []int{128, 256}, Classes: []int{10, 100}, WarmupSteps: 1, Steps: 2},
		Pipeline: pipelineCase{Data: []string{"fashion-mnist", "cifar10"}, Batch: 16, WarmupBatches: 2, Batches: 4, Reps: 1},
		Eval:     evalCase{Model: "wrn-10-1", Norm: cpu.Norm, PerSet: 64, Batch: 32, Reps: 1},
		GEMMSize: 256, GEMMReps: 2,
		ParityK: 64, ParityB: 4,
		TinyImages: 160,
	}
}
