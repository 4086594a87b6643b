package trainer

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/sampler"
	"github.com/hdge-torch/hdge-torch/torch"
)

// JEMSettings are the settings of JEM's SGLD-trained log q(x) (and the optional SGLD log q(x|y)),
// shared by jem and hdge-jem. The sampler's flags keep JEM's names and defaults
// (train_wrn_ebm.py); the weights are JEM's p_y_given_x_weight, p_x_weight and p_x_y_weight, and
// HDGE+JEM's weight of the contrastive log q(x|y).
type JEMSettings struct {
	SGLDSteps  int     `json:"sgld_steps"`
	SGLDLR     float64 `json:"sgld_lr"`
	SGLDStd    float64 `json:"sgld_std"`
	BufferSize int     `json:"buffer_size"`
	ReinitFreq float64 `json:"reinit_freq"`
	SGLDCond   bool    `json:"sgld_cond"`
	// PYXWeight weighs CE (log q(y|x)); PXWeight JEM's SGLD log q(x); PXYWeight JEM's SGLD
	// log q(x|y) (0: off, as JEM's default); PXYContrastWeight HDGE's contrastive log q(x|y) in
	// hdge-jem.
	PYXWeight         float64 `json:"pyx_weight"`
	PXWeight          float64 `json:"px_weight"`
	PXYWeight         float64 `json:"pxy_weight"`
	PXYContrastWeight float64 `json:"pxy_contrast_weight"`
	// EnergyL2 is the penalty EnergyL2·(E_data² + E_sample²) (batch means of the squared
	// energies) that JEM's authors suggest (about 0.1) against divergence; 0 is off, as in JEM.
	EnergyL2 float64 `json:"energy_l2"`
}

const groupJEM = "objective: jem, hdge-jem"

func init() {
	d := sampler.DefaultSettings()
	registerSettings(
		settings.Int("sgld-steps", groupJEM, learnt, d.SGLD.Steps, "SGLD steps per training step (JEM: 20)",
			func(c *Config) *int { return &c.SGLDSteps }, settings.AtLeast(1)),
		settings.Float("sgld-lr", groupJEM, learnt, d.SGLD.LR, "SGLD step size on the energy gradient (JEM: 1)",
			func(c *Config) *float64 { return &c.SGLDLR }, settings.Positive),
		settings.Float("sgld-std", groupJEM, learnt, d.SGLD.Std, "std of SGLD's added noise (JEM: 0.01)",
			func(c *Config) *float64 { return &c.SGLDStd }, settings.NonNegative),
		settings.Int("buffer-size", groupJEM, learnt, d.BufferSize, "replay buffer chains (JEM: 10000; a multiple of the classes with --sgld-cond)",
			func(c *Config) *int { return &c.BufferSize }, settings.AtLeast(1)),
		settings.Float("reinit-freq", groupJEM, learnt, d.ReinitFreq, "probability that a drawn chain restarts from U(-1,1) noise (JEM: 0.05)",
			func(c *Config) *float64 { return &c.ReinitFreq }, settings.In(0, 1, false)),
		settings.Bool("sgld-cond", groupJEM, learnt, false, "class-conditional chains: per-class buffer blocks, labels drawn uniformly (JEM's --class_cond_p_x_sample)",
			func(c *Config) *bool { return &c.SGLDCond }),
		settings.Float("pyx-weight", groupJEM, learnt, 1, "weight of CE, log q(y|x) (JEM's --p_y_given_x_weight)",
			func(c *Config) *float64 { return &c.PYXWeight }, settings.NonNegative),
		settings.Float("px-weight", groupJEM, learnt, 1, "weight of SGLD's log q(x) (JEM's --p_x_weight)",
			func(c *Config) *float64 { return &c.PXWeight }, settings.NonNegative),
		settings.Float("pxy-weight", groupJEM, learnt, 0, "weight of SGLD's log q(x|y) on the labelled batch, needs --sgld-cond (JEM's --p_x_y_weight; 0 = off)",
			func(c *Config) *float64 { return &c.PXYWeight }, settings.NonNegative),
		settings.Float("pxy-contrast-weight", groupJEM, learnt, 1, "hdge-jem: weight of HDGE's contrastive log q(x|y) (eq. 17: 1)",
			func(c *Config) *float64 { return &c.PXYContrastWeight }, settings.NonNegative),
		settings.Float("energy-l2", groupJEM, learnt, 0, "L2 penalty on the data and sample energies against divergence (JEM's authors suggest 0.1; 0 = off)",
			func(c *Config) *float64 { return &c.EnergyL2 }, settings.NonNegative),
	)
	RegisterObjective(ObjectiveInfo{
		Name:  "jem",
		Usage: "JEM: pyx·CE + px·(-log q(x)) by SGLD from a replay buffer (+ pxy·(-log q(x|y))); needs --norm none",
		Check: checkJEM("jem"),
		New: func(env Env) (Objective, error) {
			j, err := newJEMTerm(env)
			if err != nil {
				return nil, err
			}
			return &jemObjective{jem: j, smoothing: env.Config.LabelSmoothing}, nil
		},
	})
}

