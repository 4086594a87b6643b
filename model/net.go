package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

// Net is what every model family offers: logits, the features before the classifier head, the
// head alone, and PyTorch-named state for checkpoints. train selects dropout and batch-norm
// behaviour for the one call, so an objective can sample or attack in eval mode mid-step.
type Net interface {
	Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor
	Features(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor
	Head(s *torch.Scope, features *torch.Tensor) *torch.Tensor
	StateDict() []nn.Param
	Parameters() []*torch.Tensor
	HeadParameters() []*torch.Tensor
	LoadStateDict(named map[string]*torch.Tensor) error
	NumParams() int64
	FLOPs(h, w int) float64
	Classes() int
	InChannels() int
	FeatureDim() int
	SetDropoutGenerator(g *torch.Generator)
	Describe() string
}

// Settings are the parts of a run's configuration that decide the network.
type Settings struct {
	Model      string  // wrn-DEPTH-WIDTH, or another family's name
	Norm       string  // none | batch
	Dropout    float64 // WideResNet only
	BNMomentum float64 // BatchNorm2d momentum, PyTorch's convention; 0 means PyTorch's 0.1
	// ChannelsLast is the memory layout asked for (auto, true, false; "" is auto): a speed
	// choice, not a property of the model. A Family's Build gets it resolved to true or false.
	ChannelsLast Layout
	Device       string
}

// Family builds one kind of network. Match reports whether it owns a model name; Check validates
// the name and the settings; Build makes the network with its parameters in init.Store.
type Family struct {
	Name    string // as listed in errors, e.g. "wrn-DEPTH-WIDTH"
	Match   func(model string) bool
	Check   func(set Settings) error
	Build   func(init nn.Init, set Settings, channels, classes int) (Net, error)
	Example string
}

// Families are the model families, tried in order.
var Families = []Family{{
	Name:    "wrn-DEPTH-WIDTH",
	Example: "wrn-28-10",
	Match:   func(m string) bool { return strings.HasPrefix(strings.ToLower(m), "wrn-") },
	Check: func(set Settings) error {
		_, _, err := nn.ParseModel(set.Model)
		return err
	},
	Build: func(init nn.Init, set Settings, channels, classes int) (Net, error) {
		depth, width, err := nn.ParseModel(set.Model)
		if err != nil {
			return nil, err
		}
		return nn.NewWideResNet(init, nn.WRNConfig{
			Depth: depth, Width: width, Classes: classes, InChannels: channels, Norm: set.Norm,
			Dropout: set.Dropout, BNMomentum: set.BNMomentum, ChannelsLast: set.ChannelsLast == LayoutChannelsLast,
		})
	},
}, {
	Name:    "resnet-18|resnet-50",
	Example: "resnet-18",
	Match:   func(m string) bool { return strings.HasPrefix(strings.ToLower(m), "resnet") },
	Check: func(set Settings) error {
		if _, err := nn.ParseResNet(set.Model); err != nil {
			return err
		}
		// torchvision's ResNets have batch norm in every block and no dropout: a setting that
		// says otherwise would be recorded but not obeyed.
		if set.Norm != "batch" {
			return fmt.Errorf("%s always has batch norm: --norm %s is not possible (use --norm batch)", set.Model, set.Norm)
		}
		if set.Dropout != 0 {
			return fmt.Errorf("%s has no dropout: --dropout %g is not possible (use 0)", set.Model, set.Dropout)
		}
		return nil
	},
	Build: func(init nn.Init, set Settings, channels, classes int) (Net, error) {
		depth, err := nn.ParseResNet(set.Model)
		if err != nil {
			return nil, err
		}
		return nn.NewResNet(init, nn.ResNetConfig{Depth: depth, Classes: classes, InChannels: channels, ChannelsLast: set.ChannelsLast == LayoutChannelsLast})
	},
}}

func family(name string) (*Family, error) {
	for i := range Families {
		if Families[i].Match(name) {
			return &Families[i], nil
		}
	}
	var names []string
	for _, f := range Families {
		names = append(names, f.Name)
	}
	return nil, fmt.Errorf("unknown model %q (want %s)", name, strings.Join(names, " or "))
}

// Check validates the settings without building anything.
func Check(set Settings) error {
	f, err := family(set.Model)
	if err != nil {
		return err
	}
	if err := f.Check(set); err != nil {
		return err
	}
	if !slices.Contains([]string{"none", "batch"}, set.Norm) {
		return fmt.Errorf("--norm: unknown value %q (want none or batch)", set.Norm)
	}
	if _, err := ParseLayout(set.ChannelsLast); err != nil {
		return fmt.Errorf("--channels-last: %w", err)
	}
	return nil
}

// Model is a network with the scope that owns its parameters and the device they live on.
type Model struct {
	Net
	Store    *torch.Scope
	Dev      torch.Device
	Settings Settings // as asked for: ChannelsLast may be auto
	// Layout is the memory layout the model was built in (ResolveLayout).
	Layout ChosenLayout
	// Precision of Logits, FeaturesOf and Evaluate (fp32 unless set; logits always come out fp32).
	Precision torch.Precision
}

// Close frees the parameters.
func (m *Model) Close() { m.Store.Close() }

// Build makes the network the settings describe for inputs of c channels and the given classes,
// its parameters drawn from a generator seeded with seed (the same on every device).
func Build(set Settings, channels, classes int, seed uint64) (*Model, error) {
	f, err := family(set.Model)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	dev, err := torch.ParseDevice(set.Device)
	if err != nil {
		return nil, fmt.Errorf("--device: %w", err)
	}
	layout, err := ResolveLayout(set)
	if err != nil {
		return nil, err
	}
	built := set
	built.ChannelsLast = LayoutNCHW
	if layout.ChannelsLast {
		built.ChannelsLast = LayoutChannelsLast
	}
	gen, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	store := torch.NewScope()
	// Parameters are drawn on the CPU, then moved, so a seed gives the same model everywhere.
	net, err := f.Build(nn.Init{Store: store, Gen: gen, Dev: torch.CPU}, built, channels, classes)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("--model %s: %w", set.Model, err)
	}
	m := &Model{Net: net, Store: store, Dev: torch.CPU, Settings: set, Layout: layout}
	if dev != torch.CPU {
		if err := m.moveTo(f, built, dev, channels, classes); err != nil {
			store.Close()
			return nil, err
		}
	}
	return m, nil
}

// moveTo rebuilds the parameters on dev by loading a device copy of the state dict.
func (m *Model) moveTo(f *Family, built Settings, dev torch.Device, channels, classes int) error {
	named := map[string]*torch.Tensor{}
	for _, p := range m.StateDict() {
		named[p.Name] = p.T
	}
	store := torch.NewScope()
	// The draws on dev are overwritten by the state dict at once; no seed matters here.
	net, err := f.Build(nn.Init{Store: store, Dev: dev}, built, channels, classes)
	if err != nil {
		store.Close()
		return fmt.Errorf("building model on %s: %w", dev, err)
	}
	if err := net.LoadStateDict(named); err != nil {
		store.Close()
		return err
	}
	m.Store.Close()
	m.Net, m.Store, m.Dev = net, store, dev
	return nil
}
