package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Tensor is a handle to a libtorch tensor owned by one Scope. Its methods read metadata or copy
// data out; ops live on Scope.
type Tensor struct {
	h   C.hdge_tensor
	s   *Scope
	idx int // position in s.ts
}

func (t *Tensor) live() bool { return t != nil && t.h != nil }

func errFreed(op string) error { return &Error{Op: op, Msg: "tensor is nil or freed"} }

// Shape is a copy of the sizes (nil for a nil or freed tensor).
func (t *Tensor) Shape() []int64 {
	if !t.live() {
		return nil
	}
	buf := make([]int64, 8)
	n := int(C.hdge_tensor_shape(t.h, int64Ptr(buf), C.int(len(buf))))
	if n > len(buf) {
		buf = make([]int64, n)
		C.hdge_tensor_shape(t.h, int64Ptr(buf), C.int(len(buf)))
	}
	if n < 0 {
		return nil
	}
	return buf[:n]
}

// Dim is the number of dimensions (-1 for a nil or freed tensor).
func (t *Tensor) Dim() int {
	if !t.live() {
		return -1
	}
	return int(C.hdge_tensor_dim(t.h))
}

// Size is the size of dimension dim, counting from the end when negative; -1 when dim is out of
// range or the tensor is nil or freed.
func (t *Tensor) Size(dim int) int64 {
	if !t.live() {
		return -1
	}
	return int64(C.hdge_tensor_size(t.h, C.int64_t(dim)))
}

// Numel is the number of elements (0 for a nil or freed tensor).
func (t *Tensor) Numel() int64 {
	if !t.live() {
		return 0
	}
	return int64(C.hdge_tensor_numel(t.h))
}

// DType is the element type; a dtype outside the seven supported ones reads as DType(-1).
func (t *Tensor) DType() DType {
	if !t.live() {
		return -1
	}
	return DType(C.hdge_tensor_dtype(t.h))
}

// Device is where the tensor lives.
func (t *Tensor) Device() Device {
	if !t.live() {
		return Device{}
	}
	var kind, index C.int
	C.hdge_tensor_device(t.h, &kind, &index)
	if kind == C.HDGE_CUDA {
		return CUDA(int(index))
	}
	return CPU
}

// RequiresGrad reports whether autograd tracks this tensor.
func (t *Tensor) RequiresGrad() bool {
	return t.live() && C.hdge_tensor_requires_grad(t.h) != 0
}

// SetRequiresGrad marks a leaf tensor (a parameter) for gradient accumulation.
func (t *Tensor) SetRequiresGrad(on bool) error {
	if !t.live() {
		return errFreed("SetRequiresGrad")
	}
	var c C.int
	if on {
		c = 1
	}
	if e := C.hdge_tensor_set_requires_grad(t.h, c); e != nil {
		return takeError("SetRequiresGrad", e)
	}
	return nil
}

// IsChannelsLast reports whether t is a 4-d tensor laid out NHWC in memory. Shapes for which both
// layouts coincide (1×1 spatial, one channel) report false, as libtorch's suggest_memory_format does.
func (t *Tensor) IsChannelsLast() bool {
	return t.live() && C.hdge_tensor_is_channels_last(t.h) != 0
}

// MakeChannelsLast re-lays a 4-d leaf tensor (a parameter) out NHWC in place. The tensor keeps its
// identity, values, shape and requires-grad flag, so optimisers and autograd still refer to it; its
// gradients come back in the same layout.
func (t *Tensor) MakeChannelsLast() error {
	if !t.live() {
		return errFreed("MakeChannelsLast")
	}
	if e := C.hdge_tensor_make_channels_last(t.h); e != nil {
		return takeError("MakeChannelsLast", e)
	}
	return nil
}

// Free releases the tensor now and removes it from its scope. It is idempotent.
func (t *Tensor) Free() {
	if !t.live() {
		return
	}
	C.hdge_tensor_free(t.h)
	t.h = nil
	if t.s != nil {
		t.s.drop(t)
	}
}

func (t *Tensor) String() string {
	if !t.live() {
		return "Tensor(freed)"
	}
	return fmt.Sprintf("Tensor(%v, %v, %v)", t.Shape(), t.DType(), t.Device())
}

// copyOut copies t, converted to dt and moved to the host, into a new slice.
func copyOut[E any](t *Tensor, op string, dt DType) ([]E, error) {
	if !t.live() {
		return nil, errFreed(op)
	}
	n := int64(C.hdge_tensor_numel(t.h))
	out := make([]E, n)
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	if e := C.hdge_tensor_copy_out(t.h, C.int(dt), p, C.int64_t(n)); e != nil {
		return nil, takeError(op, e)
	}
	return out, nil
}

// Float32s copies the elements out in row-major order, converting from any dtype and device.
func (t *Tensor) Float32s() ([]float32, error) { return copyOut[float32](t, "Float32s", Float32) }

// Float64s copies the elements out as float64.
func (t *Tensor) Float64s() ([]float64, error) { return copyOut[float64](t, "Float64s", Float64) }

// Int64s copies the elements out as int64.
func (t *Tensor) Int64s() ([]int64, error) { return copyOut[int64](t, "Int64s", Int64) }

// Uint8s copies the elements out as uint8.
func (t *Tensor) Uint8s() ([]uint8, error) { return copyOut[uint8](t, "Uint8s", Uint8) }

// Bools copies the elements out as bool (non-zero is true).
func (t *Tensor) Bools() ([]bool, error) { return copyOut[bool](t, "Bools", Bool) }

// Item is the value of a one-element tensor.
func (t *Tensor) Item() (float64, error) {
	if !t.live() {
		return 0, errFreed("Item")
	}
	var v C.double
	if e := C.hdge_tensor_item(t.h, &v); e != nil {
		return 0, takeError("Item", e)
	}
	return float64(v), nil
}

// CopyFromFloat32 overwrites the tensor's contents in place from src (same number of elements),
// converting to the tensor's dtype and device, without recording autograd. It lets a training
// loop reuse one input tensor per batch.
func (t *Tensor) CopyFromFloat32(src []float32) error {
	return copyIn(t, "CopyFromFloat32", Float32, unsafe.Pointer(unsafe.SliceData(src)), len(src))
}

// CopyFromInt64 is CopyFromFloat32 for int64 data (labels).
func (t *Tensor) CopyFromInt64(src []int64) error {
	return copyIn(t, "CopyFromInt64", Int64, unsafe.Pointer(unsafe.SliceData(src)), len(src))
}

func copyIn(t *Tensor, op string, dt DType, p unsafe.Pointer, n int) error {
	if !t.live() {
		return errFreed(op)
	}
	if n == 0 {
		p = nil
	}
	if e := C.hdge_tensor_copy_in(t.h, C.int(dt), p, C.int64_t(n)); e != nil {
		return takeError(op, e)
	}
	return nil
}
