package trainer

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// loadInit copies the model weights of a run (its newest checkpoint) or checkpoint file into m,
// for --init. It returns the checkpoint file read. Any tensor missing, extra or of another shape
// (another architecture, another class count) is an error naming the tensor and the file.
func loadInit(m *model.Model, init string) (string, error) {
	path, err := model.ResolveCheckpoint(init, false)
	if err != nil {
		return "", fmt.Errorf("--init: %w", err)
	}
	// model.Load reads hdge-torch checkpoints and files in the HDGE/JEM authors' released layout.
	src, err := model.Load(path, "cpu")
	if err != nil {
		return "", fmt.Errorf("--init %s: %w", path, err)
	}
	defer src.Close()
	named := map[string]*torch.Tensor{}
	for _, p := range src.StateDict() {
		named[p.Name] = p.T
	}
	if err := m.LoadStateDict(named); err != nil {
		return "", fmt.Errorf("--init %s: %w (this run's model is %s)", path, err, m.Describe())
	}
	return path, nil
}

// trainedModel is the model as training steps see it: m itself, or with --freeze-features a view
// of m whose encoder runs in eval mode without autograd and whose only parameters are the head's.
// Checkpoints, validation and evaluation keep using m, so nothing else changes.
func trainedModel(c Config, m *model.Model) *model.Model {
	if !c.FreezeFeatures {
		return m
	}
	return &model.Model{Net: frozenNet{m.Net}, Store: m.Store, Dev: m.Dev, Settings: m.Settings}
}

// frozenNet is the linear probe's network. The encoder is held in eval mode (batch norm uses and
// keeps its running statistics, as SupContrast's main_linear.py does with model.eval()) and runs
// with autograd off, so no gradient reaches an encoder weight and backward costs only the head.
type frozenNet struct{ model.Net }

// Features ignores train: the frozen encoder is always in eval mode.
func (f frozenNet) Features(s *torch.Scope, x *torch.Tensor, _ bool) *torch.Tensor {
	c := s.Child()
	c.SetGradEnabled(false)
	feat := f.Net.Features(c, x, false)
	s.Merge(c, feat)
	return feat
}

// Forward is the head on the frozen features; train has no effect on a linear head.
func (f frozenNet) Forward(s *torch.Scope, x *torch.Tensor, train bool) *torch.Tensor {
	logits := f.Net.Head(s, f.Features(s, x, train))
	if logits != nil && logits.DType() != torch.Float32 {
		logits = s.ToDType(logits, torch.Float32)
	}
	return logits
}

// Parameters are the head's alone: the optimiser never sees an encoder weight.
func (f frozenNet) Parameters() []*torch.Tensor { return f.Net.HeadParameters() }
