package suite

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/eval"
	"github.com/hdge-torch/hdge-torch/model"
)

// QueueFile holds HDGE's queue of past logits (C×K float32) in a logits folder, for pxsim.
const QueueFile = "queue.npy"

// QueueKey is the objective tensor HDGE saves its queue under.
const QueueKey = "queue"

// Contrast is the part of the run's settings that pxsim repeats, as the index stores it.
type Contrast struct {
	Tau            float64 `json:"temperature"`
	NormLogits     bool    `json:"norm_logits"`
	Form           string  `json:"contrast"`
	LabelSmoothing float64 `json:"label_smoothing"`
	K              int     `json:"queue_size"`
}

// Config is the score's form of the settings.
func (c Contrast) Config() eval.ContrastConfig {
	return eval.ContrastConfig{Tau: c.Tau, NormLogits: c.NormLogits, Form: c.Form, LabelSmoothing: c.LabelSmoothing}
}

// PXSimInputs returns what HDGE's contrastive score needs of a loaded checkpoint: the queue
// (C×K, row-major) and the contrast settings of its run. A checkpoint without a queue (a CE
// model, say) is an *InputError naming flag (the one that asked for pxsim) and the file.
func PXSimInputs(m *model.Loaded, flag string) ([]float32, Contrast, error) {
	q, ok := m.Objective[QueueKey]
	if !ok {
		return nil, Contrast{}, inputErr(flag, "%s needs HDGE's queue of past logits, but checkpoint %s (objective %q) holds none: use %s or %s",
			eval.ScorePXSim, m.Path, m.Run.Objective, eval.ScoreLogQX, eval.ScoreMaxProb)
	}
	if q.Dim() != 2 || int(q.Size(0)) != m.Classes() {
		return nil, Contrast{}, fmt.Errorf("%s: objective.%s has shape %v, want [%d, K]", m.Path, QueueKey, q.Shape(), m.Classes())
	}
	v, err := q.Float32s()
	if err != nil {
		return nil, Contrast{}, fmt.Errorf("%s: objective.%s: %w", m.Path, QueueKey, err)
	}
	r := m.Run
	c := Contrast{Tau: r.Temperature, NormLogits: r.NormLogits, Form: r.Contrast, LabelSmoothing: r.LabelSmoothing, K: int(q.Size(1))}
	if err := c.Config().Validate(); err != nil {
		return nil, Contrast{}, fmt.Errorf("%s: the run's settings: %w", m.Path, err)
	}
	return v, c, nil
}
