package trainer

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Config is everything a run needs; it is saved as config.json in the run directory and inside
// every checkpoint, so a run can be resumed or evaluated from either. Each field is declared once,
// with its flag name, default, help and validation, in Settings(); objectives add their own
// sections (embedded here, so config.json stays one flat object).
type Config struct {
	Dataset string `json:"dataset"`
	DataDir string `json:"data_dir,omitempty"`
	ValSize int    `json:"val_size"`

	Model   string  `json:"model"`
	Norm    string  `json:"norm"`
	Dropout float64 `json:"dropout"`
	// BNMomentum is PyTorch's BatchNorm2d momentum (the released code's 0.9 lets the running
	// statistics follow the last batch).
	BNMomentum float64 `json:"bn_momentum"`
	// Init is the run or checkpoint file whose model weights the run starts from ("" for a fresh
	// initialisation); FreezeFeatures then trains only the classifier head (a linear probe).
	Init           string `json:"init,omitempty"`
	FreezeFeatures bool   `json:"freeze_features,omitempty"`

	Objective      string  `json:"objective"`
	Alpha          float64 `json:"alpha"`
	LabelSmoothing float64 `json:"label_smoothing"`
	HDGESettings
	JEMSettings
	DivergenceSettings
	ContrastiveSettings
	AdvSettings

	Optimizer   string  `json:"optimizer"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	Warmup      int     `json:"warmup"`
	Schedule    string  `json:"schedule"` // step (JEM: decay at DecayEpochs) | cosine (to 0 at the last step)
	DecayEpochs []int   `json:"decay_epochs"`
	DecayRate   float64 `json:"decay_rate"`

	BatchSize int     `json:"batch_size"`
	Epochs    int     `json:"epochs"`
	Steps     int     `json:"steps"` // 0: run all epochs; otherwise stop after this many steps
	Noise     float64 `json:"noise"`
	Flip      string  `json:"flip"` // auto | on | off
	Crop      int     `json:"crop"`
	Workers   int     `json:"workers"`

	Seed    uint64 `json:"seed"`
	Threads int    `json:"threads"`
	Device  string `json:"device"`
	// ChannelsLast is the memory layout asked for: auto (model.AutoChannelsLast picks, at each
	// start), true (NHWC) or false (NCHW); the same results either way, at another speed. Configs
	// written when it was a bool hold true or false.
	ChannelsLast model.Layout `json:"channels_last"`
	// Precision is auto, fp32, bf16 or fp16 (mixed precision: fp32 weights, optimiser state and
	// losses); auto is bf16 where the device computes it natively, fp32 elsewhere.
	Precision   string `json:"precision,omitempty"`
	TensorBoard bool   `json:"tensorboard"`
	Out         string `json:"out"`
	KeepLast    int    `json:"keep_last"`
	CkptEvery   int    `json:"ckpt_every"` // steps between checkpoints (0: only at epoch ends)
	LogEvery    int    `json:"log_every"`
	ValEvery    int    `json:"val_every"` // steps between validations (0: at epoch ends)
}

type setting = settings.Setting[Config]

// Group names of the train command's --help.
const (
	groupData   = "data"
	groupModel  = "model"
	groupObj    = "objective"
	groupOptim  = "optimisation"
	groupRun    = "run"
	learnt      = settings.Learnt
	length      = settings.Length
	operational = settings.Operational
)

// The defaults are tuned for a CPU: a small WideResNet that trains Fashion-MNIST to about 90 % test
// accuracy in minutes. Batch norm, which HDGE (unlike JEM, whose SGLD sampling it would disturb)
// can use, is on; the paper's GPU set-up is wrn-28-10 without batch norm, Adam lr 1e-4 with step
// decay, 200 epochs. README "Training defaults" gives the measurements behind each choice.
var baseSettings = []setting{
	settings.String("dataset", groupData, learnt, "fashion-mnist", "fashion-mnist, mnist, cifar10, cifar100, svhn, or FORMAT:PATH (idx:DIR, cifar10:DIR, cifar100:DIR, svhn:FILE, folder:DIR)",
		func(c *Config) *string { return &c.Dataset }),
	settings.String("data-dir", groupData, operational, "", "directory with datasets (default: $HDGE_DATA, then the per-user cache, then /usr/share/datasets)",
		func(c *Config) *string { return &c.DataDir }),
	settings.Int("val-size", groupData, learnt, 5000, "training images held out for validation (fixed by --seed)",
		func(c *Config) *int { return &c.ValSize }, settings.AtLeast(0)),
	settings.Float("noise", groupData, learnt, 0.03, "std of Gaussian noise added to inputs in [-1,1], at train and test time as in JEM (0 = off)",
		func(c *Config) *float64 { return &c.Noise }, settings.NonNegative),
	settings.String("flip", groupData, learnt, "auto", "random horizontal flip: auto (off for digits), on, off",
		func(c *Config) *string { return &c.Flip }, settings.OneOf("auto", "on", "off")),
	settings.Int("crop", groupData, learnt, -1, "reflect-pad by this many pixels, then random crop back (0 = off; -1 = auto: 4 for 32×32 images, 0 for 28×28)",
		func(c *Config) *int { return &c.Crop }, settings.AtLeast(-1)),
	settings.Int("workers", groupData, operational, 2, "goroutines preparing batches",
		func(c *Config) *int { return &c.Workers }, settings.AtLeast(1)),

	settings.String("model", groupModel, learnt, "wrn-10-2", "WideResNet as wrn-DEPTH-WIDTH (the paper: wrn-28-10), or resnet-18 / resnet-50 (CIFAR stem, batch norm)",
		func(c *Config) *string { return &c.Model }),
	settings.String("norm", groupModel, learnt, "batch", "normalisation in the blocks: none (JEM/HDGE) or batch",
		func(c *Config) *string { return &c.Norm }, settings.OneOf("none", "batch")),
	settings.Float("dropout", groupModel, learnt, 0, "dropout rate between the two convs of a block",
		func(c *Config) *float64 { return &c.Dropout }, settings.In(0, 1, true)),
	settings.Float("bn-momentum", groupModel, learnt, 0.1, "BatchNorm2d momentum in PyTorch's convention (the running statistics move this far toward each batch's): PyTorch's default 0.1; the released HDGE/JEM code uses 0.9",
		func(c *Config) *float64 { return &c.BNMomentum }, func(x float64) error {
			if !(x > 0 && x <= 1) {
				return fmt.Errorf("must be in (0, 1], got %g", x)
			}
			return nil
		}),
	settings.String("init", groupModel, learnt, "", "start from the model weights of this run directory (its newest checkpoint) or checkpoint file, e.g. a supcon or simclr stage 1; the architecture and class count must match",
		func(c *Config) *string { return &c.Init }),
	settings.Bool("freeze-features", groupModel, learnt, false, "train only the classifier head, the encoder from --init held in eval mode with no gradient (the linear probe); needs --init",
		func(c *Config) *bool { return &c.FreezeFeatures }),

	objectiveSetting(),
	settings.Float("alpha", groupObj, learnt, 0.5, "weight of log q(y|x); 1-alpha weighs the objective's other term (1 = plain CE, 0 = log q(x|y) only)",
		func(c *Config) *float64 { return &c.Alpha }, settings.In(0, 1, false)),
	settings.Float("label-smoothing", groupObj, learnt, 0, "label smoothing epsilon for both terms",
		func(c *Config) *float64 { return &c.LabelSmoothing }, settings.In(0, 1, true)),

	settings.String("optimizer", groupOptim, learnt, "adam", "adam or sgd",
		func(c *Config) *string { return &c.Optimizer }, settings.OneOf("adam", "sgd")),
	settings.Float("lr", groupOptim, learnt, 1e-3, "learning rate (the paper: 1e-4 with adam)",
		func(c *Config) *float64 { return &c.LR }, settings.Positive),
	settings.Float("momentum", groupOptim, learnt, 0.9, "SGD momentum",
		func(c *Config) *float64 { return &c.Momentum }, settings.In(0, 1, true)),
	settings.Float("weight-decay", groupOptim, learnt, 0, "L2 weight decay",
		func(c *Config) *float64 { return &c.WeightDecay }, settings.NonNegative),
	settings.Int("warmup", groupOptim, learnt, 200, "linear learning-rate warm-up, in steps",
		func(c *Config) *int { return &c.Warmup }, settings.AtLeast(0)),
	settings.String("schedule", groupOptim, learnt, "cosine", "after warm-up: step (multiply by --decay-rate at --decay-epochs, as JEM) or cosine (down to 0 at the last step)",
		func(c *Config) *string { return &c.Schedule }, settings.OneOf("step", "cosine")),
	settings.Ints("decay-epochs", groupOptim, learnt, nil, "comma-separated epochs at which lr is multiplied by --decay-rate (JEM: 160,180 of 200)",
		func(c *Config) *[]int { return &c.DecayEpochs }),
	settings.Float("decay-rate", groupOptim, learnt, 0.3, "lr factor at each decay epoch (JEM: 0.3 with adam; 0.2 with sgd)",
		func(c *Config) *float64 { return &c.DecayRate }, func(x float64) error {
			if x > 0 && x <= 1 {
				return nil
			}
			return fmt.Errorf("must be in (0, 1], got %g", x)
		}),
	settings.Int("batch-size", groupOptim, learnt, 64, "images per step",
		func(c *Config) *int { return &c.BatchSize }, settings.AtLeast(2)),
	settings.Int("epochs", groupOptim, length, 4, "passes over the training split",
		func(c *Config) *int { return &c.Epochs }),
	settings.Int("steps", groupOptim, length, 0, "stop after this many steps in all (overrides --epochs)",
		func(c *Config) *int { return &c.Steps }, settings.AtLeast(0)),

	settings.Uint64("seed", groupRun, learnt, 1, "seed for initialisation, data order, augmentation, dropout and the objective's draws",
		func(c *Config) *uint64 { return &c.Seed }),
	settings.Int("threads", groupRun, operational, 0, "libtorch intra-op threads (0 = one per CPU)",
		func(c *Config) *int { return &c.Threads }, settings.AtLeast(0)),
	settings.String("device", groupRun, operational, "cpu", "cpu, cuda or cuda:N",
		func(c *Config) *string { return &c.Device }, func(s string) error {
			_, err := torch.ParseDevice(s)
			return err
		}),
	settings.AutoBool("channels-last", groupRun, operational, model.LayoutAuto, "memory layout of weights and activations, the same results at another speed: auto (channels-last on CUDA, on AVX-512 CPUs and for models with batch norm; NCHW for models without batch norm on other CPUs, where it measured faster), true (channels-last, NHWC) or false (NCHW); write --channels-last=true, not a bare --channels-last",
		func(c *Config) *model.Layout { return &c.ChannelsLast }),
	settings.String("precision", groupRun, learnt, "auto", "auto (bf16 where the CPU has AMX or AVX512-BF16, or the GPU bf16; fp32 elsewhere), fp32, bf16, or fp16 (CUDA, with loss scaling); asked for explicitly, bf16 or fp16 without native support is an error; it changes the numbers a run learns, so a resumed run keeps its own, and an experiment that pins fp32 does not reuse a run trained with auto",
		func(c *Config) *string { return &c.Precision }, settings.OneOf("auto", "fp32", "bf16", "fp16")),
	settings.Bool("tensorboard", groupRun, operational, true, "write TensorBoard event files to RUN/tensorboard (--tensorboard=false: off)",
		func(c *Config) *bool { return &c.TensorBoard }),
	settings.String("out", groupRun, operational, "", "run directory (default runs/DATASET-OBJECTIVE-TIME)",
		func(c *Config) *string { return &c.Out }),
	settings.Int("keep-last", groupRun, operational, 2, "step checkpoints to keep (best.pt is kept besides)",
		func(c *Config) *int { return &c.KeepLast }, settings.AtLeast(1)),
	settings.Int("ckpt-every", groupRun, operational, 500, "steps between checkpoints (also at each epoch end)",
		func(c *Config) *int { return &c.CkptEvery }, settings.AtLeast(0)),
	settings.Int("val-every", groupRun, operational, 0, "steps between validations (0 = at each epoch end)",
		func(c *Config) *int { return &c.ValEvery }, settings.AtLeast(0)),
	settings.Int("log-every", groupRun, operational, 50, "steps between log lines and metrics records",
		func(c *Config) *int { return &c.LogEvery }, settings.AtLeast(0)),
}

var (
	tableOnce sync.Once
	table     settings.Table[Config]
	sections  []setting // added by objectives' files through registerSettings
)

// registerSettings adds an objective's own section of settings (called from init functions).
func registerSettings(ss ...setting) { sections = append(sections, ss...) }

// Settings is the train command's table of settings: the base ones, then every objective's
// section. The CLI's flags, experiment specs' keys, Defaults, validation and --resume's rule all
// come from it.
func Settings() settings.Table[Config] {
	tableOnce.Do(func() {
		// The objective sections go after the objective group, so --help lists them together.
		var t []setting
		for _, s := range baseSettings {
			t = append(t, s)
			if s.Name == "label-smoothing" {
				t = append(t, sections...)
			}
		}
		table = t
	})
	return table
}

// Defaults is every setting at its declared default.
func Defaults() Config {
	var c Config
	Settings().Apply(&c)
	return c
}

// Validate names the flag of the first bad setting.
func (c *Config) Validate() error {
	if err := Settings().Validate(c); err != nil {
		return err
	}
	if err := model.Check(c.modelSettings()); err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	if c.FreezeFeatures && c.Init == "" {
		return fmt.Errorf("--freeze-features needs --init: a linear probe trains a head on features learnt elsewhere, and a frozen random encoder learns nothing")
	}
	if c.Epochs < 1 && c.Steps < 1 {
		return fmt.Errorf("--epochs or --steps must be at least 1")
	}
	info, err := lookupObjective(c.Objective)
	if err != nil {
		return err
	}
	if info.Check != nil {
		if err := info.Check(c); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) modelSettings() model.Settings {
	return model.Settings{Model: c.Model, Norm: c.Norm, Dropout: c.Dropout, BNMomentum: c.BNMomentum, ChannelsLast: c.ChannelsLast, Device: c.Device}
}

// crop is the padding of the random crop for images of side h: Crop, or with -1 (auto) JEM's 4
// for 32×32 images and none for 28×28 ones, where a 4-pixel shift of short CPU runs' digits and
// clothes cost accuracy.
func (c *Config) crop(h int) int {
	if c.Crop >= 0 {
		return c.Crop
	}
	if h >= 32 {
		return 4
	}
	return 0
}

// flip resolves "auto": no horizontal flip for digits, where it changes the class.
func (c *Config) flip() bool {
	switch c.Flip {
	case "on":
		return true
	case "off":
		return false
	}
	name := strings.ToLower(c.Dataset)
	return !(strings.Contains(name, "mnist") && !strings.Contains(name, "fashion")) && !strings.Contains(name, "svhn") && !strings.HasPrefix(name, "idx:")
}

// lrAt is the learning rate of a step: linear warm-up over Warmup steps, then either JEM's
// step decay (× DecayRate at each of DecayEpochs) or a cosine from LR down to 0 at step total.
func (c *Config) lrAt(step, epoch, total int) float64 {
	lr := c.LR
	if c.Warmup > 0 && step < c.Warmup {
		lr *= float64(step+1) / float64(c.Warmup)
	}
	if c.Schedule == "cosine" {
		if step >= c.Warmup && total > c.Warmup {
			lr *= 0.5 * (1 + math.Cos(math.Pi*float64(step-c.Warmup)/float64(total-c.Warmup)))
		}
		return lr
	}
	for _, e := range c.DecayEpochs {
		if epoch >= e {
			lr *= c.DecayRate
		}
	}
	return lr
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'))
}

// ReadConfig reads a run directory's config.json.
func ReadConfig(runDir string) (Config, error) {
	path := filepath.Join(runDir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading run config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig reads a configuration as config.json and checkpoints hold it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	// Configs written before the baselines' sections existed were trained without them: they
	// read as the defaults, so such a run compares equal to a spec that does not set them.
	d := Defaults()
	c.ContrastiveSettings, c.AdvSettings = d.ContrastiveSettings, d.AdvSettings
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	c.fillOlder()
	return c, nil
}

// SameLength reports whether two configs train for the same length: with --steps, --epochs is
// not used.
func (c Config) SameLength(o Config) bool {
	if c.Steps > 0 || o.Steps > 0 {
		return c.Steps == o.Steps
	}
	return c.Epochs == o.Epochs
}

// fillOlder gives settings added after a config was written the value that run actually used,
// and old names of objectives their current ones.
func (c *Config) fillOlder() {
	if c.Schedule == "" {
		c.Schedule = "step" // configs without the field were trained with step decay
	}
	if c.Precision == "" {
		c.Precision = "fp32" // configs without the field were trained in fp32
	}
	if c.ChannelsLast == "" {
		c.ChannelsLast = model.LayoutNCHW // configs without the field were trained before channels-last existed
	}
	if c.BNMomentum == 0 {
		c.BNMomentum = 0.1 // configs without the field were trained with PyTorch's default
	}
	if canon, ok := deprecatedObjectives[c.Objective]; ok {
		c.Objective = canon
	}
}

// LRAt is the learning rate the training loop sets at step (0-based) of epoch, in a run of total
// steps: tools that drive TrainStep themselves use it to follow the loop's schedule exactly.
func (c *Config) LRAt(step, epoch, total int) float64 { return c.lrAt(step, epoch, total) }

// ModelSettings is the model half of a configuration.
func ModelSettings(c Config) model.Settings { return c.modelSettings() }
