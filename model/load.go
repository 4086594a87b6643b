package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// Run is the part of a training run's configuration that describes its model and its inputs:
// what evaluation, scoring and sampling need to use a checkpoint the way it was trained.
type Run struct {
	Dataset      string  `json:"dataset"`
	DataDir      string  `json:"data_dir,omitempty"`
	Model        string  `json:"model"`
	Norm         string  `json:"norm"`
	Dropout      float64 `json:"dropout"`
	Objective    string  `json:"objective"`
	Noise        float64 `json:"noise"`
	Seed         uint64  `json:"seed"`
	Device       string  `json:"device"`
	ChannelsLast Layout  `json:"channels_last"` // as asked for; old configs hold a bool
	// HDGE's contrast settings, which its pxsim score repeats (zero for other objectives).
	Temperature    float64 `json:"temperature,omitempty"`
	Contrast       string  `json:"contrast,omitempty"`
	NormLogits     bool    `json:"norm_logits,omitempty"`
	LabelSmoothing float64 `json:"label_smoothing,omitempty"`
	BNMomentum     float64 `json:"bn_momentum,omitempty"`
}

// Settings is the model half of the run.
func (r Run) Settings() Settings {
	return Settings{Model: r.Model, Norm: r.Norm, Dropout: r.Dropout, BNMomentum: r.BNMomentum, ChannelsLast: r.ChannelsLast, Device: r.Device}
}

// ReadRun reads the model half of a run directory's config.json.
func ReadRun(runDir string) (Run, error) {
	var r Run
	path := filepath.Join(runDir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("reading run config: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Loaded is a trained model with the checkpoint it came from.
type Loaded struct {
	*Model
	Run        Run
	Config     json.RawMessage // the whole run configuration, as the trainer wrote it
	Path       string
	Step       int
	BestValAcc float64
	// Objective holds the objective's saved tensors (HDGE's queue, ...), on the CPU; the caller
	// that takes them frees them with Close.
	Objective map[string]*torch.Tensor
	objScope  *torch.Scope
	// Released is set for a checkpoint in the authors' released layout; Inferred then says which
	// settings were read from the tensors' shapes or assumed, for the user to check.
	Released bool
	Inferred []string
}

// Close frees the model and the objective's tensors.
func (l *Loaded) Close() {
	l.Model.Close()
	l.objScope.Close()
}

// Load reads a checkpoint (or a run directory's best.pt, else its newest checkpoint) and
// rebuilds its model on device ("" keeps the run's device). channels and classes come from the
// checkpoint's tensors, so a mismatched file is reported, not misread.
func Load(path, device string) (*Loaded, error) {
	p, err := ResolveCheckpoint(path, true)
	if err != nil {
		return nil, err
	}
	v, err := ptfile.Read(p)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if !isCheckpoint(v) && looksReleased(v) {
		return loadReleased(p, v, device)
	}
	objScope := torch.NewScope()
	s := torch.NewScope()
	defer s.Close()
	ck, err := decodeCheckpoint(s, p, v)
	if err != nil {
		objScope.Close()
		return nil, err
	}
	var run Run
	if err := json.Unmarshal(ck.Config, &run); err != nil {
		objScope.Close()
		return nil, fmt.Errorf("%s: config: %w", p, err)
	}
	if device != "" {
		run.Device = device
	}
	if run.Device == "" {
		run.Device = "cpu"
	}
	// The run's recorded layout is obeyed when explicit; auto (and a config without the field) is
	// resolved for the device the model is loaded on, not the one it was trained on.
	channels, classes, err := shapeOf(ck.Model)
	if err != nil {
		objScope.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	m, err := Build(run.Settings(), channels, classes, run.Seed)
	if err != nil {
		objScope.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		m.Close()
		objScope.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	obj := map[string]*torch.Tensor{}
	for k, t := range ck.Objective {
		obj[k] = objScope.Adopt(t)
	}
	return &Loaded{Model: m, Run: run, Config: ck.Config, Path: p, Step: ck.Step, BestValAcc: ck.BestVal,
		Objective: obj, objScope: objScope}, nil
}

// shapeOf reads input channels and classes from a state dict: the first 4-d weight and the
// last 2-d weight (the classifier head), which every family ends with.
func shapeOf(sd map[string]*torch.Tensor) (channels, classes int, err error) {
	for _, k := range []string{"conv1.weight", "Conv2d_1a_3x3.conv.weight"} {
		if t, ok := sd[k]; ok && t.Dim() == 4 {
			channels = int(t.Size(1))
		}
	}
	for _, k := range []string{"linear.weight", "fc.weight"} {
		if t, ok := sd[k]; ok && t.Dim() == 2 {
			classes = int(t.Size(0))
		}
	}
	if channels == 0 || classes == 0 {
		return 0, 0, fmt.Errorf("model_state_dict is not a model hdge-torch knows (no conv1.weight with linear.weight or fc.weight)")
	}
	return channels, classes, nil
}
