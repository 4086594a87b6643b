package torch

/*
#include "hdge_torch.h"
*/
import "C"

import "unsafe"

// Handle is t's C handle (an hdge_tensor) for packages that add C functions of their own to the
// shim, such as torch/dist; nil for a nil or freed tensor. The tensor stays owned by its scope, so
// the handle is valid only until t is freed.
func (t *Tensor) Handle() unsafe.Pointer {
	if !t.live() {
		return nil
	}
	return unsafe.Pointer(t.h)
}

// WrapHandle makes h, a handle a function of the shim has just created (and counted as live), a
// tensor owned by s. A nil h or a closed scope records an error on s and returns nil; the handle is
// freed in the second case so that it does not leak.
func (s *Scope) WrapHandle(op string, h unsafe.Pointer) *Tensor {
	if h == nil {
		s.fail(op, "nil handle")
		return nil
	}
	if s.closed {
		C.hdge_tensor_free(C.hdge_tensor(h))
		s.fail(op, "scope is closed")
		return nil
	}
	return s.add(&Tensor{h: C.hdge_tensor(h)})
}
