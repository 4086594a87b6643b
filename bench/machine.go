package bench

import (
	"bufio"
	"cmp"
	"os"
	"runtime"
	"strconv"
	"strings"

	hmodel "github.com/hdge-torch/hdge-torch/model"
)

// Machine describes where the numbers were measured.
type Machine struct {
	CPU      string   `json:"cpu"`
	Cores    int      `json:"cores"`
	MHz      float64  `json:"mhz"`
	Vector   string   `json:"vector"` // widest float32 FMA instruction set found in the flags
	Libtorch string   `json:"libtorch"`
	PyTorch  string   `json:"pytorch"`
	Python   string   `json:"python"`
	Go       string   `json:"go"`
	Device   string   `json:"device"`
	Threads  int      `json:"threads"`
	Load     []string `json:"load"` // /proc/loadavg at start and at end
	Date     string   `json:"date"`
	// PeakTheoryGFLOPS is threads × MHz × float32 FLOP per cycle per core (see PeakMethod): the
	// peak of the cores the benchmark computes on; PeakCPUGFLOPS is the same for every core.
	PeakTheoryGFLOPS float64 `json:"peak_theory_gflops"`
	PeakCPUGFLOPS    float64 `json:"peak_cpu_gflops"`
	PeakMethod       string  `json:"peak_method"`
	// PeakGEMMGFLOPS and PeakConvGFLOPS are the measured rates of a large float32 matrix product
	// and of a large 3×3 convolution through libtorch; PeakMeasuredGFLOPS is the larger.
	PeakGEMMGFLOPS     float64 `json:"peak_gemm_gflops"`
	PeakConvGFLOPS     float64 `json:"peak_conv_gflops"`
	PeakMeasuredGFLOPS float64 `json:"peak_measured_gflops"`
	GEMMSize           int     `json:"gemm_size"`
	// AutoLayoutBN and AutoLayoutNoBN name what hdge-torch's default, --channels-last auto,
	// resolves to here for models with and without batch norm (model.ResolveLayout).
	AutoLayoutBN   string `json:"auto_layout_batch_norm,omitempty"`
	AutoLayoutNoBN string `json:"auto_layout_no_batch_norm,omitempty"`
}

// cpuInfo reads the model name, clock and flags of the first CPU in /proc/cpuinfo.
func cpuInfo() (model string, mhz float64, flags map[string]bool) {
	flags = map[string]bool{}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown (no /proc/cpuinfo)", 0, flags
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			if model == "" {
				model = v
			}
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(v, 64)
			}
		case "flags":
			if len(flags) == 0 {
				for _, fl := range strings.Fields(v) {
					flags[fl] = true
				}
			}
		}
	}
	return model, mhz, flags
}

// theoreticalPeak estimates the float32 peak of `threads` cores: cores × clock × FLOP per cycle,
// where one FMA is 2 FLOP per lane and we assume two FMA units per core (true of the Xeon
// Scalable Gold/Platinum and most recent desktop cores; one-unit parts have half this peak).
func theoreticalPeak(threads int, mhz float64, flags map[string]bool) (gflops float64, vector, method string) {
	lanes := 4 // SSE
	vector = "sse"
	switch {
	case flags["avx512f"]:
		lanes, vector = 16, "avx512"
	case flags["avx2"] && flags["fma"]:
		lanes, vector = 8, "avx2+fma"
	case flags["avx"]:
		lanes, vector = 8, "avx"
	}
	perCycle, how := lanes*2*2, " float32 lanes × 2 (FMA) × 2 FMA units, assumed)"
	if vector == "sse" || vector == "avx" {
		perCycle, how = lanes*2, " float32 lanes × (1 add + 1 multiply), no FMA)"
	}
	gflops = float64(threads) * mhz / 1000 * float64(perCycle)
	method = strconv.Itoa(threads) + " cores × " + strconv.FormatFloat(mhz, 'f', 0, 64) + " MHz (/proc/cpuinfo) × " +
		strconv.Itoa(perCycle) + " FLOP/cycle (" + vector + ": " + strconv.Itoa(lanes) + how
	return gflops, vector, method
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

func newMachine(device string, threads int) Machine {
	model, mhz, flags := cpuInfo()
	peak, vector, method := theoreticalPeak(threads, mhz, flags)
	all, _, _ := theoreticalPeak(runtime.NumCPU(), mhz, flags)
	return Machine{CPU: model, Cores: runtime.NumCPU(), MHz: mhz, Vector: vector, Go: runtime.Version(),
		Device: device, Threads: threads, PeakTheoryGFLOPS: peak, PeakCPUGFLOPS: all, PeakMethod: method,
		AutoLayoutBN: autoLayout(device, "batch"), AutoLayoutNoBN: autoLayout(device, "none")}
}

// autoLayout is the layout --channels-last auto gives a WideResNet of that norm on device.
func autoLayout(device, norm string) string {
	l, err := hmodel.ResolveLayout(hmodel.Settings{Model: "wrn-10-2", Norm: norm, ChannelsLast: hmodel.LayoutAuto, Device: cmp.Or(device, "cpu")})
	if err != nil {
		return err.Error()
	}
	return l.String()
}
