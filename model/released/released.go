package released

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// Keys of the released code's F module (JEM's F plus HDGE's queue) and of its checkpoint file.
const (
	ModelStateDict = "model_state_dict"
	ReplayBuffer   = "replay_buffer"

	trunkPrefix  = "f."
	headPrefix   = "class_output."
	energyPrefix = "energy_output."
	trunkHead    = "f.linear."
	QueueLogit   = "queue_logit"
	QueuePtr     = "queue_ptr"

	ourHead = "linear."
)

// Options are the parts of the released layout that depend on which release is loaded.
type Options struct {
	// TrunkHeadClasses is the out-size of the Linear that JEM's wideresnet.py builds inside the
	// trunk (f.linear, num_classes defaults to 10 there) and never applies; strict loading needs
	// it present. 0 leaves it out, for a wideresnet.py without it.
	TrunkHeadClasses int
}

// JEMOptions matches JEM's (and HDGE's) wideresnet.py: f.linear is Linear(last_dim, 10).
var JEMOptions = Options{TrunkHeadClasses: 10}

// Checkpoint is the released checkpoint's content in this project's terms.
type Checkpoint struct {
	// Model is the WideResNet state dict as nn.WideResNet names it: conv1.*, layer1.*, ...,
	// bn1.*, linear.weight, linear.bias.
	Model map[string]*ptfile.Tensor
	// Queue is HDGE's queue of past logits, C×K float32, and Ptr its write position (shape [1],
	// int64); both nil when the checkpoint has none.
	Queue, Ptr *ptfile.Tensor
	// Buffer is JEM's SGLD replay buffer (N×C×H×W), nil when absent.
	Buffer *ptfile.Tensor
	// Dropped lists the released keys that have no counterpart here (energy_output.*, f.linear.*),
	// unused by the released forward pass.
	Dropped []string
}

// ToReleased builds the released checkpoint: {"model_state_dict": F's state dict,
// "replay_buffer": buffer} (replay_buffer only when buffer is non-nil). The rules:
//
//	linear.weight, linear.bias  →  class_output.weight, class_output.bias
//	any other key k             →  f.k
//	queue, ptr                  →  queue_logit [C, K], queue_ptr [1] (only when queue is non-nil)
//	                               energy_output.weight [1, D], energy_output.bias [1]: zeros
//	                               f.linear.weight [n, D], f.linear.bias [n]: zeros, n = TrunkHeadClasses
//
// D is the head's input size. The zero tensors stand in for modules the released forward pass
// never uses, so strict loading succeeds and the logits are unchanged.
func ToReleased(model map[string]*ptfile.Tensor, queue, ptr, buffer *ptfile.Tensor, opt Options) (*ptfile.OrderedDict, error) {
	w, ok := model[ourHead+"weight"]
	if !ok || len(w.Shape) != 2 {
		return nil, fmt.Errorf("released checkpoint: the model has no 2-D %sweight (the classifier head)", ourHead)
	}
	classes, dim := w.Shape[0], w.Shape[1]
	if _, ok := model[ourHead+"bias"]; !ok {
		return nil, fmt.Errorf("released checkpoint: the model has no %sbias", ourHead)
	}
	sd := ptfile.NewOrderedDict()
	for _, k := range sortedKeys(model) {
		switch {
		case strings.HasPrefix(k, ourHead):
			continue
		case strings.HasPrefix(k, trunkPrefix) || strings.HasPrefix(k, headPrefix) || strings.HasPrefix(k, energyPrefix) || k == QueueLogit || k == QueuePtr:
			return nil, fmt.Errorf("released checkpoint: model key %q is already in the released layout", k)
		}
		sd.Set(trunkPrefix+k, model[k])
	}
	if n := opt.TrunkHeadClasses; n > 0 {
		sd.Set(trunkHead+"weight", zeros("float32", int64(n), dim))
		sd.Set(trunkHead+"bias", zeros("float32", int64(n)))
	}
	sd.Set(energyPrefix+"weight", zeros("float32", 1, dim))
	sd.Set(energyPrefix+"bias", zeros("float32", 1))
	sd.Set(headPrefix+"weight", w)
	sd.Set(headPrefix+"bias", model[ourHead+"bias"])
	if queue != nil {
		if len(queue.Shape) != 2 || queue.Shape[0] != classes || queue.DType != "float32" {
			return nil, fmt.Errorf("released checkpoint: queue is %s %v, want float32 [%d, K] (classes × queue size)", queue.DType, queue.Shape, classes)
		}
		if ptr == nil {
			ptr = zeros("int64", 1)
		}
		if ptr.DType != "int64" || ptr.Numel() != 1 {
			return nil, fmt.Errorf("released checkpoint: queue pointer is %s %v, want one int64", ptr.DType, ptr.Shape)
		}
		sd.Set(QueueLogit, queue)
		sd.Set(QueuePtr, &ptfile.Tensor{DType: "int64", Shape: []int64{1}, Data: ptr.Data})
	}
	ckpt := ptfile.NewOrderedDict()
	ckpt.Set(ModelStateDict, sd)
	if buffer != nil {
		ckpt.Set(ReplayBuffer, buffer)
	}
	return ckpt, nil
}

