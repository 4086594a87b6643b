package trainer

import (
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Term is one named part of the loss, kept for logging.
type Term struct {
	Name  string
	Value *torch.Tensor
}

// Objective turns a batch's logits and labels into a loss. Update runs after the optimiser step
// with the batch's logits (objectives with memory, like HDGE's queue, learn from it there).
type Objective interface {
	Name() string
	Loss(s *torch.Scope, logits, y *torch.Tensor) (*torch.Tensor, []Term)
	Update(logits *torch.Tensor) error
	// Tensors lists the objective's state for checkpoints; LoadTensors restores it.
	Tensors(s *torch.Scope) map[string]*torch.Tensor
	LoadTensors(map[string]*torch.Tensor) error
	Close()
}

// ObjectiveConfig selects and parameterises an objective.
type ObjectiveConfig struct {
	Kind           string  // ce | hdge | hdge-simclr
	Alpha          float64 // weight of log q(y|x); 1-Alpha goes to log q(x|y)
	QueueSize      int     // K
	Temperature    float64 // τ
	Form           string  // official | eq13
	NormLogits     bool    // L2-normalise logits (and queue columns) before contrasting
	LabelSmoothing float64
	Classes        int
}

// Validate reports the first setting a user got wrong, naming the flag.
func (c ObjectiveConfig) Validate() error {
	switch c.Kind {
	case "ce", "hdge", "hdge-simclr":
	default:
		return fmt.Errorf("--objective: unknown value %q (want ce, hdge or hdge-simclr)", c.Kind)
	}
	if c.Form != "official" && c.Form != "eq13" {
		return fmt.Errorf("--contrast: unknown value %q (want official or eq13)", c.Form)
	}
	if c.Alpha < 0 || c.Alpha > 1 || math.IsNaN(c.Alpha) {
		return fmt.Errorf("--alpha must be in [0, 1], got %g", c.Alpha)
	}
	if c.Kind == "hdge" && c.QueueSize < 1 {
		return fmt.Errorf("--queue-size must be at least 1, got %d", c.QueueSize)
	}
	if !(c.Temperature > 0) {
		return fmt.Errorf("--temperature must be > 0, got %g", c.Temperature)
	}
	if c.LabelSmoothing < 0 || c.LabelSmoothing >= 1 {
		return fmt.Errorf("--label-smoothing must be in [0, 1), got %g", c.LabelSmoothing)
	}
	return nil
}

// NewObjective builds the objective; store owns long-lived state such as the queue.
func NewObjective(c ObjectiveConfig, gen *torch.Generator, dev torch.Device) (Objective, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Kind {
	case "ce":
		return &ceObjective{smoothing: c.LabelSmoothing}, nil
	case "hdge-simclr":
		return &simclrObjective{cfg: c}, nil
	default:
		return newHDGE(c, gen, dev)
	}
}

type ceObjective struct{ smoothing float64 }

func (o *ceObjective) Name() string { return "ce" }
func (o *ceObjective) Loss(s *torch.Scope, logits, y *torch.Tensor) (*torch.Tensor, []Term) {
	ce := s.CrossEntropy(logits, y, o.smoothing, torch.Mean)
	return ce, []Term{{"ce", ce}}
}
func (o *ceObjective) Update(*torch.Tensor) error                    { return nil }
func (o *ceObjective) Tensors(*torch.Scope) map[string]*torch.Tensor { return nil }
func (o *ceObjective) LoadTensors(map[string]*torch.Tensor) error    { return nil }
func (o *ceObjective) Close()                                        {}

// hybrid is HDGE's L = α·CE + (1-α)·(-log q(x|y)); a weight of 0 skips its term entirely, so
// α = 1 costs what plain CE does and α = 0 is the "log q(x|y) only" variant.
func hybrid(s *torch.Scope, c ObjectiveConfig, logits, y *torch.Tensor,
	gen func(s *torch.Scope, logits, y *torch.Tensor) *torch.Tensor) (*torch.Tensor, []Term) {
	var terms []Term
	var total *torch.Tensor
	if c.Alpha > 0 {
		ce := s.CrossEntropy(logits, y, c.LabelSmoothing, torch.Mean)
		terms = append(terms, Term{"ce", ce})
		total = s.MulScalar(ce, c.Alpha)
	}
	if c.Alpha < 1 {
		g := gen(s, logits, y)
		terms = append(terms, Term{"gen", g})
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
