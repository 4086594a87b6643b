package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"math"
	"unsafe"
)

// Each op checks its inputs, makes one C call that applies the scope's grad mode, and adopts the
// result into the scope. The *Tensor is allocated first so that C writes the handle straight into
// it, which saves an escaping out-variable per call.

func (s *Scope) unary(op string, code C.int, a *Tensor) *Tensor {
	if !s.ready1(op, a) {
		return nil
	}
	t := &Tensor{}
	if e := C.hdge_unary(code, a.h, s.grad(), &t.h); e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

func (s *Scope) binary(op string, code C.int, a, b *Tensor) *Tensor {
	if !s.ready2(op, a, b) {
		return nil
	}
	t := &Tensor{}
	if e := C.hdge_binary(code, a.h, b.h, s.grad(), &t.h); e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

func (s *Scope) scalar(op string, code C.int, a *Tensor, v float64) *Tensor {
	if !s.ready1(op, a) {
		return nil
	}
	t := &Tensor{}
	if e := C.hdge_scalar(code, a.h, C.double(v), s.grad(), &t.h); e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

func (s *Scope) reduce(op string, code C.int, a *Tensor, dims []int, keep bool) *Tensor {
	if !s.ready1(op, a) {
		return nil
	}
	d := s.dimsArg(dims)
	t := &Tensor{}
	if e := C.hdge_reduce(code, a.h, int64Ptr(d), C.int(len(d)), cbool(len(dims) == 0), cbool(keep), s.grad(), &t.h); e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// ---- conversion and views ----

// To copies t to dev (or returns an alias when it is already there).
func (s *Scope) To(t *Tensor, dev Device) *Tensor {
	if !s.ready1("To", t) {
		return nil
	}
	kind, index, ok := dev.c()
	if !ok {
		s.fail("To", "unknown device "+dev.String())
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_to(t.h, kind, index, -1, s.grad(), &r.h); e != nil {
		s.failC("To", e)
		return nil
	}
	return s.add(r)
}

// ToDType converts t to dt (an alias when it already has that dtype).
func (s *Scope) ToDType(t *Tensor, dt DType) *Tensor {
	if !s.ready1("ToDType", t) {
		return nil
	}
	if !dt.valid() {
		s.fail("ToDType", "unknown dtype "+dt.String())
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_to(t.h, -1, 0, C.int(dt), s.grad(), &r.h); e != nil {
		s.failC("ToDType", e)
		return nil
	}
	return s.add(r)
}

// Contiguous is t laid out row-major (an alias when it already is).
func (s *Scope) Contiguous(t *Tensor) *Tensor { return s.unary("Contiguous", C.HDGE_CONTIGUOUS, t) }

// ChannelsLast is a 4-d t laid out NHWC in memory (an alias when it already is): same shape and
// values. Convolutions on channels-last inputs and weights skip oneDNN's layout reorders, and the
// layout carries through element-wise ops, batch norm and pooling.
func (s *Scope) ChannelsLast(t *Tensor) *Tensor {
	return s.unary("ChannelsLast", C.HDGE_CHANNELS_LAST, t)
}

// Clone is a copy of t that autograd connects to t.
func (s *Scope) Clone(t *Tensor) *Tensor { return s.unary("Clone", C.HDGE_CLONE, t) }

// Detach is t cut from the autograd graph, sharing storage.
func (s *Scope) Detach(t *Tensor) *Tensor { return s.unary("Detach", C.HDGE_DETACH, t) }

// Reshape is t with the given sizes (one may be -1; none gives a 0-dimensional scalar).
func (s *Scope) Reshape(t *Tensor, shape ...int64) *Tensor {
	if !s.ready1("Reshape", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_reshape(t.h, int64Ptr(shape), C.int(len(shape)), s.grad(), &r.h); e != nil {
		s.failC("Reshape", e)
		return nil
	}
	return s.add(r)
}

// Transpose swaps dimensions d0 and d1 (a view).
func (s *Scope) Transpose(t *Tensor, d0, d1 int) *Tensor {
	if !s.ready1("Transpose", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_transpose(t.h, C.int64_t(d0), C.int64_t(d1), s.grad(), &r.h); e != nil {
		s.failC("Transpose", e)
		return nil
	}
	return s.add(r)
}

// Permute reorders the dimensions (a view).
func (s *Scope) Permute(t *Tensor, dims ...int) *Tensor {
	if !s.ready1("Permute", t) {
		return nil
	}
	d := s.dimsArg(dims)
	r := &Tensor{}
	if e := C.hdge_permute(t.h, int64Ptr(d), C.int(len(d)), s.grad(), &r.h); e != nil {
		s.failC("Permute", e)
		return nil
	}
	return s.add(r)
}

// Narrow is elements [start, start+length) of dimension dim: a view sharing t's storage, so
// writing into it (CopyInto) writes into t.
func (s *Scope) Narrow(t *Tensor, dim int, start, length int64) *Tensor {
	if !s.ready1("Narrow", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), s.grad(), &r.h); e != nil {
		s.failC("Narrow", e)
		return nil
	}
	return s.add(r)
}

// Squeeze drops dimension dim when its size is 1.
func (s *Scope) Squeeze(t *Tensor, dim int) *Tensor {
	if !s.ready1("Squeeze", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_squeeze(t.h, C.int64_t(dim), s.grad(), &r.h); e != nil {
		s.failC("Squeeze", e)
		return nil
	}
	return s.add(r)
}

// Unsqueeze inserts a size-1 dimension at dim.
func (s *Scope) Unsqueeze(t *Tensor, dim int) *Tensor {
	if !s.ready1("Unsqueeze", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_unsqueeze(t.h, C.int64_t(dim), s.grad(), &r.h); e != nil {
		s.failC("Unsqueeze", e)
		return nil
	}
	return s.add(r)
}

// Flatten merges dimensions startDim..endDim (inclusive; negative counts from the end).
func (s *Scope) Flatten(t *Tensor, startDim, endDim int) *Tensor {
	if !s.ready1("Flatten", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_flatten(t.h, C.int64_t(startDim), C.int64_t(endDim), s.grad(), &r.h); e != nil {
		s.failC("Flatten", e)
		return nil
	}
	return s.add(r)
}

// Flip reverses the order of elements along dims.
func (s *Scope) Flip(x *Tensor, dims ...int) *Tensor {
	if !s.ready1("Flip", x) {
		return nil
	}
	d := s.dimsArg(dims)
	r := &Tensor{}
	if e := C.hdge_flip(x.h, int64Ptr(d), C.int(len(d)), s.grad(), &r.h); e != nil {
		s.failC("Flip", e)
		return nil
	}
	return s.add(r)
}

// ---- in place ----

// CopyInto copies src into dst (broadcasting, converting dtype and device), without recording
// autograd. Errors go to the scope.
func (s *Scope) CopyInto(dst, src *Tensor) {
	if !s.ready2("CopyInto", dst, src) {
		return
	}
	if e := C.hdge_copy_(dst.h, src.h); e != nil {
		s.failC("CopyInto", e)
	}
}

// ZeroInPlace sets every element of t to zero.
func (s *Scope) ZeroInPlace(t *Tensor) {
	if !s.ready1("ZeroInPlace", t) {
		return
	}
	if e := C.hdge_zero_(t.h); e != nil {
		s.failC("ZeroInPlace", e)
	}
}

// FillInPlace sets every element of t to v.
func (s *Scope) FillInPlace(t *Tensor, v float64) {
	if !s.ready1("FillInPlace", t) {
		return
	}
	if e := C.hdge_fill_(t.h, C.double(v)); e != nil {
		s.failC("FillInPlace", e)
	}
}

// ---- neural-network maths ----

// handleOrNil is t's handle, or NULL for an absent optional tensor.
func handleOrNil(t *Tensor) C.hdge_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

// optionalOK checks an optional input: nil is allowed, a freed tensor is an error.
func (s *Scope) optionalOK(op string, ts ...*Tensor) bool {
	for _, t := range ts {
		if t != nil && t.h == nil {
			s.fail(op, "optional input was freed")
			return false
		}
	}
	return true
}

// Conv2d is a 2-D convolution with square stride and padding (b may be nil). Under a BF16 or FP16
// scope (SetPrecision) it computes in that type: x is converted, w and b come from the scope's cache
// of converted parameters, and the result has the reduced type.
func (s *Scope) Conv2d(x, w, b *Tensor, stride, padding int) *Tensor {
	return s.Conv2dGrouped(x, w, b, stride, padding, 1, 1)
}

// Conv2dGrouped is Conv2d with dilation and groups.
func (s *Scope) Conv2dGrouped(x, w, b *Tensor, stride, padding, dilation, groups int) *Tensor {
	if !s.ready2("Conv2d", x, w) || !s.optionalOK("Conv2d", b) {
		return nil
	}
	w, b = s.castParam("Conv2d", w), s.castParam("Conv2d", b)
	if s.err != nil {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_conv2d(x.h, w.h, handleOrNil(b), C.int64_t(stride), C.int64_t(stride), C.int64_t(padding),
		C.int64_t(padding), C.int64_t(dilation), C.int64_t(groups), s.computeDType(), s.grad(), &r.h); e != nil {
		s.failC("Conv2d", e)
		return nil
	}
	return s.add(r)
}

// Conv2dPadded is Conv2d with separate vertical and horizontal padding, for 1×k and k×1 kernels.
func (s *Scope) Conv2dPadded(x, w, b *Tensor, stride, padH, padW int) *Tensor {
	if !s.ready2("Conv2d", x, w) || !s.optionalOK("Conv2d", b) {
		return nil
	}
	w, b = s.castParam("Conv2d", w), s.castParam("Conv2d", b)
	if s.err != nil {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_conv2d(x.h, w.h, handleOrNil(b), C.int64_t(stride), C.int64_t(stride), C.int64_t(padH),
		C.int64_t(padW), 1, 1, s.computeDType(), s.grad(), &r.h); e != nil {
		s.failC("Conv2d", e)
		return nil
	}
	return s.add(r)
}

// Linear is x·wᵀ + b (b may be nil), in the scope's precision as Conv2d is.
func (s *Scope) Linear(x, w, b *Tensor) *Tensor {
	if !s.ready2("Linear", x, w) || !s.optionalOK("Linear", b) {
		return nil
	}
	w, b = s.castParam("Linear", w), s.castParam("Linear", b)
	if s.err != nil {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_linear(x.h, w.h, handleOrNil(b), s.computeDType(), s.grad(), &r.h); e != nil {
		s.failC("Linear", e)
		return nil
	}
	return s.add(r)
}

// Matmul is torch.matmul (broadcasting batch dimensions). Under a BF16 or FP16 scope both operands
// are converted to that type (neither is cached: they are usually activations) and so is the result.
func (s *Scope) Matmul(a, b *Tensor) *Tensor {
	if s.prec != FP32 && s.ready2("Matmul", a, b) {
		dt := s.prec.DType()
		if a.DType() != dt {
			a = s.ToDType(a, dt)
		}
		if b.DType() != dt {
			b = s.ToDType(b, dt)
		}
	}
	return s.binary("Matmul", C.HDGE_MATMUL, a, b)
}

// BatchNorm is F.batch_norm. w, b, runMean and runVar may be nil; in training mode the running
// statistics (when given) are updated in place with momentum.
func (s *Scope) BatchNorm(x, w, b, runMean, runVar *Tensor, train bool, momentum, eps float64) *Tensor {
	if !s.ready1("BatchNorm", x) || !s.optionalOK("BatchNorm", w, b, runMean, runVar) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_batch_norm(x.h, handleOrNil(w), handleOrNil(b), handleOrNil(runMean), handleOrNil(runVar),
		cbool(train), C.double(momentum), C.double(eps), s.grad(), &r.h); e != nil {
		s.failC("BatchNorm", e)
		return nil
	}
	return s.add(r)
}

// Dropout zeroes elements with probability p and rescales the rest when train is true, drawing
// the mask from g (PyTorch's mask for the same generator state); it is the identity otherwise.
// Training with p > 0 needs a generator: a run owns its randomness, so nothing falls back to
// libtorch's global generator.
func (s *Scope) Dropout(x *Tensor, p float64, train bool, g *Generator) *Tensor {
	if !s.ready1("Dropout", x) {
		return nil
	}
	var gh C.hdge_generator
	if train && p > 0 {
		var ok bool
		if g == nil {
			s.fail("Dropout", "dropout in training mode needs a generator")
			return nil
		}
		if gh, ok = s.genArg("Dropout", g); !ok {
			return nil
		}
	}
	r := &Tensor{}
	if e := C.hdge_dropout(x.h, C.double(p), cbool(train), gh, s.grad(), &r.h); e != nil {
		s.failC("Dropout", e)
		return nil
	}
	return s.add(r)
}

// LeakyReLU is max(x, slope·x).
func (s *Scope) LeakyReLU(x *Tensor, slope float64) *Tensor {
	return s.scalar("LeakyReLU", C.HDGE_LEAKY_RELU, x, slope)
}

// ReLU is max(x, 0).
func (s *Scope) ReLU(x *Tensor) *Tensor { return s.unary("ReLU", C.HDGE_RELU, x) }

// Sigmoid is 1/(1+exp(-x)).
func (s *Scope) Sigmoid(x *Tensor) *Tensor { return s.unary("Sigmoid", C.HDGE_SIGMOID, x) }

// Tanh is the hyperbolic tangent.
func (s *Scope) Tanh(x *Tensor) *Tensor { return s.unary("Tanh", C.HDGE_TANH, x) }

func (s *Scope) pool(op string, x *Tensor, kernel, stride, padding int) *Tensor {
	if !s.ready1(op, x) {
		return nil
	}
	r := &Tensor{}
	var e *C.hdge_error
	switch op {
	case "AvgPool2d":
		e = C.hdge_avg_pool2d(x.h, C.int64_t(kernel), C.int64_t(stride), C.int64_t(padding), 1, s.grad(), &r.h)
	case "AvgPool2dExcludePad":
		e = C.hdge_avg_pool2d(x.h, C.int64_t(kernel), C.int64_t(stride), C.int64_t(padding), 0, s.grad(), &r.h)
	default:
		e = C.hdge_max_pool2d(x.h, C.int64_t(kernel), C.int64_t(stride), C.int64_t(padding), s.grad(), &r.h)
	}
	if e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(r)
}

// AvgPool2d averages square windows (stride <= 0 means stride = kernel; padding counts in the
// average, as PyTorch's default count_include_pad=True).
func (s *Scope) AvgPool2d(x *Tensor, kernel, stride, padding int) *Tensor {
	return s.pool("AvgPool2d", x, kernel, stride, padding)
}

// AvgPool2dExcludePad is AvgPool2d with count_include_pad=False: a window overlapping the border
// is divided by its in-bounds size, so borders are not darkened by the zero padding.
func (s *Scope) AvgPool2dExcludePad(x *Tensor, kernel, stride, padding int) *Tensor {
	return s.pool("AvgPool2dExcludePad", x, kernel, stride, padding)
}

// MaxPool2d takes the maximum of square windows (stride <= 0 means stride = kernel).
func (s *Scope) MaxPool2d(x *Tensor, kernel, stride, padding int) *Tensor {
	return s.pool("MaxPool2d", x, kernel, stride, padding)
}

// AdaptiveAvgPool2d averages to an oh×ow output.
func (s *Scope) AdaptiveAvgPool2d(x *Tensor, oh, ow int) *Tensor {
	if !s.ready1("AdaptiveAvgPool2d", x) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_adaptive_avg_pool2d(x.h, C.int64_t(oh), C.int64_t(ow), s.grad(), &r.h); e != nil {
		s.failC("AdaptiveAvgPool2d", e)
		return nil
	}
	return s.add(r)
}

// InterpolateBilinear resizes a 4-d x to h×w as F.interpolate(x, size=(h, w), mode="bilinear",
// align_corners=alignCorners).
func (s *Scope) InterpolateBilinear(x *Tensor, h, w int, alignCorners bool) *Tensor {
	if !s.ready1("InterpolateBilinear", x) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_upsample_bilinear2d(x.h, C.int64_t(h), C.int64_t(w), cbool(alignCorners), s.grad(), &r.h); e != nil {
		s.failC("InterpolateBilinear", e)
		return nil
	}
	return s.add(r)
}

// Add is a+b with broadcasting.
func (s *Scope) Add(a, b *Tensor) *Tensor { return s.binary("Add", C.HDGE_ADD, a, b) }

// Sub is a-b with broadcasting.
func (s *Scope) Sub(a, b *Tensor) *Tensor { return s.binary("Sub", C.HDGE_SUB, a, b) }

// Mul is a*b with broadcasting.
func (s *Scope) Mul(a, b *Tensor) *Tensor { return s.binary("Mul", C.HDGE_MUL, a, b) }

// Div is true division a/b with broadcasting.
func (s *Scope) Div(a, b *Tensor) *Tensor { return s.binary("Div", C.HDGE_DIV, a, b) }

// Minimum is the element-wise minimum.
func (s *Scope) Minimum(a, b *Tensor) *Tensor { return s.binary("Minimum", C.HDGE_MINIMUM, a, b) }

// Maximum is the element-wise maximum.
func (s *Scope) Maximum(a, b *Tensor) *Tensor { return s.binary("Maximum", C.HDGE_MAXIMUM, a, b) }

// Eq is a == b as a bool tensor.
func (s *Scope) Eq(a, b *Tensor) *Tensor { return s.binary("Eq", C.HDGE_EQ, a, b) }

// AddScalar is a+v. Integer-valued v keeps an integer tensor integer, like Python's t + 1.
func (s *Scope) AddScalar(a *Tensor, v float64) *Tensor {
	return s.scalar("AddScalar", C.HDGE_ADD_SCALAR, a, v)
}

// SubScalar is a-v.
func (s *Scope) SubScalar(a *Tensor, v float64) *Tensor {
	return s.scalar("SubScalar", C.HDGE_SUB_SCALAR, a, v)
}

// MulScalar is a*v.
func (s *Scope) MulScalar(a *Tensor, v float64) *Tensor {
	return s.scalar("MulScalar", C.HDGE_MUL_SCALAR, a, v)
}

// DivScalar is a/v (true division).
func (s *Scope) DivScalar(a *Tensor, v float64) *Tensor {
	return s.scalar("DivScalar", C.HDGE_DIV_SCALAR, a, v)
}

// Pow is a**e.
func (s *Scope) Pow(a *Tensor, e float64) *Tensor { return s.scalar("Pow", C.HDGE_POW_SCALAR, a, e) }

// Neg is -a.
func (s *Scope) Neg(a *Tensor) *Tensor { return s.unary("Neg", C.HDGE_NEG, a) }

// Abs is |a|.
func (s *Scope) Abs(a *Tensor) *Tensor { return s.unary("Abs", C.HDGE_ABS, a) }

// Exp is e**a.
func (s *Scope) Exp(a *Tensor) *Tensor { return s.unary("Exp", C.HDGE_EXP, a) }

// Log is the natural logarithm.
func (s *Scope) Log(a *Tensor) *Tensor { return s.unary("Log", C.HDGE_LOG, a) }

// Log1p is log(1+a), accurate for small a.
func (s *Scope) Log1p(a *Tensor) *Tensor { return s.unary("Log1p", C.HDGE_LOG1P, a) }

// Sqrt is the square root.
func (s *Scope) Sqrt(a *Tensor) *Tensor { return s.unary("Sqrt", C.HDGE_SQRT, a) }

// Sign is -1, 0 or 1.
func (s *Scope) Sign(a *Tensor) *Tensor { return s.unary("Sign", C.HDGE_SIGN, a) }

// Square is a*a.
func (s *Scope) Square(a *Tensor) *Tensor { return s.unary("Square", C.HDGE_SQUARE, a) }

// Clamp limits a to [lo, hi]; an infinite bound (math.Inf) leaves that side open.
func (s *Scope) Clamp(a *Tensor, lo, hi float64) *Tensor {
	if !s.ready1("Clamp", a) {
		return nil
	}
	hasLo, hasHi := !math.IsInf(lo, -1), !math.IsInf(hi, 1)
	r := &Tensor{}
	if e := C.hdge_clamp(a.h, cbool(hasLo), C.double(lo), cbool(hasHi), C.double(hi), s.grad(), &r.h); e != nil {
		s.failC("Clamp", e)
		return nil
	}
	return s.add(r)
}

// Where picks a where cond is true and b elsewhere (broadcasting).
func (s *Scope) Where(cond, a, b *Tensor) *Tensor {
	if !s.ready("Where", cond, a, b) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_where(cond.h, a.h, b.h, s.grad(), &r.h); e != nil {
		s.failC("Where", e)
		return nil
	}
	return s.add(r)
}

// Sum sums over dims (nil or empty: all dims, giving a scalar unless keep).
func (s *Scope) Sum(a *Tensor, dims []int, keep bool) *Tensor {
	return s.reduce("Sum", C.HDGE_SUM, a, dims, keep)
}

// Mean averages over dims (nil or empty: all dims).
func (s *Scope) Mean(a *Tensor, dims []int, keep bool) *Tensor {
	return s.reduce("Mean", C.HDGE_MEAN, a, dims, keep)
}

// LogSumExp is log(sum(exp(a))) over dims (nil or empty: all dims), computed stably.
func (s *Scope) LogSumExp(a *Tensor, dims []int, keep bool) *Tensor {
	return s.reduce("LogSumExp", C.HDGE_LOGSUMEXP, s.upcast(a), dims, keep)
}

// Max is the maximum along dim and its index.
func (s *Scope) Max(a *Tensor, dim int, keep bool) (values, indices *Tensor) {
	if !s.ready1("Max", a) {
		return nil, nil
	}
	v, i := &Tensor{}, &Tensor{}
	if e := C.hdge_max_dim(a.h, C.int64_t(dim), cbool(keep), s.grad(), &v.h, &i.h); e != nil {
		s.failC("Max", e)
		return nil, nil
	}
	return s.add(v), s.add(i)
}

// Argmax is the index of the maximum along dim.
func (s *Scope) Argmax(a *Tensor, dim int, keep bool) *Tensor {
	if !s.ready1("Argmax", a) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_argmax(a.h, C.int64_t(dim), cbool(keep), s.grad(), &r.h); e != nil {
		s.failC("Argmax", e)
		return nil
	}
	return s.add(r)
}

// LogSoftmax is log(softmax(a)) along dim. Like Softmax, LogSumExp and CrossEntropy it computes in
// float32 from a bfloat16 or float16 input when the scope's precision is reduced (see Precision).
func (s *Scope) LogSoftmax(a *Tensor, dim int) *Tensor {
	if !s.ready1("LogSoftmax", a) {
		return nil
	}
	a = s.upcast(a)
	if a == nil {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_log_softmax(a.h, C.int64_t(dim), s.grad(), &r.h); e != nil {
		s.failC("LogSoftmax", e)
		return nil
	}
	return s.add(r)
}

// Softmax along dim.
func (s *Scope) Softmax(a *Tensor, dim int) *Tensor {
	if !s.ready1("Softmax", a) {
		return nil
	}
	a = s.upcast(a)
	if a == nil {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_softmax(a.h, C.int64_t(dim), s.grad(), &r.h); e != nil {
		s.failC("Softmax", e)
		return nil
	}
	return s.add(r)
}

// Reduction says how a loss combines its per-sample values.
type Reduction int

const (
	Mean Reduction = iota
	Sum
	None
)

// CrossEntropy is F.cross_entropy over logits [N, C, ...]: target is either int64 class indices
// [N, ...] or float class probabilities shaped like logits. labelSmoothing mixes the target with
// the uniform distribution.
func (s *Scope) CrossEntropy(logits, target *Tensor, labelSmoothing float64, red Reduction) *Tensor {
	if !s.ready2("CrossEntropy", logits, target) {
		return nil
	}
	logits, target = s.upcast(logits), s.upcast(target)
	if s.err != nil {
		return nil
	}
	var cred C.int
	switch red {
	case Mean:
		cred = 1
	case Sum:
		cred = 2
	case None:
		cred = 0
	default:
		s.fail("CrossEntropy", "unknown reduction")
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_cross_entropy(logits.h, target.h, C.double(labelSmoothing), cred, s.grad(), &r.h); e != nil {
		s.failC("CrossEntropy", e)
		return nil
	}
	return s.add(r)
}

// Normalize is F.normalize: a / max(‖a‖_p along dim, eps).
func (s *Scope) Normalize(a *Tensor, p float64, dim int, eps float64) *Tensor {
	if !s.ready1("Normalize", a) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_normalize(a.h, C.double(p), C.int64_t(dim), C.double(eps), s.grad(), &r.h); e != nil {
		s.failC("Normalize", e)
		return nil
	}
	return s.add(r)
}

// Norm is the p-norm over dims (nil or empty: all dims).
func (s *Scope) Norm(a *Tensor, p float64, dims []int, keep bool) *Tensor {
	if !s.ready1("Norm", a) {
		return nil
	}
	d := s.dimsArg(dims)
	r := &Tensor{}
	if e := C.hdge_norm(a.h, C.double(p), int64Ptr(d), C.int(len(d)), cbool(len(dims) == 0), cbool(keep), s.grad(), &r.h); e != nil {
		s.failC("Norm", e)
		return nil
	}
	return s.add(r)
}

// Gather picks a[..., idx[...], ...] along dim (torch.gather).
func (s *Scope) Gather(a *Tensor, dim int, idx *Tensor) *Tensor {
	if !s.ready2("Gather", a, idx) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_gather(a.h, C.int64_t(dim), idx.h, s.grad(), &r.h); e != nil {
		s.failC("Gather", e)
		return nil
	}
	return s.add(r)
}

// IndexSelect picks the slices idx (1-D int64) of dimension dim.
func (s *Scope) IndexSelect(a *Tensor, dim int, idx *Tensor) *Tensor {
	if !s.ready2("IndexSelect", a, idx) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_index_select(a.h, C.int64_t(dim), idx.h, s.grad(), &r.h); e != nil {
		s.failC("IndexSelect", e)
		return nil
	}
	return s.add(r)
}

// Cat concatenates along an existing dimension.
func (s *Scope) Cat(ts []*Tensor, dim int) *Tensor { return s.list("Cat", ts, dim) }

// Stack joins along a new dimension.
func (s *Scope) Stack(ts []*Tensor, dim int) *Tensor { return s.list("Stack", ts, dim) }

func (s *Scope) list(op string, ts []*Tensor, dim int) *Tensor {
	hs, ok := s.handlesArg(op, ts)
	if !ok {
		return nil
	}
	var p *C.hdge_tensor
	if len(hs) > 0 {
		p = &hs[0]
	}
	r := &Tensor{}
	var e *C.hdge_error
	if op == "Cat" {
		e = C.hdge_cat(p, C.int(len(hs)), C.int64_t(dim), s.grad(), &r.h)
	} else {
		e = C.hdge_stack(p, C.int(len(hs)), C.int64_t(dim), s.grad(), &r.h)
	}
	if e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(r)
}

// Einsum is torch.einsum.
func (s *Scope) Einsum(eq string, ts ...*Tensor) *Tensor {
	hs, ok := s.handlesArg("Einsum", ts)
	if !ok {
		return nil
	}
	var p *C.hdge_tensor
	if len(hs) > 0 {
		p = &hs[0]
	}
	// The equation's bytes are passed in place (Go string data holds no pointers), saving a
	// C.CString allocation and free per call.
	var eqp *C.char
	if len(eq) > 0 {
		eqp = (*C.char)(unsafe.Pointer(unsafe.StringData(eq)))
	}
	r := &Tensor{}
	if e := C.hdge_einsum(eqp, C.int64_t(len(eq)), p, C.int(len(hs)), s.grad(), &r.h); e != nil {
		s.failC("Einsum", e)
		return nil
	}
	return s.add(r)
}

// ReflectPad2d pads the last two dimensions by reflection (F.pad mode="reflect").
func (s *Scope) ReflectPad2d(x *Tensor, left, right, top, bottom int) *Tensor {
	if !s.ready1("ReflectPad2d", x) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_reflect_pad2d(x.h, C.int64_t(left), C.int64_t(right), C.int64_t(top), C.int64_t(bottom), s.grad(), &r.h); e != nil {
		s.failC("ReflectPad2d", e)
		return nil
	}
	return s.add(r)
}

// OneHot is F.one_hot: int64 indices to an int64 tensor with a trailing class dimension.
func (s *Scope) OneHot(idx *Tensor, numClasses int) *Tensor {
	if !s.ready1("OneHot", idx) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_one_hot(idx.h, C.int64_t(numClasses), &r.h); e != nil {
		s.failC("OneHot", e)
		return nil
	}
	return s.add(r)
}
