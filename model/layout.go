package model

import (
	"encoding/json"
	"fmt"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Layout is the --channels-last setting as a run records it: LayoutAuto, LayoutChannelsLast or
// LayoutNCHW ("" reads as auto). It is what was asked for; ResolveLayout turns it into the layout a
// model is built in. Configs written when the setting was a bool hold true or false, which read as
// "true" and "false".
type Layout string

const (
	LayoutAuto         Layout = "auto"  // the faster layout for the device and model (AutoChannelsLast)
	LayoutChannelsLast Layout = "true"  // weights and activations NHWC
	LayoutNCHW         Layout = "false" // row-major, PyTorch's default
)

// ParseLayout reads a layout setting from a flag, a spec or a config: "auto", "true" or "false",
// or the bools true and false older configs and specs hold.
func ParseLayout(v any) (Layout, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return LayoutChannelsLast, nil
		}
		return LayoutNCHW, nil
	case string:
		switch l := Layout(x); l {
		case LayoutAuto, LayoutChannelsLast, LayoutNCHW:
			return l, nil
		case "":
			return LayoutAuto, nil
		}
		return "", fmt.Errorf("unknown value %q (want auto, true or false)", x)
	case Layout:
		return ParseLayout(string(x))
	}
	return "", fmt.Errorf("want auto, true or false, got %v (%T)", v, v)
}

// UnmarshalJSON accepts both the strings and the bools of older configs.
func (l *Layout) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v == nil {
		*l = ""
		return nil
	}
	p, err := ParseLayout(v)
	if err != nil {
		return fmt.Errorf("channels_last: %w", err)
	}
	*l = p
	return nil
}

// ChosenLayout is the memory layout a model was built in, and why.
type ChosenLayout struct {
	ChannelsLast bool
	Reason       string // "asked for", or "auto: " and what the rule saw
}

// String is how a run's log line names it: "nchw (auto: CPU without AVX-512, no batch norm)".
func (c ChosenLayout) String() string {
	name := "nchw"
	if c.ChannelsLast {
		name = "channels-last"
	}
	return name + " (" + c.Reason + ")"
}

// AutoChannelsLast is the rule behind --channels-last auto: whether a model runs faster
// channels-last (NHWC) than NCHW on dev, given whether the CPU has AVX-512 and whether the model
// has batch norm. It is a pure function of its arguments, with no timing, so that runs and tests
// stay reproducible; why is what the rule saw, for the log.
//
// The figures behind it (wrn-10-2, batch 64, one thread; BenchmarkLayout and bench/'s objectives
// section):
//   - On an AVX-512 Xeon channels-last was the faster layout, with and without batch norm
//     (bench/results.md).
//   - On an AMD EPYC with AVX2 and no AVX-512: with batch norm a CE step took 1.108× as long in
//     NCHW (channels-last 10 % faster); without batch norm 0.959× (NCHW 4 % faster), and the input
//     gradient passes made the gap larger: a JEM step (20 SGLD steps) 7535 ms NCHW against 8115 ms
//     channels-last, a PGD adversarial-training step 2814 against 2959 ms (bench/results-parallel.md).
//   - CUDA: channels-last, cuDNN's preferred layout for convolutions (and tensor cores).
//
// ResNets always have batch norm, so they run channels-last everywhere.
func AutoChannelsLast(dev torch.Device, avx512, batchNorm bool) (channelsLast bool, why string) {
	switch {
	case dev.Kind == "cuda":
		return true, "auto: CUDA"
	case avx512:
		return true, "auto: AVX-512 CPU"
	case batchNorm:
		return true, "auto: CPU without AVX-512, batch norm"
	}
	return false, "auto: CPU without AVX-512, no batch norm"
}

// ResolveLayout is the layout a model of these settings is built in on this machine: an explicit
// true or false as asked, auto by AutoChannelsLast with this CPU's flags (a CPU whose flags cannot
// be read counts as lacking AVX-512). Every process on one machine resolves it alike, which is
// what data-parallel ranks need.
func ResolveLayout(set Settings) (ChosenLayout, error) {
	l, err := ParseLayout(set.ChannelsLast)
	if err != nil {
		return ChosenLayout{}, fmt.Errorf("--channels-last: %w", err)
	}
	switch l {
	case LayoutChannelsLast:
		return ChosenLayout{ChannelsLast: true, Reason: "asked for"}, nil
	case LayoutNCHW:
		return ChosenLayout{ChannelsLast: false, Reason: "asked for"}, nil
	}
	dev, err := torch.ParseDevice(set.Device)
	if err != nil {
		return ChosenLayout{}, fmt.Errorf("--device: %w", err)
	}
	cpu, _ := torch.HostCPU()
	last, why := AutoChannelsLast(dev, dev.Kind != "cuda" && cpu.AVX512F, hasBatchNorm(set))
	return ChosenLayout{ChannelsLast: last, Reason: why}, nil
}

// hasBatchNorm says whether the settings' network normalises with batch norm. --norm says it for
// every family: a ResNet's settings are refused unless --norm is batch (its Check).
func hasBatchNorm(set Settings) bool { return set.Norm == "batch" }
