package trainer

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/attack"
	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// AdvSettings are PGD adversarial training's (Madry et al. 2018). Budgets are in pixel units
// [0, 1], as attack.Config's.
type AdvSettings struct {
	AdvNorm     string  `json:"adv_norm"`
	AdvEps      float64 `json:"adv_eps"`
	AdvSteps    int     `json:"adv_steps"`
	AdvStepSize float64 `json:"adv_step_size"`
	AdvBN       string  `json:"adv_bn"`
}

const groupAdv = "objective: adv"

func init() {
	registerSettings(
		settings.String("adv-norm", groupAdv, learnt, "linf", "adv: threat model of the training attack, linf or l2",
			func(c *Config) *string { return &c.AdvNorm }, settings.OneOf(attack.Norms...)),
		settings.Float("adv-eps", groupAdv, learnt, 8.0/255, "adv: radius of the threat ball in pixel units [0, 1] (Madry: L-inf 8/255; the robustness library's L2 on CIFAR: 0.5)",
			func(c *Config) *float64 { return &c.AdvEps }, settings.In(0, 1, false)),
		settings.Int("adv-steps", groupAdv, learnt, 7, "adv: PGD steps per training batch (Madry: 7)",
			func(c *Config) *int { return &c.AdvSteps }, settings.AtLeast(1)),
		settings.Float("adv-step-size", groupAdv, learnt, 2.0/255, "adv: PGD step size in pixel units (Madry: 2/255; L2 with eps 0.5: 0.1); 0 means 2.5·eps/steps",
			func(c *Config) *float64 { return &c.AdvStepSize }, settings.In(0, 1, false)),
		settings.String("adv-bn", groupAdv, learnt, "eval", "adv: batch-norm mode while the attack runs: eval (running statistics, as the robustness library) or train (batch statistics, as Madry's TensorFlow code; the running statistics are restored after the attack, so each step updates them once)",
			func(c *Config) *string { return &c.AdvBN }, settings.OneOf("eval", "train")),
	)
	RegisterObjective(ObjectiveInfo{
		Name:  "adv",
		Usage: "PGD adversarial training: cross-entropy on PGD examples (--adv-norm, --adv-eps, --adv-steps, --adv-step-size, --adv-bn)",
		Check: func(c *Config) error {
			if err := advConfig(*c).Validate(); err != nil {
				return fmt.Errorf("--adv-eps/--adv-step-size: %w", err)
			}
			return nil
		},
		New: func(env Env) (Objective, error) {
			return &advObjective{cfg: advConfig(env.Config), bnTrain: env.Config.AdvBN == "train", smoothing: env.Config.LabelSmoothing}, nil
		},
	})
}

// advConfig is the training attack: a random start in the ball (Madry et al.), one restart.
func advConfig(c Config) attack.Config {
	return attack.Config{Norm: c.AdvNorm, Eps: c.AdvEps, Steps: c.AdvSteps, StepSize: c.AdvStepSize, RandomStart: true}
}

// advObjective replaces each batch by its PGD examples against the current model, then takes
// cross-entropy on them in train mode. The random starts draw from the objective's generator, so
// they are part of the run's checkpointed randomness.
type advObjective struct {
	stateless
	cfg       attack.Config
	bnTrain   bool
	smoothing float64
}

func (o *advObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	s := st.S
	// The loader's views are in the model's space [-1, 1] (with --noise added there); PGD works in
	// pixels [0, 1], where the budgets are defined.
	x0 := s.Detach(s.Clamp(s.AddScalar(s.MulScalar(st.X(), data.PixelStd), data.PixelMean), 0, 1))
	var m attack.Model = st.Model // Forward(s, x, false): batch norm in eval mode
	var restore func() error
	if o.bnTrain {
		var err error
		if restore, err = saveBuffers(st.Model); err != nil {
			st.Fail(fmt.Errorf("adv: %w", err))
			return nil, nil
		}
		m = trainModeModel{st.Model}
	}
	adv, err := attack.PGD(s, m, x0, st.Y, o.cfg, st.Gen)
	if restore != nil {
		if rerr := restore(); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		st.Fail(fmt.Errorf("adv: %w", err))
		return nil, nil
	}
	in := s.SubScalar(s.MulScalar(adv, 1/data.PixelStd), data.PixelMean/data.PixelStd)
	logits := st.Model.Forward(s, in, true)
	st.SetLogits(logits)
	ce := s.CrossEntropy(logits, st.Y, o.smoothing, torch.Mean)
	return ce, []Term{{"adv_ce", ce}}
}

// trainModeModel runs the attack's forward passes with batch norm on batch statistics.
type trainModeModel struct{ m *model.Model }

func (t trainModeModel) Forward(s *torch.Scope, x *torch.Tensor, _ bool) *torch.Tensor {
	return t.m.Forward(s, x, true)
}

// saveBuffers copies every buffer of the model (batch norm's running statistics and counters) and
// returns the function that puts them back. A train-mode forward updates the running statistics
// in place; the attack's --adv-steps forward passes would otherwise move them that many extra
// times per step, towards the statistics of half-made adversarial examples. Restored, they are
// updated once per step, by the training forward pass, as in a CE step.
func saveBuffers(m *model.Model) (func() error, error) {
	s := torch.NewScope()
	s.SetGradEnabled(false)
	var dst, saved []*torch.Tensor
	for _, p := range m.StateDict() {
		if p.Buffer {
			dst = append(dst, p.T)
			saved = append(saved, s.Clone(p.T))
		}
	}
	if err := s.Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("saving batch-norm statistics: %w", err)
	}
	return func() error {
		defer s.Close()
		for i := range dst {
			s.CopyInto(dst[i], saved[i])
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("restoring batch-norm statistics: %w", err)
		}
		return nil
	}, nil
}
