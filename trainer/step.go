package trainer

import (
	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// StepInput is what one training step runs with, besides its batch.
type StepInput struct {
	Model  *model.Model
	Opt    Optimizer
	Params []*torch.Tensor // what Opt updates: the model's and the objective's parameters
	Obj    Objective
	Gen    *torch.Generator // the objective's generator
	Shape  [3]int           // C, H, W
	Index  int
	Gather func(s *torch.Scope, t *torch.Tensor) *torch.Tensor
	// AfterBackward, when set, runs between backward and the optimiser step with the step's
	// scope: data-parallel training averages the gradients there.
	AfterBackward func(s *torch.Scope) error
	// Precision of the step's convolutions and linear layers; the logits, losses and every
	// objective's state stay fp32 (torch.Scope.SetPrecision).
	Precision torch.Precision
}

// TrainStep is the training loop's step, exported so benchmarks time exactly it: the batch's
// views to the device, the objective's loss and terms, backward, the optimiser step, gradients
// cleared, then the objective's AfterStep. It returns the loss and its terms; a non-finite loss
// is returned without a backward pass or an update, for the loop to stop on.
func TrainStep(in StepInput, b data.Batch) (map[string]float64, error) {
	s := torch.NewScope()
	defer s.Close()
	s.SetPrecision(in.Precision)
	n := int64(len(b.Y))
	c, h, w := int64(in.Shape[0]), int64(in.Shape[1]), int64(in.Shape[2])
	host := b.Views
	if len(host) == 0 {
		host = [][]float32{b.X}
	}
	views := make([]*torch.Tensor, 0, len(host))
	for _, v := range host {
		x := s.FromFloat32(v, n, c, h, w)
		if in.Model.Dev != torch.CPU {
			x = s.To(x, in.Model.Dev)
		}
		views = append(views, x)
	}
	y := s.FromInt64(b.Y, n)
	if in.Model.Dev != torch.CPU {
		y = s.To(y, in.Model.Dev)
	}
	st := &Step{S: s, Views: views, Y: y, Model: in.Model, Gen: in.Gen, Index: in.Index, Gather: in.Gather}
	loss, terms := in.Obj.Loss(st)
	if st.err != nil {
		return nil, st.err
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	values := map[string]float64{}
	lv, err := loss.Item()
	if err != nil {
		return nil, err
	}
	values["loss"] = lv
	for _, t := range terms {
		v, err := t.Value.Item()
		if err != nil {
			return nil, err
		}
		values["loss_"+t.Name] = v
	}
	if st.logits != nil {
		// The mean L2 norm of the logits: HDGE's contrastive term sees only their direction, and in
		// JEM's regime (no batch norm, Adam 1e-4) the norm can collapse while accuracy rises.
		norm, err := s.Mean(s.Norm(s.Detach(st.logits), 2, []int{1}, false), nil, false).Item()
		if err != nil {
			return nil, err
		}
		values["logit_norm"] = norm
	}
	if !finite(values) {
		return values, nil
	}
	s.Backward(loss)
	if err := s.Err(); err != nil {
		return nil, err
	}
	if in.AfterBackward != nil {
		if err := in.AfterBackward(s); err != nil {
			return nil, err
		}
	}
	if err := in.Opt.Step(); err != nil {
		return nil, err
	}
	torch.ZeroGrad(in.Params)
	if err := in.Obj.AfterStep(st); err != nil {
		return nil, err
	}
	return values, nil
}
