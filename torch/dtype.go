package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"fmt"
	"strconv"
	"strings"
)

// DType is a tensor element type; the values match the C ABI's dtype codes.
type DType int

const (
	Float32 DType = iota
	Float64
	Int64
	Uint8
	Bool
	// BFloat16 keeps float32's 8-bit exponent with a 7-bit mantissa: the compute type of mixed
	// precision on CPUs with AMX or AVX512-BF16 and on CUDA devices from compute capability 8.0.
	BFloat16
	// Float16 (IEEE half) has a 5-bit exponent, so its gradients need loss scaling (GradScaler);
	// CUDA only here.
	Float16
)

var dtypeNames = [...]string{"float32", "float64", "int64", "uint8", "bool", "bfloat16", "float16"}

func (d DType) String() string {
	if d >= 0 && int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

func (d DType) valid() bool { return d >= Float32 && d <= Float16 }

// elemSize is the byte size of one element.
func (d DType) elemSize() int {
	switch d {
	case Float32:
		return 4
	case Float64, Int64:
		return 8
	case BFloat16, Float16:
		return 2
	default:
		return 1
	}
}

// Device is where a tensor lives. The zero value means the CPU.
type Device struct {
	Kind  string // "cpu" or "cuda"
	Index int
}

// CPU is the host device.
var CPU = Device{Kind: "cpu"}

// CUDA is the i-th CUDA device.
func CUDA(i int) Device { return Device{Kind: "cuda", Index: i} }

// ParseDevice reads "cpu", "cuda" (device 0) or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(s, "cuda:"):
		i, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || i < 0 {
			return Device{}, fmt.Errorf("torch: bad device %q: want cpu, cuda or cuda:N", s)
		}
		return CUDA(i), nil
	}
	return Device{}, fmt.Errorf("torch: bad device %q: want cpu, cuda or cuda:N", s)
}

func (d Device) String() string {
	if d.Kind == "cuda" {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	if d.Kind == "" {
		return "cpu"
	}
	return d.Kind
}

// c converts to the C ABI's (kind, index).
func (d Device) c() (C.int, C.int, bool) {
	switch d.Kind {
	case "cpu", "":
		return C.HDGE_CPU, 0, true
	case "cuda":
		return C.HDGE_CUDA, C.int(d.Index), d.Index >= 0
	}
	return 0, 0, false
}
