package torch

/*
#include "hdge_torch.h"
*/
import "C"

// Backward runs loss.backward(), accumulating into the .grad of every leaf that requires grad.
func (s *Scope) Backward(loss *Tensor) {
	if !s.ready1("Backward", loss) {
		return
	}
	if e := C.hdge_backward(loss.h); e != nil {
		s.failC("Backward", e)
	}
}

// Grad is t.grad as a new handle of s aliasing the gradient (in-place changes to either show in
// both), or nil when t has no gradient.
func (s *Scope) Grad(t *Tensor) *Tensor {
	if !s.ready1("Grad", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_grad(t.h, &r.h); e != nil {
		s.failC("Grad", e)
		return nil
	}
	if r.h == nil {
		return nil
	}
	return s.add(r)
}

// ZeroGrad drops the gradients of ts, like optimizer.zero_grad(set_to_none=True). Nil and freed
// tensors are skipped.
func ZeroGrad(ts []*Tensor) {
	hs := make([]C.hdge_tensor, 0, len(ts))
	for _, t := range ts {
		if t.live() {
			hs = append(hs, t.h)
		}
	}
	if len(hs) == 0 {
		return
	}
	// Resetting a gradient cannot fail for a live tensor; an error here would be a library bug
	// with nothing for the caller to do, so it is dropped.
	if e := C.hdge_zero_grad(&hs[0], C.int(len(hs))); e != nil {
		takeError("ZeroGrad", e)
	}
}

// Gradients is torch.autograd.grad(outputs, inputs, grad_outputs=ones, create_graph=createGraph):
// the gradients of the summed outputs with respect to inputs, without touching any .grad. Every
// input must be used by the outputs. With createGraph the results are differentiable.
func (s *Scope) Gradients(outputs, inputs []*Tensor, createGraph bool) []*Tensor {
	if !s.ready("Gradients", outputs...) || !s.ready("Gradients", inputs...) {
		return nil
	}
	if len(outputs) == 0 || len(inputs) == 0 {
		s.fail("Gradients", "need at least one output and one input")
		return nil
	}
	hs := make([]C.hdge_tensor, len(outputs)+2*len(inputs))
	outs, ins, res := hs[:len(outputs)], hs[len(outputs):len(outputs)+len(inputs)], hs[len(outputs)+len(inputs):]
	for i, t := range outputs {
		outs[i] = t.h
	}
	for i, t := range inputs {
		ins[i] = t.h
	}
	if e := C.hdge_gradients(&outs[0], C.int(len(outs)), &ins[0], C.int(len(ins)), cbool(createGraph), &res[0]); e != nil {
		s.failC("Gradients", e)
		return nil
	}
	grads := make([]*Tensor, len(inputs))
	for i, h := range res {
		if h != nil {
			grads[i] = s.add(&Tensor{h: h})
		}
	}
	return grads
}
