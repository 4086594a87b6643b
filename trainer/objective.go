package trainer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Term is one named part of the loss, kept for logging.
type Term struct {
	Name  string
	Value *torch.Tensor
}

// Step is what an objective sees of one training step: the step's scope, every augmented view
// of the batch on the model's device, the labels, the model (whose calls take train/eval mode
// per call, so an objective can sample or attack in eval mode mid-step), and the objective's own
// generator, which the run owns and checkpoints.
type Step struct {
	S     *torch.Scope
	Views []*torch.Tensor // B×C×H×W each, view 0 first
	Y     *torch.Tensor
	Model *model.Model
	Gen   *torch.Generator
	Index int // the step's number in the run, from 0
	// Gather concatenates a tensor along dimension 0 across data-parallel processes, in rank
	// order; nil in a single process, where Gathered returns its argument.
	Gather func(s *torch.Scope, t *torch.Tensor) *torch.Tensor

	logits *torch.Tensor
	err    error
}

// Fail records an error the step's loss cannot be computed past (an input the objective's maths
// refuses); TrainStep returns it instead of taking the step.
func (st *Step) Fail(err error) {
	if st.err == nil {
		st.err = err
	}
}

// X is the first view.
func (st *Step) X() *torch.Tensor { return st.Views[0] }

// Logits are the model's logits on the first view in training mode, computed once per step.
func (st *Step) Logits() *torch.Tensor {
	if st.logits == nil {
		st.logits = st.Model.Forward(st.S, st.X(), true)
	}
	return st.logits
}

// SetLogits provides the step's logits (for measuring an objective on given logits alone).
func (st *Step) SetLogits(l *torch.Tensor) { st.logits = l }

// Gathered is t concatenated across processes (t itself in a single process).
func (st *Step) Gathered(t *torch.Tensor) *torch.Tensor {
	if st.Gather == nil {
		return t
	}
	return st.Gather(st.S, t)
}

// Objective turns a step into a loss. AfterStep runs after the optimiser step (objectives with
// memory, like HDGE's queue, learn from the batch there).
type Objective interface {
	Loss(st *Step) (*torch.Tensor, []Term)
	AfterStep(st *Step) error
	// Parameters are the objective's own trainable tensors (a projection head), optimised with
	// the model's.
	Parameters() []*torch.Tensor
	// State lists the objective's parameters and state tensors for checkpoints (saved under
	// "objective", apart from model_state_dict); LoadState restores them.
	State(s *torch.Scope) map[string]*torch.Tensor
	LoadState(map[string]*torch.Tensor) error
	Close()
}

// Env is what an objective is built from.
type Env struct {
	Config  Config
	Classes int
	Shape   [3]int // C, H, W of the inputs
	Model   *model.Model
	Gen     *torch.Generator // the objective's generator: its initial draws and every later one
	Dev     torch.Device
}

// ObjectiveInfo registers an objective by name.
type ObjectiveInfo struct {
	Name  string
	Usage string // one line for --objective's help
	// Views is how many augmented views of each image the objective needs (0 means 1).
	Views int
	// Augment, when set, is the augmentation of every view (contrastive objectives' crops and
	// colour jitter) in place of the run's --crop/--flip/--noise one.
	Augment func(c Config) data.Augment
	// Check refuses settings the objective cannot work with, naming the flag (may be nil).
	Check func(c *Config) error
	New   func(env Env) (Objective, error)
}

var (
	objectives           []ObjectiveInfo
	deprecatedObjectives = map[string]string{"hdge-simclr": "hdge-inbatch"}
)

// RegisterObjective adds an objective; each objective's file calls it from init.
func RegisterObjective(info ObjectiveInfo) {
	if _, err := lookupObjective(info.Name); err == nil {
		panic("trainer: objective " + info.Name + " registered twice")
	}
	objectives = append(objectives, info)
}

// ObjectiveNames lists the registered objectives, in registration order.
func ObjectiveNames() []string {
	out := make([]string, len(objectives))
	for i, o := range objectives {
		out[i] = o.Name
	}
	return out
}

func lookupObjective(name string) (*ObjectiveInfo, error) {
	for i := range objectives {
		if objectives[i].Name == name {
			return &objectives[i], nil
		}
	}
	return nil, fmt.Errorf("--objective: unknown value %q (want %s)", name, strings.Join(ObjectiveNames(), ", "))
}

// DeprecatedObjective says, for an objective name that was renamed, its current name and the
// warning to give; ok is false for current names.
func DeprecatedObjective(name string) (current, warning string, ok bool) {
	current, ok = deprecatedObjectives[name]
	if !ok {
		return name, "", false
	}
	return current, fmt.Sprintf("--objective %s is deprecated and will be removed: it is now called %s (the same objective)", name, current), true
}

