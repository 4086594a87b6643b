package torch

/*
#include <stdlib.h>
#include "hdge_torch.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// fromData builds a CPU tensor from host memory. An omitted shape means 1-D of len(data); a
// 0-dimensional scalar comes from Reshape(t) with no sizes, or Full with an empty shape.
func fromData(s *Scope, op string, dt DType, p unsafe.Pointer, n int, shape []int64) *Tensor {
	if !s.ready(op) {
		return nil
	}
	if len(shape) == 0 {
		shape = []int64{int64(n)}
	}
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			s.fail(op, fmt.Sprintf("negative size in shape %v", shape))
			return nil
		}
		want *= d
	}
	if want != int64(n) {
		s.fail(op, fmt.Sprintf("shape %v needs %d elements, data has %d", shape, want, n))
		return nil
	}
	if n == 0 {
		p = nil
	}
	t := &Tensor{}
	if e := C.hdge_from_data(C.int(dt), int64Ptr(shape), C.int(len(shape)), p, &t.h); e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

// FromFloat32 copies data into a new CPU tensor of the given shape (1-D when omitted).
func (s *Scope) FromFloat32(data []float32, shape ...int64) *Tensor {
	return fromData(s, "FromFloat32", Float32, unsafe.Pointer(unsafe.SliceData(data)), len(data), shape)
}

// FromFloat64 copies data into a new CPU float64 tensor.
func (s *Scope) FromFloat64(data []float64, shape ...int64) *Tensor {
	return fromData(s, "FromFloat64", Float64, unsafe.Pointer(unsafe.SliceData(data)), len(data), shape)
}

// FromInt64 copies data into a new CPU int64 tensor.
func (s *Scope) FromInt64(data []int64, shape ...int64) *Tensor {
	return fromData(s, "FromInt64", Int64, unsafe.Pointer(unsafe.SliceData(data)), len(data), shape)
}

// FromUint8 copies data into a new CPU uint8 tensor.
func (s *Scope) FromUint8(data []uint8, shape ...int64) *Tensor {
	return fromData(s, "FromUint8", Uint8, unsafe.Pointer(unsafe.SliceData(data)), len(data), shape)
}

// FromBool copies data into a new CPU bool tensor (Go's bool is one byte, like libtorch's).
func (s *Scope) FromBool(data []bool, shape ...int64) *Tensor {
	return fromData(s, "FromBool", Bool, unsafe.Pointer(unsafe.SliceData(data)), len(data), shape)
}

// factoryArgs validates the common (dtype, device) pair of factory functions.
func (s *Scope) factoryArgs(op string, dt DType, dev Device) (C.int, C.int, bool) {
	if !s.ready(op) {
		return 0, 0, false
	}
	if !dt.valid() {
		s.fail(op, "unknown dtype "+dt.String())
		return 0, 0, false
	}
	kind, index, ok := dev.c()
	if !ok {
		s.fail(op, "unknown device "+dev.String())
		return 0, 0, false
	}
	return kind, index, true
}

func (s *Scope) fill(op string, shape []int64, v float64, dt DType, dev Device) *Tensor {
	kind, index, ok := s.factoryArgs(op, dt, dev)
	if !ok {
		return nil
	}
	t := &Tensor{}
	var e *C.hdge_error
	switch op {
	case "Zeros":
		e = C.hdge_zeros(int64Ptr(shape), C.int(len(shape)), C.int(dt), kind, index, &t.h)
	case "Ones":
		e = C.hdge_ones(int64Ptr(shape), C.int(len(shape)), C.int(dt), kind, index, &t.h)
	default:
		e = C.hdge_full(int64Ptr(shape), C.int(len(shape)), C.double(v), C.int(dt), kind, index, &t.h)
	}
	if e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

// Zeros is a new tensor of zeros.
func (s *Scope) Zeros(shape []int64, dt DType, dev Device) *Tensor {
	return s.fill("Zeros", shape, 0, dt, dev)
}

// Ones is a new tensor of ones.
func (s *Scope) Ones(shape []int64, dt DType, dev Device) *Tensor {
	return s.fill("Ones", shape, 1, dt, dev)
}

// Full is a new tensor filled with v (an empty shape gives a 0-dimensional scalar).
func (s *Scope) Full(shape []int64, v float64, dt DType, dev Device) *Tensor {
	return s.fill("Full", shape, v, dt, dev)
}

// Arange is 0, 1, ..., n-1.
func (s *Scope) Arange(n int64, dt DType, dev Device) *Tensor {
	kind, index, ok := s.factoryArgs("Arange", dt, dev)
	if !ok {
		return nil
	}
	t := &Tensor{}
	if e := C.hdge_arange(C.int64_t(n), C.int(dt), kind, index, &t.h); e != nil {
		s.failC("Arange", e)
		return nil
	}
	return s.add(t)
}

// ZerosLike is zeros with t's shape, dtype and device.
func (s *Scope) ZerosLike(t *Tensor) *Tensor {
	if !s.ready1("ZerosLike", t) {
		return nil
	}
	r := &Tensor{}
	if e := C.hdge_zeros_like(t.h, &r.h); e != nil {
		s.failC("ZerosLike", e)
		return nil
	}
	return s.add(r)
}

// Generator is a libtorch random generator for one device, owned by the caller (Close it).
type Generator struct {
	h   C.hdge_generator
	dev Device
}

// NewGenerator creates a generator on dev seeded with seed.
func NewGenerator(seed uint64, dev Device) (*Generator, error) {
	kind, index, ok := dev.c()
	if !ok {
		return nil, &Error{Op: "NewGenerator", Msg: "unknown device " + dev.String()}
	}
	g := &Generator{dev: dev}
	if e := C.hdge_generator_new(C.uint64_t(seed), kind, index, &g.h); e != nil {
		return nil, takeError("NewGenerator", e)
	}
	return g, nil
}

// Device is the generator's device.
func (g *Generator) Device() Device { return g.dev }

// Close frees the generator; it is idempotent.
func (g *Generator) Close() {
	if g == nil || g.h == nil {
		return
	}
	C.hdge_generator_free(g.h)
	g.h = nil
}

// State is the generator's state as libtorch serializes it (torch.Generator.get_state()).
func (g *Generator) State() ([]byte, error) {
	if g == nil || g.h == nil {
		return nil, &Error{Op: "Generator.State", Msg: "generator is nil or closed"}
	}
	return generatorState("Generator.State", g.h)
}

// SetState restores a state from State (torch.Generator.set_state()).
func (g *Generator) SetState(b []byte) error {
	if g == nil || g.h == nil {
		return &Error{Op: "Generator.SetState", Msg: "generator is nil or closed"}
	}
	return setGeneratorState("Generator.SetState", g.h, b)
}

// DefaultGeneratorState is the state of libtorch's default CPU generator, which dropout and the
// generator-less random ops use.
func DefaultGeneratorState() ([]byte, error) { return generatorState("DefaultGeneratorState", nil) }

// SetDefaultGeneratorState restores the default CPU generator from DefaultGeneratorState.
func SetDefaultGeneratorState(b []byte) error {
	return setGeneratorState("SetDefaultGeneratorState", nil, b)
}

func generatorState(op string, h C.hdge_generator) ([]byte, error) {
	var data *C.uint8_t
	var n C.int64_t
	if e := C.hdge_generator_get_state(h, &data, &n); e != nil {
		return nil, takeError(op, e)
	}
	defer C.free(unsafe.Pointer(data))
	return C.GoBytes(unsafe.Pointer(data), C.int(n)), nil
}

func setGeneratorState(op string, h C.hdge_generator, b []byte) error {
	var p *C.uint8_t
	if len(b) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&b[0]))
	}
	if e := C.hdge_generator_set_state(h, p, C.int64_t(len(b))); e != nil {
		return takeError(op, e)
	}
	return nil
}

// genArg is g's handle, nil for the default generator; ok is false for a closed generator.
func (s *Scope) genArg(op string, g *Generator) (C.hdge_generator, bool) {
	if g == nil {
		return nil, true
	}
	if g.h == nil {
		s.fail(op, "generator is closed")
		return nil, false
	}
	return g.h, true
}

func (s *Scope) random(op string, g *Generator, shape []int64, dt DType, dev Device) *Tensor {
	kind, index, ok := s.factoryArgs(op, dt, dev)
	if !ok {
		return nil
	}
	gh, ok := s.genArg(op, g)
	if !ok {
		return nil
	}
	t := &Tensor{}
	var e *C.hdge_error
	if op == "Randn" {
		e = C.hdge_randn(gh, int64Ptr(shape), C.int(len(shape)), C.int(dt), kind, index, &t.h)
	} else {
		e = C.hdge_rand(gh, int64Ptr(shape), C.int(len(shape)), C.int(dt), kind, index, &t.h)
	}
	if e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(t)
}

// Randn is standard-normal noise from g (nil: the device's default generator). The generator must
// live on dev.
func (s *Scope) Randn(g *Generator, shape []int64, dt DType, dev Device) *Tensor {
	return s.random("Randn", g, shape, dt, dev)
}

// Rand is uniform noise in [0, 1) from g (nil: the default generator).
func (s *Scope) Rand(g *Generator, shape []int64, dt DType, dev Device) *Tensor {
	return s.random("Rand", g, shape, dt, dev)
}

// RandInt is int64 values uniform in [low, high).
func (s *Scope) RandInt(g *Generator, low, high int64, shape []int64, dev Device) *Tensor {
	kind, index, ok := s.factoryArgs("RandInt", Int64, dev)
	if !ok {
		return nil
	}
	gh, ok := s.genArg("RandInt", g)
	if !ok {
		return nil
	}
	t := &Tensor{}
	if e := C.hdge_randint(gh, C.int64_t(low), C.int64_t(high), int64Ptr(shape), C.int(len(shape)), kind, index, &t.h); e != nil {
		s.failC("RandInt", e)
		return nil
	}
	return s.add(t)
}

// RandnLike is standard-normal noise with t's shape, dtype and device.
func (s *Scope) RandnLike(g *Generator, t *Tensor) *Tensor { return s.randomLike("RandnLike", g, t) }

// RandLike is uniform [0, 1) noise with t's shape, dtype and device.
func (s *Scope) RandLike(g *Generator, t *Tensor) *Tensor { return s.randomLike("RandLike", g, t) }

func (s *Scope) randomLike(op string, g *Generator, t *Tensor) *Tensor {
	if !s.ready1(op, t) {
		return nil
	}
	gh, ok := s.genArg(op, g)
	if !ok {
		return nil
	}
	r := &Tensor{}
	var e *C.hdge_error
	if op == "RandnLike" {
		e = C.hdge_randn_like(gh, t.h, &r.h)
	} else {
		e = C.hdge_rand_like(gh, t.h, &r.h)
	}
	if e != nil {
		s.failC(op, e)
		return nil
	}
	return s.add(r)
}
