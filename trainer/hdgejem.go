package trainer

import (
	"github.com/hdge-torch/hdge-torch/torch"
)

func init() {
	RegisterObjective(ObjectiveInfo{
		Name:  "hdge-jem",
		Usage: "HDGE+JEM (eq. 17): pyx·CE + pxy-contrast·(-log q(x|y)) against HDGE's queue + px·(-log q(x)) by SGLD; needs --norm none",
		Check: checkJEM("hdge-jem"),
		New: func(env Env) (Objective, error) {
			// The queue is drawn first, then the buffer, both from the objective's generator.
			h, err := newHDGE(hdgeConfigOf(env.Config, env.Classes), env.Gen, env.Dev)
			if err != nil {
				return nil, err
			}
			j, err := newJEMTerm(env)
			if err != nil {
				h.Close()
				return nil, err
			}
			return &hdgeJEMObjective{hdge: h, jem: j, smoothing: env.Config.LabelSmoothing}, nil
		},
	})
}

// hdgeJEMObjective is eq. 17, L = -E[log q(y|x) + log q(x|y) + log q(x)], each term weighted
// by its own flag: CE, HDGE's contrastive log q(x|y) (the hdge objective's queue term, reused
// whole: its queue and AfterStep update) and JEM's SGLD log q(x) (and optionally log q(x|y)).
//
// The released HDGE code weighs l_pxcontrast by --pxycontrast and l_pxysgld by --pxsgld; here
// each term has the weight of its own name.
type hdgeJEMObjective struct {
	hdge      *hdgeObjective
	jem       *jemTerm
	smoothing float64
}

func (o *hdgeJEMObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	s := st.S
	var total *torch.Tensor
	var terms []Term
	if w := o.jem.set.PYXWeight; w > 0 {
		ce := s.CrossEntropy(st.Logits(), st.Y, o.smoothing, torch.Mean)
		terms = append(terms, Term{"ce", ce})
		total = s.MulScalar(ce, w)
	}
	if w := o.jem.set.PXYContrastWeight; w > 0 {
		g := o.hdge.genLoss(s, st.Logits(), st.Y)
		terms = append(terms, Term{"gen", g})
		if total == nil {
			total = s.MulScalar(g, w)
		} else {
			total = s.Add(total, s.MulScalar(g, w))
		}
	}
	return o.jem.loss(st, total, terms)
}

// AfterStep enqueues the batch's logits in HDGE's queue (even when the contrastive weight is 0,
// so the queue is the one hdge would hold).
func (o *hdgeJEMObjective) AfterStep(st *Step) error { return o.hdge.AfterStep(st) }

func (o *hdgeJEMObjective) Parameters() []*torch.Tensor { return nil }

func (o *hdgeJEMObjective) State(s *torch.Scope) map[string]*torch.Tensor {
	return o.jem.state(s, o.hdge.State(s))
}

func (o *hdgeJEMObjective) LoadState(m map[string]*torch.Tensor) error {
	rest, err := o.jem.loadState(m)
	if err != nil {
		return err
	}
	return o.hdge.LoadState(rest)
}

func (o *hdgeJEMObjective) Close() {
	o.hdge.Close()
	o.jem.close()
}