// FromReleased reads a released checkpoint back, inverting ToReleased. v is what ptfile.Read
// returns for the file: the checkpoint dict with model_state_dict (and maybe replay_buffer), or
// a bare state dict of F. Keys outside the released layout are an error naming them, so a
// checkpoint of another model is refused rather than half loaded.
func FromReleased(v any) (*Checkpoint, error) {
	top, err := asDict(v, "checkpoint")
	if err != nil {
		return nil, err
	}
	sdv, hasSD := top.Get(ModelStateDict)
	var sd *ptfile.OrderedDict
	if hasSD {
		if sd, err = asDict(sdv, ModelStateDict); err != nil {
			return nil, err
		}
	} else {
		sd = top
	}
	c := &Checkpoint{Model: map[string]*ptfile.Tensor{}}
	if hasSD {
		if b, ok := top.Get(ReplayBuffer); ok && b != nil {
			bt, ok := b.(*ptfile.Tensor)
			if !ok {
				return nil, fmt.Errorf("released checkpoint: %s is a %T, not a tensor", ReplayBuffer, b)
			}
			c.Buffer = bt
		}
	}
	var unknown []string
	for _, k := range sd.Keys {
		val, _ := sd.Get(k)
		t, ok := val.(*ptfile.Tensor)
		if !ok {
			return nil, fmt.Errorf("released checkpoint: %s is a %T, not a tensor", k, val)
		}
		switch {
		case strings.HasPrefix(k, trunkHead), strings.HasPrefix(k, energyPrefix):
			c.Dropped = append(c.Dropped, k)
		case strings.HasPrefix(k, headPrefix):
			c.Model[ourHead+strings.TrimPrefix(k, headPrefix)] = t
		case strings.HasPrefix(k, trunkPrefix):
			c.Model[strings.TrimPrefix(k, trunkPrefix)] = t
		case k == QueueLogit:
			c.Queue = t
		case k == QueuePtr:
			c.Ptr = t
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("released checkpoint: keys outside the released layout (f.*, class_output.*, energy_output.*, %s, %s): %s",
			QueueLogit, QueuePtr, strings.Join(unknown, ", "))
	}
	for _, k := range []string{ourHead + "weight", ourHead + "bias"} {
		if _, ok := c.Model[k]; !ok {
			return nil, fmt.Errorf("released checkpoint: no %s%s (the classifier head)", headPrefix, strings.TrimPrefix(k, ourHead))
		}
	}
	return c, nil
}

func asDict(v any, what string) (*ptfile.OrderedDict, error) {
	switch d := v.(type) {
	case *ptfile.OrderedDict:
		return d, nil
	case map[string]any:
		od := ptfile.NewOrderedDict()
		for _, k := range sortedKeys(d) {
			od.Set(k, d[k])
		}
		return od, nil
	}
	return nil, fmt.Errorf("released checkpoint: the %s is a %T, not a dict", what, v)
}

func zeros(dtype string, shape ...int64) *ptfile.Tensor {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	size := map[string]int64{"float32": 4, "int64": 8}[dtype]
	return &ptfile.Tensor{DType: dtype, Shape: shape, Data: make([]byte, n*size)}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