// checkJEM refuses what SGLD training cannot work with.
func checkJEM(name string) func(c *Config) error {
	return func(c *Config) error {
		if c.Norm != "none" {
			return fmt.Errorf("--norm %s: --objective %s needs --norm none: batch norm does not work with SGLD sampling (the "+
				"sampler runs the model in eval mode on synthetic images whose statistics differ from the data's; JEM's authors report "+
				"that JEM does not train with it at all)", c.Norm, name)
		}
		if c.PXYWeight > 0 && !c.SGLDCond {
			return fmt.Errorf("--pxy-weight %g needs --sgld-cond: the log q(x|y) samples continue the label's own chains", c.PXYWeight)
		}
		if c.PYXWeight == 0 && c.PXWeight == 0 && c.PXYWeight == 0 && (name != "hdge-jem" || c.PXYContrastWeight == 0) {
			return fmt.Errorf("--pyx-weight, --px-weight, --pxy-weight (and --pxy-contrast-weight) are all 0: --objective %s would train nothing", name)
		}
		return nil
	}
}

func (c *Config) samplerSettings() sampler.Settings {
	return sampler.Settings{
		SGLD:       sampler.Config{Steps: c.SGLDSteps, LR: c.SGLDLR, Std: c.SGLDStd},
		BufferSize: c.BufferSize, ReinitFreq: c.ReinitFreq, Cond: c.SGLDCond,
	}
}

// jemTerm is JEM's generative part: the replay buffer and the SGLD losses drawn from it. jem and
// hdge-jem both own one.
type jemTerm struct {
	set     JEMSettings
	sampler sampler.Settings
	classes int
	store   *torch.Scope
	buf     *sampler.ReplayBuffer
}

func newJEMTerm(env Env) (*jemTerm, error) {
	c := env.Config
	ss := c.samplerSettings()
	if err := ss.Validate(env.Classes); err != nil {
		return nil, err
	}
	store := torch.NewScope()
	shape := []int64{int64(env.Shape[0]), int64(env.Shape[1]), int64(env.Shape[2])}
	// The buffer exists only when a term samples, so a CE-weighted-only run carries none.
	var buf *sampler.ReplayBuffer
	if c.PXWeight > 0 || c.PXYWeight > 0 {
		var err error
		buf, err = ss.NewBuffer(store, env.Gen, shape, env.Classes, env.Dev)
		if err != nil {
			store.Close()
			return nil, err
		}
	}
	return &jemTerm{set: c.JEMSettings, sampler: ss, classes: env.Classes, store: store, buf: buf}, nil
}

// energyPrefix marks the terms that are energies (batch means of log q), logged as loss_energy_*,
// and watched by the divergence check.
const energyPrefix = "energy_"

