package torch

/*
#include "hdge_torch.h"
*/
import "C"

import "fmt"

// Precision is the compute type of a scope's matrix work: Conv2d, Linear and Matmul. Everything
// else runs in its inputs' dtype, and the losses and normalisations (Softmax, LogSoftmax, LogSumExp,
// CrossEntropy) upcast reduced-precision inputs to float32. That is mixed precision as
// torch.autocast does it: parameters, their gradients and optimiser state stay float32, only the
// copies the matrix kernels read are converted.
type Precision int

const (
	FP32 Precision = iota
	BF16
	FP16
)

var precisionNames = [...]string{"fp32", "bf16", "fp16"}

func (p Precision) String() string {
	if p >= 0 && int(p) < len(precisionNames) {
		return precisionNames[p]
	}
	return fmt.Sprintf("precision(%d)", int(p))
}

// DType is the element type the precision computes in.
func (p Precision) DType() DType {
	switch p {
	case BF16:
		return BFloat16
	case FP16:
		return Float16
	}
	return Float32
}

// ParsePrecision reads "fp32", "bf16" or "fp16".
func ParsePrecision(s string) (Precision, error) {
	for i, n := range precisionNames {
		if s == n {
			return Precision(i), nil
		}
	}
	return FP32, fmt.Errorf("unknown precision %q: want fp32, bf16 or fp16", s)
}

// SetPrecision sets the compute type of this scope's later Conv2d, Linear and Matmul calls and of
// its children's. Under BF16 or FP16 the weights and biases of Conv2d and Linear are converted once
// and the copies cached in this scope: a step that runs the forward pass several times (SGLD, PGD)
// converts each parameter once, the copies are freed when the scope closes, and a copy whose source
// changed in place since (an optimiser step, a loaded state dict) is made again. Like grad mode it is
// applied inside each C call; libtorch's thread-local autocast state is never used.
func (s *Scope) SetPrecision(p Precision) {
	if p < FP32 || p > FP16 {
		s.fail("SetPrecision", "unknown precision "+p.String())
		return
	}
	s.prec = p
	if p != FP32 && (s.cache == nil || s.cache.owner != s) {
		s.cache = &castCache{owner: s, m: map[*Tensor]castEntry{}}
	}
}

// Precision is the scope's compute type (FP32 unless SetPrecision changed it).
func (s *Scope) Precision() Precision { return s.prec }

// CachedCasts is the number of converted parameter copies the scope's cache holds (those of its
// children included); tests use it to see that copies are reused.
func (s *Scope) CachedCasts() int {
	if s.cache == nil {
		return 0
	}
	return len(s.cache.m)
}

// castCache maps a source tensor to its converted copy, owned by the scope that set the precision.
// Keys are the Go tensors, not their C handles: a cached key stays reachable, so a freed handle's
// address reused by a new tensor can never hit a stale entry.
type castCache struct {
	owner *Scope
	m     map[*Tensor]castEntry
}

type castEntry struct {
	cast    *Tensor
	dtype   DType
	version int64 // the source's version counter when the copy was made
	grad    bool  // made with grad recording, so gradients flow from it to the source
}

// computeDType is the C dtype argument for the scope's matrix ops: -1 computes in the inputs' dtype.
func (s *Scope) computeDType() C.int {
	if s.prec == FP32 {
		return -1
	}
	return C.int(s.prec.DType())
}

// castParam is w converted to the scope's compute type, from the cache when the copy is current.
// Tensors that are not floating point (or already of the type) pass through unchanged. A copy made
// without grad recording is not reused by an op that records: its gradient would not reach w.
func (s *Scope) castParam(op string, w *Tensor) *Tensor {
	if w == nil || s.prec == FP32 || s.err != nil {
		return w
	}
	dt := s.prec.DType()
	src := w.DType()
	if src == dt || (src != Float32 && src != Float64) {
		return w
	}
	c := s.cache
	if c == nil || c.owner.closed {
		return s.ToDType(w, dt)
	}
	ver := int64(C.hdge_tensor_version(w.h))
	if e, ok := c.m[w]; ok && e.cast.live() && e.dtype == dt && e.version == ver && ver >= 0 && (e.grad || s.noGrad) {
		return e.cast
	}
	if e, ok := c.m[w]; ok {
		e.cast.Free()
		delete(c.m, w)
	}
	r := &Tensor{}
	if e := C.hdge_to(w.h, -1, 0, C.int(dt), s.grad(), &r.h); e != nil {
		s.failC(op, e)
		return nil
	}
	c.owner.add(r)
	c.m[w] = castEntry{cast: r, dtype: dt, version: ver, grad: !s.noGrad}
	return r
}

// upcast is a reduced-precision a converted to float32 under a reduced-precision scope, for the ops
// that autocast keeps in float32 (softmax, logsumexp, the losses); otherwise a itself.
func (s *Scope) upcast(a *Tensor) *Tensor {
	if s.prec == FP32 || a == nil || s.err != nil {
		return a
	}
	if dt := a.DType(); dt == BFloat16 || dt == Float16 {
		return s.ToDType(a, Float32)
	}
	return a
}
