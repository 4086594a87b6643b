package trainer

import "github.com/hdge-torch/hdge-torch/torch"

func init() {
	RegisterObjective(ObjectiveInfo{
		Name:  "ce",
		Usage: "cross-entropy (with --label-smoothing)",
		New: func(env Env) (Objective, error) {
			return &ceObjective{smoothing: env.Config.LabelSmoothing}, nil
		},
	})
}

type ceObjective struct {
	stateless
	smoothing float64
}

func (o *ceObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	ce := st.S.CrossEntropy(st.Logits(), st.Y, o.smoothing, torch.Mean)
	return ce, []Term{{"ce", ce}}
}