// loss adds JEM's terms to total (nil when nothing came before): px·(-(E_data - E_sample)) with
// E = logsumexp_y f(x)[y], samples from the buffer by SGLD in eval mode, and pxy·(-(f(x)[y] -
// f(x_q)[y])) on the labelled batch with samples from the labels' chains. The sample energies are
// taken in training mode, as JEM's loss takes them.
func (j *jemTerm) loss(st *Step, total *torch.Tensor, terms []Term) (*torch.Tensor, []Term) {
	s := st.S
	add := func(t *torch.Tensor, w float64) {
		if total == nil {
			total = s.MulScalar(t, w)
		} else {
			total = s.Add(total, s.MulScalar(t, w))
		}
	}
	energy := sampler.JEMEnergy(st.Model.Forward)
	n := int(st.Y.Size(0))
	if j.set.PXWeight > 0 {
		xq, _, err := j.buf.Sample(s, st.Gen, energy, n, nil, j.sampler.ReinitFreq, j.sampler.SGLD)
		if err != nil {
			s.Fail(fmt.Errorf("jem p(x) sampling: %w", err))
			return total, terms
		}
		ed := s.LogSumExp(st.Logits(), []int{1}, false)
		eq := s.LogSumExp(st.Model.Forward(s, xq, true), []int{1}, false)
		l := j.contrastiveDivergence(s, ed, eq)
		terms = append(terms, Term{"px", l}, Term{energyPrefix + "data", s.Mean(ed, nil, false)},
			Term{energyPrefix + "sample", s.Mean(eq, nil, false)})
		add(l, j.set.PXWeight)
	}
	if j.set.PXYWeight > 0 {
		xq, _, err := j.buf.Sample(s, st.Gen, energy, n, st.Y, j.sampler.ReinitFreq, j.sampler.SGLD)
		if err != nil {
			s.Fail(fmt.Errorf("jem p(x|y) sampling: %w", err))
			return total, terms
		}
		yy := s.Unsqueeze(st.Y, 1)
		ed := s.Squeeze(s.Gather(st.Logits(), 1, yy), 1)
		eq := s.Squeeze(s.Gather(st.Model.Forward(s, xq, true), 1, yy), 1)
		l := j.contrastiveDivergence(s, ed, eq)
		terms = append(terms, Term{"pxy", l}, Term{energyPrefix + "sample_y", s.Mean(eq, nil, false)})
		add(l, j.set.PXYWeight)
	}
	return total, terms
}

// contrastiveDivergence is -(mean E_data - mean E_sample), plus the optional L2 penalty on both.
func (j *jemTerm) contrastiveDivergence(s *torch.Scope, ed, eq *torch.Tensor) *torch.Tensor {
	l := s.Neg(s.Sub(s.Mean(ed, nil, false), s.Mean(eq, nil, false)))
	if j.set.EnergyL2 > 0 {
		sq := s.Add(s.Mean(s.Square(ed), nil, false), s.Mean(s.Square(eq), nil, false))
		l = s.Add(l, s.MulScalar(sq, j.set.EnergyL2))
	}
	return l
}

func (j *jemTerm) state(s *torch.Scope, m map[string]*torch.Tensor) map[string]*torch.Tensor {
	if j.buf == nil {
		return m
	}
	if m == nil {
		m = map[string]*torch.Tensor{}
	}
	for k, t := range j.buf.Tensors(s) {
		m[k] = t
	}
	return m
}

// loadState restores the buffer and removes its tensors from m, leaving the others.
func (j *jemTerm) loadState(m map[string]*torch.Tensor) (map[string]*torch.Tensor, error) {
	rest := map[string]*torch.Tensor{}
	for k, t := range m {
		if k != sampler.TensorSamples && k != sampler.TensorClasses {
			rest[k] = t
		}
	}
	if j.buf == nil {
		if _, ok := m[sampler.TensorSamples]; ok {
			return rest, fmt.Errorf("the checkpoint has a replay buffer but this run samples nothing (--px-weight and --pxy-weight are 0)")
		}
		return rest, nil
	}
	if err := j.buf.LoadTensors(m); err != nil {
		return rest, err
	}
	return rest, nil
}

func (j *jemTerm) close() { j.store.Close() }

// jemObjective is JEM's train_wrn_ebm.py step: pyx·CE on the labelled batch plus jemTerm's.
type jemObjective struct {
	jem       *jemTerm
	smoothing float64
}

func (o *jemObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	var total *torch.Tensor
	var terms []Term
	if w := o.jem.set.PYXWeight; w > 0 {
		ce := st.S.CrossEntropy(st.Logits(), st.Y, o.smoothing, torch.Mean)
		terms = append(terms, Term{"ce", ce})
		total = st.S.MulScalar(ce, w)
	}
	return o.jem.loss(st, total, terms)
}

func (o *jemObjective) AfterStep(*Step) error       { return nil }
func (o *jemObjective) Parameters() []*torch.Tensor { return nil }
func (o *jemObjective) State(s *torch.Scope) map[string]*torch.Tensor {
	return o.jem.state(s, nil)
}
func (o *jemObjective) LoadState(m map[string]*torch.Tensor) error {
	rest, err := o.jem.loadState(m)
	if err != nil {
		return err
	}
	return expectNoState(rest)
}
func (o *jemObjective) Close() { o.jem.close() }