// objectiveSetting is --objective: the registered names; a renamed one is read as its new name.
func objectiveSetting() setting {
	s := settings.String("objective", groupObj, learnt, "hdge",
		"ce (cross-entropy), hdge (queue of past logits), hdge-inbatch (in-batch negatives); every objective is listed in the objective sections",
		func(c *Config) *string { return &c.Objective }, func(name string) error {
			_, err := lookupObjective(name)
			if err != nil {
				return fmt.Errorf("unknown value %q (want %s)", name, strings.Join(ObjectiveNames(), ", "))
			}
			return nil
		})
	return settings.Canonical(s, func(name string) string {
		current, _, _ := DeprecatedObjective(name)
		return current
	})
}

// NewObjective builds the objective cfg names.
func NewObjective(env Env) (Objective, error) {
	info, err := lookupObjective(env.Config.Objective)
	if err != nil {
		return nil, err
	}
	return info.New(env)
}

// ObjectiveViews is how many augmented views of each image cfg's objective needs, for callers
// that build batches outside the training loop (the benchmark's steps).
func ObjectiveViews(cfg Config) int { return viewsOf(cfg) }

// viewsOf is how many views the run's objective needs.
func viewsOf(c Config) int {
	info, err := lookupObjective(c.Objective)
	if err != nil || info.Views < 1 {
		return 1
	}
	return info.Views
}

// viewAugments is the per-view augmentation of the run's objective, nil for the run's own.
func viewAugments(c Config) []data.Augment {
	info, err := lookupObjective(c.Objective)
	if err != nil || info.Augment == nil {
		return nil
	}
	augs := make([]data.Augment, viewsOf(c))
	for i := range augs {
		augs[i] = info.Augment(c)
	}
	return augs
}

// stateless is embedded by objectives without parameters or state.
type stateless struct{}

func (stateless) AfterStep(*Step) error                       { return nil }
func (stateless) Parameters() []*torch.Tensor                 { return nil }
func (stateless) State(*torch.Scope) map[string]*torch.Tensor { return nil }
func (stateless) LoadState(m map[string]*torch.Tensor) error  { return expectNoState(m) }
func (stateless) Close()                                      {}
func expectNoState(m map[string]*torch.Tensor) error {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return fmt.Errorf("the checkpoint holds objective state (%s) that this objective does not have: was it trained with another --objective?", strings.Join(keys, ", "))
}

// hybrid is α·CE + (1-α)·other; a weight of 0 skips its term entirely, so α = 1 costs what plain
// CE does and α = 0 is the "other term only" variant. name labels the other term in the logs.
func hybrid(st *Step, c Config, name string, other func() *torch.Tensor) (*torch.Tensor, []Term) {
	s := st.S
	var terms []Term
	var total *torch.Tensor
	if c.Alpha > 0 {
		ce := s.CrossEntropy(st.Logits(), st.Y, c.LabelSmoothing, torch.Mean)
		terms = append(terms, Term{"ce", ce})
		total = s.MulScalar(ce, c.Alpha)
	}
	if c.Alpha < 1 {
		g := other()
		terms = append(terms, Term{name, g})
		if total == nil {
			total = s.MulScalar(g, 1-c.Alpha)
		} else {
			total = s.Add(total, s.MulScalar(g, 1-c.Alpha))
		}
	}
	return total, terms
}

// smoothWeights returns the two values of the (smoothed) one-hot label distribution used inside
// the contrastive term: on the true class and on every other class (PyTorch's label_smoothing
// convention: (1-ε)·onehot + ε/C).
func smoothWeights(eps float64, classes int) (on, off float64) {
	off = eps / float64(classes)
	return 1 - eps + off, off
}

// dist builds the B×C label distribution (one-hot, or smoothed).
func dist(s *torch.Scope, y *torch.Tensor, classes int, on, off float64) *torch.Tensor {
	oh := s.ToDType(s.OneHot(y, classes), torch.Float32)
	if off == 0 && on == 1 {
		return oh
	}
	return s.AddScalar(s.MulScalar(oh, on-off), off)
}

// positive computes l_pos for each sample from its (normalised) logits p and label distribution d:
// official: logsumexp_c(d ⊙ p); eq13: Σ_c d·p (p[y] for one-hot labels).
func positive(s *torch.Scope, form string, d, p *torch.Tensor) *torch.Tensor {
	if form == "eq13" {
		return s.Sum(s.Mul(d, p), []int{1}, false)
	}
	return s.LogSumExp(s.Mul(d, p), []int{1}, false)
}
