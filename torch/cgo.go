package torch

/*
#cgo CFLAGS: -I${SRCDIR}/../cgo
#cgo LDFLAGS: -L${SRCDIR}/../build -lhdgetorch -Wl,-rpath,${SRCDIR}/../build
#include <stdlib.h>
#include "hdge_torch.h"
*/
import "C"

import (
	"os"
	"strings"
	"sync"
	"unsafe"
)

// Error is a failure reported by libtorch or by a check in this package.
type Error struct {
	Op  string // the Go-level operation, e.g. "Conv2d"
	Msg string // libtorch's message without its backtrace, or this package's reason
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// takeError converts and frees a C error.
func takeError(op string, e *C.hdge_error) *Error {
	msg := C.GoString(e.msg)
	C.hdge_error_free(e)
	return &Error{Op: op, Msg: strings.TrimSpace(msg)}
}

// int64Ptr returns a C view of a Go []int64 (nil for an empty slice). The slice holds no Go
// pointers, so cgo allows passing it for the duration of one call.
func int64Ptr(v []int64) *C.int64_t {
	if len(v) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0]))
}

// LiveTensors is the process-wide number of tensor handles not yet freed; leak tests compare it
// before and after.
func LiveTensors() int64 { return int64(C.hdge_live_tensors()) }

var versionOnce = sync.OnceValue(func() string { return C.GoString(C.hdge_version()) })

// Version is the libtorch version the shim was built against, e.g. "1.13.0".
func Version() string { return versionOnce() }

// SetNumThreads sets libtorch's intra-op thread count for the whole process (n <= 0 is ignored).
func SetNumThreads(n int) { C.hdge_set_num_threads(C.int(n)) }

// NumThreads is libtorch's current intra-op thread count.
func NumThreads() int { return int(C.hdge_get_num_threads()) }

// CUDAAvailable reports whether the loaded libtorch has CUDA and sees a device.
func CUDAAvailable() bool { return C.hdge_cuda_available() != 0 }

// CUDADeviceCount is the number of CUDA devices libtorch sees (0 without CUDA).
func CUDADeviceCount() int { return int(C.hdge_cuda_device_count()) }

// CUDABF16Supported reports whether CUDA device i computes bfloat16 natively (compute capability
// 8.0 or later); false without CUDA.
func CUDABF16Supported(i int) bool { return C.hdge_cuda_bf16_supported(C.int(i)) != 0 }

// ManualSeed seeds libtorch's default CPU generator and every CUDA default generator.
func ManualSeed(seed uint64) { C.hdge_manual_seed(C.uint64_t(seed)) }

// TuneMalloc keeps freed tensor memory in the C heap: a training step frees and re-allocates the
// same activation buffers, and above glibc's mmap threshold each would be a fresh mmap whose pages
// fault in zeroed again (README, "How it is built", has the measurement). Programs call it
// once at start (the hdge-torch binary and the benchmark do); importing the package changes
// nothing. It also keeps every thread on one malloc arena: cgo calls run on whichever OS thread
// the Go scheduler picks, so tensors allocated on one thread's arena and freed from another's
// kept those arenas' pages faulting in again (a JEM step, whose 20 SGLD passes allocate and free
// the same activations, ran 12 % faster on one arena, with a fifth of the page faults; a CE step
// was unchanged). HDGE_MALLOC_TUNING=off keeps glibc's defaults; a C library that is not glibc, or
// refuses the values, is left as it is.
func TuneMalloc() {
	if os.Getenv("HDGE_MALLOC_TUNING") != "off" {
		C.hdge_set_malloc_thresholds(1<<30, 1<<31-1)
		C.hdge_set_malloc_arena_max(1)
	}
}
