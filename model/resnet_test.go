package model

import (
	"os"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

func TestMain(m *testing.M) {
	torch.SetNumThreads(2)
	os.Exit(m.Run())
}

// TestBuildResNet: --model resnet-18 and resnet-50 build torchvision-named ResNets whose state
// dict loads back into a fresh model of the same settings (other seed) and gives the same logits,
// channels-last or not; a ResNet's settings that it cannot obey are refused naming them.
func TestBuildResNet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		last   Layout
		params int64
	}{{"resnet-18", LayoutChannelsLast, 11_173_962}, {"resnet-18", LayoutNCHW, 11_173_962}, {"resnet-50", LayoutAuto, 23_520_842}} {
		set := Settings{Model: tc.name, Norm: "batch", ChannelsLast: tc.last, Device: "cpu"}
		if err := Check(set); err != nil {
			t.Fatal(err)
		}
		a, err := Build(set, 3, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := Build(set, 3, 10, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if got := a.NumParams(); got != tc.params {
			t.Errorf("%s: %d parameters, torchvision's has %d", tc.name, got, tc.params)
		}
		if a.FLOPs(32, 32) <= 0 || !strings.HasPrefix(a.Describe(), tc.name) {
			t.Errorf("%s: FLOPs %g, Describe %q", tc.name, a.FLOPs(32, 32), a.Describe())
		}
		named := map[string]*torch.Tensor{}
		for _, p := range a.StateDict() {
			named[p.Name] = p.T
		}
		for _, k := range []string{"conv1.weight", "bn1.running_mean", "layer4.1.bn2.num_batches_tracked", "fc.weight"} {
			if _, ok := named[k]; !ok {
				t.Errorf("%s: no %s in the state dict", tc.name, k)
			}
		}
		if err := b.LoadStateDict(named); err != nil {
			t.Fatalf("%s: loading its own state dict: %v", tc.name, err)
		}
		s := torch.NewScope()
		g, err := torch.NewGenerator(3, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		x := s.Randn(g, []int64{2, 3, 32, 32}, torch.Float32, torch.CPU)
		la, _ := a.Forward(s, x, false).Float64s()
		lb, _ := b.Forward(s, x, false).Float64s()
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		for i := range la {
			if la[i] != lb[i] {
				t.Fatalf("%s: logits after loading the state dict differ at %d: %v vs %v", tc.name, i, la[i], lb[i])
			}
		}
		if f := a.Features(s, x, false); f.Size(1) != int64(a.FeatureDim()) {
			t.Errorf("%s: features of width %d, FeatureDim %d", tc.name, f.Size(1), a.FeatureDim())
		}
		s.Close()
	}
	for _, bad := range []Settings{{Model: "resnet-18", Norm: "none"}, {Model: "resnet-18", Norm: "batch", Dropout: 0.3}, {Model: "resnet-34", Norm: "batch"}} {
		if err := Check(bad); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}
