package trainer

import (
	"fmt"
	"slices"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

// ContrastiveSettings are the settings of the contrastive baselines: SupCon (Khosla et al. 2020),
// SimCLR's NT-Xent pre-training, and JointLoss (Winkens et al. 2020), CE plus NT-Xent.
type ContrastiveSettings struct {
	SupConTemperature     float64 `json:"supcon_temperature"`
	SupConBaseTemperature float64 `json:"supcon_base_temperature"`
	SimCLRTemperature     float64 `json:"simclr_temperature"`
	JointWeight           float64 `json:"jointloss_weight"`
	ProjDim               int     `json:"proj_dim"`
}

const groupContrastive = "objective: supcon, simclr, jointloss"

func init() {
	registerSettings(
		settings.Float("supcon-temperature", groupContrastive, learnt, 0.1, "supcon: tau of the supervised contrastive loss (SupContrast's README recipe: 0.1)",
			func(c *Config) *float64 { return &c.SupConTemperature }, settings.Positive),
		settings.Float("supcon-base-temperature", groupContrastive, learnt, 0.07, "supcon: tau_base; the loss is scaled by tau/tau_base (SupContrast: 0.07)",
			func(c *Config) *float64 { return &c.SupConBaseTemperature }, settings.Positive),
		settings.Float("simclr-temperature", groupContrastive, learnt, 0.5, "simclr, jointloss: tau of NT-Xent (SimCLR: 0.5; 0.1 to 1 is used)",
			func(c *Config) *float64 { return &c.SimCLRTemperature }, settings.Positive),
		settings.Float("jointloss-weight", groupContrastive, learnt, 1, "jointloss: weight of the NT-Xent term beside cross-entropy (with --label-smoothing)",
			func(c *Config) *float64 { return &c.JointWeight }, settings.NonNegative),
		settings.Int("proj-dim", groupContrastive, learnt, 128, "width of the projection head's output (an MLP dim -> dim -> ReLU -> proj-dim, L2-normalised)",
			func(c *Config) *int { return &c.ProjDim }, settings.AtLeast(1)),
	)
	// The three share the two contrastive views, the batch check and a projection head.
	register := func(name, usage string, build func(env Env, h *projHead) (Objective, error)) {
		RegisterObjective(ObjectiveInfo{
			Name:    name,
			Usage:   usage,
			Views:   2,
			Augment: func(c Config) data.Augment { return data.ContrastiveAugment(!c.flip()) },
			Check:   checkContrastiveBatch,
			New: func(env Env) (Objective, error) {
				h, err := newProjHead(env)
				if err != nil {
					return nil, err
				}
				return build(env, h)
			},
		})
	}
	register("supcon", "supervised contrastive pre-training (stage 1; then --init it with --freeze-features --objective ce)",
		func(env Env, h *projHead) (Objective, error) {
			cfg := nn.SupConConfig{Temperature: env.Config.SupConTemperature, BaseTemperature: env.Config.SupConBaseTemperature}
			if err := cfg.Validate(); err != nil {
				h.Close()
				return nil, fmt.Errorf("--supcon-temperature: %w", err)
			}
			return &supconObjective{projHead: h, cfg: cfg}, nil
		})
	register("simclr", "SimCLR's NT-Xent pre-training, labels unused (stage 1 of contrastive pre-training and of JointLoss)",
		func(env Env, h *projHead) (Objective, error) {
			return &simclrObjective{projHead: h, temperature: env.Config.SimCLRTemperature}, nil
		})
	register("jointloss", "JointLoss fine-tuning: CE (with --label-smoothing) + --jointloss-weight · NT-Xent on two views",
		func(env Env, h *projHead) (Objective, error) {
			return &jointObjective{simclrObjective: simclrObjective{projHead: h, temperature: env.Config.SimCLRTemperature},
				weight: env.Config.JointWeight, smoothing: env.Config.LabelSmoothing}, nil
		})
}

// checkContrastiveBatch: every anchor needs at least one negative, so a batch of one image has
// no contrast at all (the base table already asks --batch-size >= 2; this names why here too).
func checkContrastiveBatch(c *Config) error {
	if c.BatchSize < 2 {
		return fmt.Errorf("--batch-size %d: --objective %s contrasts the images of a batch with each other and needs at least 2", c.BatchSize, c.Objective)
	}
	return nil
}

// projHead is SupContrast's projection head, nn.Sequential(Linear(d, d), ReLU, Linear(d, out)),
// whose output is L2-normalised: the objective's own parameters, checkpointed under "objective"
// with SupContrast's names (head.0.*, head.2.*), so model_state_dict stays the encoder and
// classifier alone.
type projHead struct {
	store  *torch.Scope
	l1, l2 *nn.Linear
}

func newProjHead(env Env) (*projHead, error) {
	dim, out := env.Model.FeatureDim(), env.Config.ProjDim
	cpu := torch.NewScope()
	// Drawn on the CPU from the objective's generator, then moved, so a seed gives the same head
	// on every device (as model.Build does for the network).
	init := nn.Init{Store: cpu, Gen: env.Gen, Dev: torch.CPU}
	l1, l2 := nn.NewLinear(init, dim, dim, true), nn.NewLinear(init, dim, out, true)
	if err := cpu.Err(); err != nil || l1.W == nil || l1.B == nil || l2.W == nil || l2.B == nil {
		cpu.Close()
		return nil, fmt.Errorf("projection head %d -> %d -> %d: %v", dim, dim, out, err)
	}
	h := &projHead{store: cpu, l1: l1, l2: l2}
	if env.Dev != torch.CPU {
		dev := torch.NewScope()
		for _, p := range []**torch.Tensor{&l1.W, &l1.B, &l2.W, &l2.B} {
			t := dev.Detach(dev.To(*p, env.Dev))
			if dev.Err() == nil {
				_ = t.SetRequiresGrad(true)
			}
			*p = t
		}
		cpu.Close()
		if err := dev.Err(); err != nil {
			dev.Close()
			return nil, fmt.Errorf("projection head to %s: %w", env.Dev, err)
		}
		h.store = dev
	}
	return h, nil
}

func (h *projHead) named() map[string]*torch.Tensor {
	return map[string]*torch.Tensor{"head.0.weight": h.l1.W, "head.0.bias": h.l1.B, "head.2.weight": h.l2.W, "head.2.bias": h.l2.B}
}

// forward maps encoder features to normalised projections, in fp32 whatever the step's precision:
// the contrastive losses are losses, kept in fp32 as cross-entropy and HDGE's term are (under bf16
// the head's linear layers compute in bf16).
func (h *projHead) forward(s *torch.Scope, f *torch.Tensor) *torch.Tensor {
	z := h.l2.Forward(s, s.ReLU(h.l1.Forward(s, f)))
	if z != nil && z.DType() != torch.Float32 {
		z = s.ToDType(z, torch.Float32)
	}
	return s.Normalize(z, 2, 1, 1e-12)
}

func (h *projHead) AfterStep(*Step) error { return nil }
func (h *projHead) Parameters() []*torch.Tensor {
	return []*torch.Tensor{h.l1.W, h.l1.B, h.l2.W, h.l2.B}
}
func (h *projHead) State(*torch.Scope) map[string]*torch.Tensor { return h.named() }
func (h *projHead) Close()                                      { h.store.Close() }
func (h *projHead) LoadState(m map[string]*torch.Tensor) error {
	own := h.named()
	for name := range m {
		if _, ok := own[name]; !ok {
			return fmt.Errorf("the checkpoint holds objective state %s that the projection head does not have: was it trained with another --objective?", name)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range own {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		src, ok := m[name]
		if !ok {
			return fmt.Errorf("the checkpoint has no projection head tensor %s (was it trained with another --objective?)", name)
		}
		if err := sameShape(name, own[name].Shape(), src.Shape()); err != nil {
			return fmt.Errorf("projection head: %w (another --proj-dim or model?)", err)
		}
		s.CopyInto(own[name], s.To(src, own[name].Device()))
	}
	return s.Err()
}

// twoViewFeatures runs the encoder once over both views, stacked as one batch of 2B (as
// SupContrast and SimCLR do, so batch norm sees both views together), train mode.
func twoViewFeatures(st *Step) *torch.Tensor {
	if len(st.Views) < 2 {
		st.Fail(fmt.Errorf("the objective needs 2 views of each image, the batch has %d", len(st.Views)))
		return nil
	}
	return st.Model.Features(st.S, st.S.Cat(st.Views[:2], 0), true)
}

// pairViews turns 2B projections (view 0's rows first) into the B×2×d layout the losses take.
func pairViews(s *torch.Scope, z *torch.Tensor, b int64) *torch.Tensor {
	return s.Stack([]*torch.Tensor{s.Narrow(z, 0, 0, b), s.Narrow(z, 0, b, b)}, 1)
}

// supconObjective is SupContrast's stage 1: SupConLoss over both views' projections, positives
// the other rows of the same label. The classifier head is not trained here (the linear probe of
// stage 2 trains it on the frozen encoder).
type supconObjective struct {
	*projHead
	cfg nn.SupConConfig
}

func (o *supconObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	f := twoViewFeatures(st)
	if f == nil {
		return nil, nil
	}
	z := pairViews(st.S, o.forward(st.S, f), st.Y.Size(0))
	loss, err := nn.SupConLoss(st.S, z, st.Y, o.cfg)
	if err != nil {
		st.Fail(fmt.Errorf("supcon: %w", err))
		return nil, nil
	}
	return loss, []Term{{"supcon", loss}}
}

// simclrObjective is NT-Xent over both views' projections; labels are not used.
type simclrObjective struct {
	*projHead
	temperature float64
}

func (o *simclrObjective) ntxent(st *Step, f *torch.Tensor) *torch.Tensor {
	z := pairViews(st.S, o.forward(st.S, f), st.Y.Size(0))
	loss, err := nn.NTXentLoss(st.S, z, o.temperature)
	if err != nil {
		st.Fail(fmt.Errorf("--simclr-temperature %g, --batch-size %d: %w", o.temperature, st.Y.Size(0), err))
		return nil
	}
	return loss
}

func (o *simclrObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	f := twoViewFeatures(st)
	if f == nil {
		return nil, nil
	}
	loss := o.ntxent(st, f)
	if loss == nil {
		return nil, nil
	}
	return loss, []Term{{"ntxent", loss}}
}

// jointObjective is JointLoss: cross-entropy on view 0's logits plus weight · NT-Xent, both from
// one encoder pass over the two views. The logits come from the same features, so view 0 is
// seen once.
type jointObjective struct {
	simclrObjective
	weight, smoothing float64
}

func (o *jointObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	f := twoViewFeatures(st)
	if f == nil {
		return nil, nil
	}
	s := st.S
	b := st.Y.Size(0)
	logits := st.Model.Head(s, s.Narrow(f, 0, 0, b))
	if logits != nil && logits.DType() != torch.Float32 {
		logits = s.ToDType(logits, torch.Float32)
	}
	st.SetLogits(logits)
	ce := s.CrossEntropy(logits, st.Y, o.smoothing, torch.Mean)
	terms := []Term{{"ce", ce}}
	if o.weight == 0 {
		return ce, terms
	}
	nt := o.ntxent(st, f)
	if nt == nil {
		return nil, nil
	}
	return s.Add(ce, s.MulScalar(nt, o.weight)), append(terms, Term{"ntxent", nt})
}
