package trainer

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Loaded is a trained model with the configuration and bookkeeping of the run that made it.
type Loaded struct {
	*Model
	Config     Config
	Path       string
	Step       int
	BestValAcc float64
}

// LoadModel reads a checkpoint (or a run directory's best.pt, else its newest checkpoint) and
// rebuilds its model on device ("" keeps the run's device). channels and classes come from the
// checkpoint itself, so a mismatched file is reported, not misread.
func LoadModel(path, device string) (*Loaded, error) {
	p, err := ResolveCheckpoint(path, true)
	if err != nil {
		return nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	ck, err := loadCheckpoint(s, p)
	if err != nil {
		return nil, err
	}
	cfg := ck.Config
	if device != "" {
		cfg.Device = device
	}
	if cfg.Device == "cpu" {
		cfg.ChannelsLast = true // a layout, not a property of the model: the faster one on a CPU
	}
	first, ok := ck.Model["conv1.weight"]
	lin, ok2 := ck.Model["linear.weight"]
	if !ok || !ok2 || first.Dim() != 4 || lin.Dim() != 2 {
		return nil, fmt.Errorf("%s: model_state_dict is not a WideResNet's (no conv1.weight / linear.weight)", p)
	}
	channels, classes := int(first.Size(1)), int(lin.Size(0))
	m, err := BuildModel(cfg, channels, classes, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &Loaded{Model: m, Config: cfg, Path: p, Step: ck.Step, BestValAcc: ck.BestVal}, nil
}
