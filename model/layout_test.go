package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// TestAutoChannelsLastRule: --channels-last auto is channels-last on CUDA, on AVX-512 CPUs and
// for batch-norm models, NCHW only for models without batch norm on other CPUs (where NCHW
// measured faster), whatever the machine running the test.
func TestAutoChannelsLastRule(t *testing.T) {
	cuda := torch.Device{Kind: "cuda"}
	for _, tc := range []struct {
		dev               torch.Device
		avx512, batchNorm bool
		want              bool
		why               string
	}{
		{cuda, false, false, true, "CUDA"},
		{cuda, false, true, true, "CUDA"},
		{cuda, true, false, true, "CUDA"},
		{torch.CPU, true, false, true, "AVX-512"},
		{torch.CPU, true, true, true, "AVX-512"},
		{torch.CPU, false, true, true, "batch norm"},
		{torch.CPU, false, false, false, "no batch norm"},
	} {
		got, why := AutoChannelsLast(tc.dev, tc.avx512, tc.batchNorm)
		if got != tc.want || !strings.HasPrefix(why, "auto: ") || !strings.Contains(why, tc.why) {
			t.Errorf("AutoChannelsLast(%s, avx512 %v, batch norm %v) = %v, %q; want %v, naming %q", tc.dev, tc.avx512, tc.batchNorm,
				got, why, tc.want, tc.why)
		}
	}
}

// TestParseLayout: the strings of the tri-state and the bools of older configs and specs read;
// anything else is refused naming the values wanted.
func TestParseLayout(t *testing.T) {
	for v, want := range map[any]Layout{"auto": LayoutAuto, "": LayoutAuto, "true": LayoutChannelsLast, "false": LayoutNCHW,
		true: LayoutChannelsLast, false: LayoutNCHW} {
		if got, err := ParseLayout(v); err != nil || got != want {
			t.Errorf("ParseLayout(%#v) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, bad := range []any{"nhwc", "yes", 1.0, nil} {
		if _, err := ParseLayout(bad); err == nil || !strings.Contains(err.Error(), "auto, true or false") {
			t.Errorf("ParseLayout(%#v): %v", bad, err)
		}
	}
	var r struct {
		L Layout `json:"channels_last"`
	}
	for js, want := range map[string]Layout{`{"channels_last": true}`: LayoutChannelsLast, `{"channels_last": false}`: LayoutNCHW,
		`{"channels_last": "auto"}`: LayoutAuto, `{}`: ""} {
		r.L = "unset"
		if js == `{}` {
			r.L = ""
		}
		if err := json.Unmarshal([]byte(js), &r); err != nil || r.L != want {
			t.Errorf("%s: %q, %v; want %q", js, r.L, err, want)
		}
	}
	if err := json.Unmarshal([]byte(`{"channels_last": "sideways"}`), &r); err == nil || !strings.Contains(err.Error(), "channels_last") {
		t.Errorf("a bad layout in JSON: %v", err)
	}
}

// TestBuildObeysLayout: Build lays a model's 3×3 conv weights out as asked, and auto as the rule
// says for this machine's CPU and the model's norm; a ResNet (batch norm) is channels-last.
func TestBuildObeysLayout(t *testing.T) {
	cpu, _ := torch.HostCPU()
	for _, tc := range []struct {
		model, norm string
		layout      Layout
	}{
		{"wrn-10-1", "none", LayoutAuto}, {"wrn-10-1", "batch", LayoutAuto}, {"wrn-10-1", "none", ""},
		{"wrn-10-1", "none", LayoutChannelsLast}, {"wrn-10-1", "batch", LayoutNCHW}, {"resnet-18", "batch", LayoutAuto},
	} {
		want, reason := tc.layout == LayoutChannelsLast, "(asked for)"
		if tc.layout == LayoutAuto || tc.layout == "" {
			want, reason = AutoChannelsLast(torch.CPU, cpu.AVX512F, tc.norm == "batch")
		}
		m, err := Build(Settings{Model: tc.model, Norm: tc.norm, ChannelsLast: tc.layout, Device: "cpu"}, 3, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Layout.ChannelsLast != want || m.Settings.ChannelsLast != tc.layout {
			t.Errorf("%s --norm %s --channels-last %q: built %s, settings %q; want channels-last %v", tc.model, tc.norm, tc.layout,
				m.Layout, m.Settings.ChannelsLast, want)
		}
		if !strings.Contains(m.Layout.String(), reason) {
			t.Errorf("%s --channels-last %q: logged as %q, want %q in it", tc.model, tc.layout, m.Layout, reason)
		}
		convs := 0
		for _, p := range m.StateDict() {
			if p.T.Dim() == 4 && p.T.Size(2)*p.T.Size(3) > 1 { // 1×1 kernels are both layouts
				convs++
				if p.T.IsChannelsLast() != want {
					t.Errorf("%s --norm %s --channels-last %q: %s channels-last %v, want %v", tc.model, tc.norm, tc.layout, p.Name,
						p.T.IsChannelsLast(), want)
				}
			}
		}
		if convs == 0 {
			t.Errorf("%s: no 3×3 conv weights", tc.model)
		}
		m.Close()
	}
	if _, err := Build(Settings{Model: "wrn-10-1", Norm: "none", ChannelsLast: "nhwc", Device: "cpu"}, 1, 10, 1); err == nil ||
		!strings.Contains(err.Error(), "--channels-last") {
		t.Errorf("Build with --channels-last nhwc: %v", err)
	}
	if err := Check(Settings{Model: "wrn-10-1", Norm: "none", ChannelsLast: "nhwc"}); err == nil || !strings.Contains(err.Error(), "--channels-last") {
		t.Errorf("Check with --channels-last nhwc: %v", err)
	}
}

// TestReadRunOldBool: a run directory written when channels_last was a bool still reads.
func TestReadRunOldBool(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model": "wrn-10-1", "norm": "none", "channels_last": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadRun(dir)
	if err != nil || r.ChannelsLast != LayoutChannelsLast || r.Settings().ChannelsLast != LayoutChannelsLast {
		t.Fatalf("ReadRun: %+v, %v", r, err)
	}
}
