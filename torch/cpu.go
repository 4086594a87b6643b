package torch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// CPUInfo is what /proc/cpuinfo says about the first processor, as far as precision is concerned.
type CPUInfo struct {
	Model string
	// AMXBF16 and AVX512BF16 are the kernel's flags amx_bf16 and avx512_bf16: oneDNN computes
	// bfloat16 convolutions with them several times faster than float32. Without either, libtorch
	// emulates bfloat16 and is many times slower than float32.
	AMXBF16, AVX512BF16 bool
	AVX512F             bool
}

// BF16 reports whether the CPU computes bfloat16 natively.
func (c CPUInfo) BF16() bool { return c.AMXBF16 || c.AVX512BF16 }

// ParseCPUInfo reads /proc/cpuinfo's format: the model name and flags of the first processor.
func ParseCPUInfo(r io.Reader) (CPUInfo, error) {
	var c CPUInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20) // flags lines run to a few kB
	gotFlags := false
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			if c.Model == "" {
				c.Model = v
			}
		case "flags":
			if gotFlags {
				continue
			}
			gotFlags = true
			for _, f := range strings.Fields(v) {
				switch f {
				case "amx_bf16":
					c.AMXBF16 = true
				case "avx512_bf16":
					c.AVX512BF16 = true
				case "avx512f":
					c.AVX512F = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if !gotFlags {
		return c, fmt.Errorf("no flags line")
	}
	return c, nil
}

var hostCPU = sync.OnceValues(func() (CPUInfo, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return CPUInfo{}, err
	}
	defer f.Close()
	c, err := ParseCPUInfo(f)
	if err != nil {
		return c, fmt.Errorf("/proc/cpuinfo: %w", err)
	}
	return c, nil
})

// HostCPU is this machine's CPUInfo (read once). Where /proc/cpuinfo is missing or unreadable the
// error says so and the CPU counts as lacking bfloat16.
func HostCPU() (CPUInfo, error) { return hostCPU() }

// ResolvePrecision turns a requested precision ("auto" or "", "fp32", "bf16", "fp16") into the one
// to run on dev. explicit says the user asked for it (a flag given on the command line) rather than
// it coming from a default, a resumed run's config or an experiment spec.
//
//   - auto: bf16 where dev computes it natively (a CPU with AMX-BF16 or AVX512-BF16, a CUDA
//     device of compute capability 8.0 or later), fp32 elsewhere; never fp16.
//   - bf16 where dev lacks native bfloat16: an error when explicit (emulated bfloat16 is many times
//     slower than fp32, which nobody asks for knowingly); otherwise fp32 and a warning.
//   - fp16: CUDA only (libtorch's CPU kernels lack half-precision convolutions); on a CPU an error
//     when explicit, otherwise fp32 and a warning.
//
// The warning is empty when nothing was changed.
func ResolvePrecision(requested string, explicit bool, dev Device) (Precision, string, error) {
	native, why := bf16Native(dev)
	switch requested {
	case "", "auto":
		if native {
			return BF16, "", nil
		}
		return FP32, "", nil
	case "fp32":
		return FP32, "", nil
	case "bf16":
		if native {
			return BF16, "", nil
		}
		if explicit {
			return FP32, "", fmt.Errorf("--precision bf16: %s has no native bfloat16 (%s); use --precision fp32 or auto", dev, why)
		}
		return FP32, fmt.Sprintf("precision bf16 asked for, running fp32: %s has no native bfloat16 (%s)", dev, why), nil
	case "fp16":
		if dev.Kind == "cuda" {
			return FP16, "", nil
		}
		if explicit {
			return FP32, "", fmt.Errorf("--precision fp16: float16 mixed precision needs a CUDA device, not %s; use --precision fp32, bf16 or auto", dev)
		}
		return FP32, fmt.Sprintf("precision fp16 asked for, running fp32: float16 needs a CUDA device, not %s", dev), nil
	}
	return FP32, "", fmt.Errorf("--precision %q: want auto, fp32, bf16 or fp16", requested)
}

// bf16Native says whether dev computes bfloat16 natively, and if not, why.
func bf16Native(dev Device) (bool, string) {
	if dev.Kind == "cuda" {
		if CUDABF16Supported(dev.Index) {
			return true, ""
		}
		return false, "needs compute capability 8.0 or later"
	}
	c, err := HostCPU()
	if err != nil {
		return false, err.Error()
	}
	if c.BF16() {
		return true, ""
	}
	model := c.Model
	if model == "" {
		model = "this CPU"
	}
	return false, model + " lacks the amx_bf16 and avx512_bf16 flags"
}
