package trainer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/internal/testutil"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// TestChannelsLastSetting: --channels-last defaults to auto; specs and configs give it as the
// strings auto/true/false or, written when it was a bool, as true/false; a config without it was
// trained NCHW; a bad value is refused naming the flag.
func TestChannelsLastSetting(t *testing.T) {
	if d := Defaults(); d.ChannelsLast != model.LayoutAuto {
		t.Fatalf("default --channels-last %q, want auto", d.ChannelsLast)
	}
	base := `{"dataset": "fashion-mnist", "model": "wrn-10-1", "norm": "none", "objective": "ce"`
	for js, want := range map[string]model.Layout{
		base + `, "channels_last": true}`:    model.LayoutChannelsLast,
		base + `, "channels_last": false}`:   model.LayoutNCHW,
		base + `, "channels_last": "auto"}`:  model.LayoutAuto,
		base + `, "channels_last": "false"}`: model.LayoutNCHW,
		base + `}`:                           model.LayoutNCHW,
	} {
		c, err := ParseConfig([]byte(js))
		if err != nil || c.ChannelsLast != want {
			t.Errorf("%s: %q, %v; want %q", js, c.ChannelsLast, err, want)
		}
	}
	for _, tc := range []struct {
		v    any
		want model.Layout
	}{{false, model.LayoutNCHW}, {true, model.LayoutChannelsLast}, {"auto", model.LayoutAuto}, {"false", model.LayoutNCHW}} {
		c := Defaults()
		if err := SetOption(&c, "channels-last", tc.v); err != nil || c.ChannelsLast != tc.want {
			t.Errorf("spec channels-last %#v: %q, %v", tc.v, c.ChannelsLast, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("spec channels-last %#v: %v", tc.v, err)
		}
	}
	c := Defaults()
	c.ChannelsLast = "nhwc"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--channels-last") {
		t.Errorf("--channels-last nhwc: %v", err)
	}
	if k, _ := OptionKind("channels-last"); k != operational {
		t.Errorf("--channels-last is of kind %v, want operational (free to change on --resume)", k)
	}
}

// TestAutoLayoutRun: a run without batch norm records "auto" in config.json and trains, and is
// loaded for evaluation, in the layout the rule gives this machine (NCHW on a CPU without
// AVX-512); resumed with --channels-last true it continues in channels-last from the same
// checkpoint.
func TestAutoLayoutRun(t *testing.T) {
	ds := testutil.SmallFashion(t, t.TempDir(), 120, 50)
	c := tinyConfig(t, ds)
	c.Steps, c.Objective = 2, "ce"
	sum, err := Train(context.Background(), c, Options{SkipTest: true})
	if err != nil {
		t.Fatal(err)
	}
	cpu, _ := torch.HostCPU()
	want, why := model.AutoChannelsLast(torch.CPU, cpu.AVX512F, false)
	if !strings.Contains(sum.Layout, why) || strings.HasPrefix(sum.Layout, "nchw") == want {
		t.Errorf("trained in %q, want channels-last %v (%s)", sum.Layout, want, why)
	}
	b, err := os.ReadFile(filepath.Join(c.Out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"channels_last": "auto"`) {
		t.Errorf("config.json does not record auto:\n%s", b)
	}
	l, err := model.Load(c.Out, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Run.ChannelsLast != model.LayoutAuto || l.Model.Layout.ChannelsLast != want {
		t.Errorf("loaded: recorded %q, built %s; want channels-last %v", l.Run.ChannelsLast, l.Model.Layout, want)
	}
	convs := 0
	for _, p := range l.StateDict() {
		if p.T.Dim() == 4 && p.T.Size(1) > 1 && p.T.Size(2)*p.T.Size(3) > 1 { // both layouts coincide otherwise
			convs++
			if p.T.IsChannelsLast() != want {
				t.Errorf("loaded %s: channels-last %v, want %v", p.Name, p.T.IsChannelsLast(), want)
			}
		}
	}
	if convs == 0 {
		t.Fatal("no conv weights to check")
	}

	c.Steps, c.ChannelsLast = 3, model.LayoutChannelsLast
	sum, err = Train(context.Background(), c, Options{SkipTest: true, Resume: c.Out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 3 || sum.Layout != "channels-last (asked for)" {
		t.Errorf("resumed with --channels-last true: %d steps in %q", sum.Steps, sum.Layout)
	}
}
