package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unsafe"

	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// Save writes named tensors to path as a torch.save file holding one dict (keys sorted), so that
// Python's torch.load and load_state_dict read it. Tensors are copied to the host; the write is
// atomic.
func Save(path string, named map[string]*Tensor) error {
	keys := make([]string, 0, len(named))
	for k := range named {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := ptfile.NewOrderedDict()
	for _, k := range keys {
		pt, err := ToHost(named[k])
		if err != nil {
			return &Error{Op: "Save", Msg: fmt.Sprintf("%s: tensor %q: %v", path, k, err)}
		}
		d.Set(k, pt)
	}
	if err := ptfile.Write(path, d); err != nil {
		return &Error{Op: "Save", Msg: err.Error()}
	}
	return nil
}

// ToHost copies t (any device) into a ptfile.Tensor of its own dtype, ready to be written.
func ToHost(t *Tensor) (*ptfile.Tensor, error) {
	if !t.live() {
		return nil, fmt.Errorf("nil or freed")
	}
	dt := t.DType()
	if !dt.valid() {
		return nil, fmt.Errorf("unsupported dtype")
	}
	n := t.Numel()
	data := make([]byte, n*int64(dt.elemSize()))
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	if e := C.hdge_tensor_copy_out(t.h, C.int(dt), p, C.int64_t(n)); e != nil {
		return nil, takeError("Save", e)
	}
	return &ptfile.Tensor{DType: dt.String(), Shape: t.Shape(), Data: data}, nil
}

// Load reads a torch.save file into CPU tensors of s. The file must hold a dict (a state_dict or
// any dict of tensors); nested dicts and lists are flattened with dotted keys ("model.fc.weight",
// "state.0.exp_avg") and non-tensor values (numbers, strings) are skipped. float16 and bfloat16
// tensors load as float32, int32/int16/int8 as int64.
func Load(s *Scope, path string) (map[string]*Tensor, error) {
	if !s.ready("Load") {
		if s.err != nil {
			return nil, s.err
		}
		return nil, &Error{Op: "Load", Msg: "scope is not usable"}
	}
	v, err := ptfile.Read(path)
	if err != nil {
		return nil, &Error{Op: "Load", Msg: err.Error()}
	}
	switch v.(type) {
	case *ptfile.OrderedDict, map[string]any:
	default:
		return nil, &Error{Op: "Load", Msg: fmt.Sprintf("%s holds a %T, want a dict of tensors", path, v)}
	}
	out := map[string]*Tensor{}
	var made []*Tensor
	fail := func(err error) (map[string]*Tensor, error) {
		for _, t := range made {
			t.Free()
		}
		return nil, err
	}
	var walk func(prefix string, v any) error
	walk = func(prefix string, v any) error {
		join := func(k string) string {
			if prefix == "" {
				return k
			}
			return prefix + "." + k
		}
		switch x := v.(type) {
		case *ptfile.OrderedDict:
			for _, k := range x.Keys {
				if err := walk(join(k), x.Values[k]); err != nil {
					return err
				}
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := walk(join(k), x[k]); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range x {
				if err := walk(join(strconv.Itoa(i)), e); err != nil {
					return err
				}
			}
		case *ptfile.Tensor:
			t, err := s.FromHost(x)
			if err != nil {
				return &Error{Op: "Load", Msg: fmt.Sprintf("%s: tensor %q: %v", path, prefix, err)}
			}
			made = append(made, t)
			out[prefix] = t
		}
		return nil
	}
	if err := walk("", v); err != nil {
		return fail(err)
	}
	return out, nil
}

// FromHost builds a CPU tensor of s from a ptfile.Tensor (float16/bfloat16 widen to float32,
// int32/16/8 to int64).
func (s *Scope) FromHost(pt *ptfile.Tensor) (*Tensor, error) {
	n := pt.Numel()
	for _, d := range pt.Shape {
		if d < 0 {
			return nil, fmt.Errorf("negative size in shape %v", pt.Shape)
		}
	}
	var dt DType
	data := pt.Data
	switch pt.DType {
	case "float32":
		dt = Float32
	case "float64":
		dt = Float64
	case "int64":
		dt = Int64
	case "uint8":
		dt = Uint8
	case "bool":
		dt = Bool
	case "float16", "bfloat16":
		if int64(len(data)) != 2*n {
			return nil, fmt.Errorf("%s data of %d bytes for %d elements", pt.DType, len(data), n)
		}
		dt, data = Float32, widenFloat(pt.DType, data, n)
	case "int32", "int16", "int8":
		size := map[string]int64{"int32": 4, "int16": 2, "int8": 1}[pt.DType]
		if int64(len(data)) != size*n {
			return nil, fmt.Errorf("%s data of %d bytes for %d elements", pt.DType, len(data), n)
		}
		dt, data = Int64, widenInt(size, data, n)
	default:
		return nil, fmt.Errorf("unsupported dtype %q", pt.DType)
	}
	if int64(len(data)) != n*int64(dt.elemSize()) {
		return nil, fmt.Errorf("%d bytes of data for shape %v of %s", len(data), pt.Shape, pt.DType)
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	t := &Tensor{}
	if e := C.hdge_from_data(C.int(dt), int64Ptr(pt.Shape), C.int(len(pt.Shape)), p, &t.h); e != nil {
		return nil, takeError("Load", e)
	}
	return s.add(t), nil
}

func widenFloat(dtype string, b []byte, n int64) []byte {
	out := make([]byte, 4*n)
	for i := range n {
		h := binary.LittleEndian.Uint16(b[2*i:])
		var f uint32
		if dtype == "bfloat16" {
			f = uint32(h) << 16
		} else {
			f = math.Float32bits(halfToFloat(h))
		}
		binary.LittleEndian.PutUint32(out[4*i:], f)
	}
	return out
}

// halfToFloat converts an IEEE 754 binary16 value.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float32(h & 0x3ff)
	switch exp {
	case 0:
		return sign * frac * float32(math.Ldexp(1, -24))
	case 0x1f:
		if frac != 0 {
			return float32(math.NaN())
		}
		return sign * float32(math.Inf(1))
	}
	return sign * (1 + frac/1024) * float32(math.Ldexp(1, exp-15))
}

func widenInt(size int64, b []byte, n int64) []byte {
	out := make([]byte, 8*n)
	for i := range n {
		var v int64
		switch size {
		case 4:
			v = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case 2:
			v = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		default:
			v = int64(int8(b[i]))
		}
		binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
	}
	return out
}
