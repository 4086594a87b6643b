package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// Checkpoint layout (a torch.save-compatible file; in Python: ckpt = torch.load(path)):
//
//	model_state_dict  OrderedDict name → tensor, loadable into the PyTorch model
//	optimizer         {"name", "step", "lr", "state": {name → tensor}}
//	objective         {name → tensor}: the objective's parameters and state (HDGE: the queue
//	                  of raw logits C×K and queue_ptr; later a projection head, a replay buffer)
//	rng               {name → uint8 tensor}: the state of every generator the run owns
//	                  ("dropout", "objective"); checkpoints before format 2 saved libtorch's
//	                  global generator as "torch_cpu"
//	step, epoch, batch (the data pipeline position: next batch of that epoch)
//	best_val_acc, config (JSON text), format ("hdge-torch/1")
const checkpointFormat = "hdge-torch/1"

// Checkpoint is everything a run saves to continue exactly where it was.
type Checkpoint struct {
	Model     map[string]*torch.Tensor
	ModelKeys []string // state_dict order
	OptName   string
	OptStep   int64
	OptLR     float64
	OptState  map[string]*torch.Tensor
	Objective map[string]*torch.Tensor
	RNG       map[string][]byte
	Step      int
	Pos       data.Position
	BestVal   float64
	// Config is the run's configuration as JSON; the trainer owns its schema, Run reads the
	// part that describes the model and its input.
	Config json.RawMessage
}

func ptDict(keys []string, m map[string]*torch.Tensor) (*ptfile.OrderedDict, error) {
	if keys == nil {
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	}
	d := ptfile.NewOrderedDict()
	for _, k := range keys {
		p, err := torch.ToHost(m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		d.Set(k, p)
	}
	return d, nil
}

// Save writes the checkpoint atomically (ptfile.Write: temp file, fsync, rename).
func (c *Checkpoint) Save(path string) error {
	model, err := ptDict(c.ModelKeys, c.Model)
	if err != nil {
		return fmt.Errorf("checkpoint %s: model %w", path, err)
	}
	opt, err := ptDict(nil, c.OptState)
	if err != nil {
		return fmt.Errorf("checkpoint %s: optimizer %w", path, err)
	}
	obj, err := ptDict(nil, c.Objective)
	if err != nil {
		return fmt.Errorf("checkpoint %s: objective %w", path, err)
	}
	root := ptfile.NewOrderedDict()
	root.Set("format", checkpointFormat)
	root.Set("model_state_dict", model)
	optD := ptfile.NewOrderedDict()
	optD.Set("name", c.OptName)
	optD.Set("step", c.OptStep)
	optD.Set("lr", c.OptLR)
	optD.Set("state", opt)
	root.Set("optimizer", optD)
	root.Set("objective", obj)
	rng := ptfile.NewOrderedDict()
	names := make([]string, 0, len(c.RNG))
	for k := range c.RNG {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rng.Set(k, &ptfile.Tensor{DType: "uint8", Shape: []int64{int64(len(c.RNG[k]))}, Data: c.RNG[k]})
	}
	root.Set("rng", rng)
	root.Set("step", int64(c.Step))
	root.Set("epoch", int64(c.Pos.Epoch))
	root.Set("batch", int64(c.Pos.Batch))
	root.Set("best_val_acc", c.BestVal)
	root.Set("config", string(c.Config))
	if err := ptfile.Write(path, root); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}

// ReadCheckpoint reads a checkpoint file written by Save; its tensors land in s. A field of the
// wrong type is an error naming the field: a damaged or foreign file is never read as zeros.
func ReadCheckpoint(s *torch.Scope, path string) (*Checkpoint, error) {
	v, err := ptfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	return decodeCheckpoint(s, path, v)
}

// isCheckpoint reports whether v, a file's content, is in this project's checkpoint format.
func isCheckpoint(v any) bool {
	root, ok := v.(*ptfile.OrderedDict)
	if !ok {
		return false
	}
	f, _ := root.Get("format")
	return f == checkpointFormat
}

func decodeCheckpoint(s *torch.Scope, path string, v any) (*Checkpoint, error) {
	var err error
	root, ok := v.(*ptfile.OrderedDict)
	if !ok {
		return nil, fmt.Errorf("%s: not an hdge-torch checkpoint (top level is %T, not a dict)", path, v)
	}
	bad := func(what string) error {
		return fmt.Errorf("%s: not an hdge-torch checkpoint or damaged: %s", path, what)
	}
	if f, _ := root.Get("format"); f != checkpointFormat {
		return nil, bad(fmt.Sprintf("format is %v, want %s", f, checkpointFormat))
	}
	c := &Checkpoint{}
	cfgText, _ := root.Get("config")
	cs, ok := cfgText.(string)
	if !ok {
		return nil, bad("no config")
	}
	if !json.Valid([]byte(cs)) {
		return nil, bad("config is not JSON")
	}
	c.Config = json.RawMessage(cs)
	tensors := func(key string, d any) (map[string]*torch.Tensor, []string, error) {
		od, ok := d.(*ptfile.OrderedDict)
		if !ok {
			return nil, nil, bad(key + " is missing or not a dict")
		}
		m := map[string]*torch.Tensor{}
		for _, k := range od.Keys {
			p, ok := od.Values[k].(*ptfile.Tensor)
			if !ok {
				return nil, nil, bad(key + "." + k + " is not a tensor")
			}
			t, err := s.FromHost(p)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s.%s: %w", path, key, k, err)
			}
			m[k] = t
		}
		return m, od.Keys, nil
	}
	mv, _ := root.Get("model_state_dict")
	if c.Model, c.ModelKeys, err = tensors("model_state_dict", mv); err != nil {
		return nil, err
	}
	if ov, ok := root.Get("optimizer"); ok {
		od, ok := ov.(*ptfile.OrderedDict)
		if !ok {
			return nil, bad("optimizer is not a dict")
		}
		if c.OptName, err = field[string](od, "optimizer.name"); err != nil {
			return nil, bad(err.Error())
		}
		if c.OptStep, err = field[int64](od, "optimizer.step"); err != nil {
			return nil, bad(err.Error())
		}
		if c.OptLR, err = field[float64](od, "optimizer.lr"); err != nil {
			return nil, bad(err.Error())
		}
		sv, _ := od.Get("state")
		if c.OptState, _, err = tensors("optimizer.state", sv); err != nil {
			return nil, err
		}
	}
	if ob, ok := root.Get("objective"); ok {
		if c.Objective, _, err = tensors("objective", ob); err != nil {
			return nil, err
		}
	}
	c.RNG = map[string][]byte{}
	if rv, ok := root.Get("rng"); ok {
		rd, ok := rv.(*ptfile.OrderedDict)
		if !ok {
			return nil, bad("rng is not a dict")
		}
		for _, k := range rd.Keys {
			t, ok := rd.Values[k].(*ptfile.Tensor)
			if !ok || t.DType != "uint8" {
				return nil, bad("rng." + k + " is not a uint8 tensor")
			}
			c.RNG[k] = t.Data
		}
	}
	var step, epoch, batch int64
	for _, f := range []struct {
		key string
		dst *int64
	}{{"step", &step}, {"epoch", &epoch}, {"batch", &batch}} {
		if *f.dst, err = field[int64](root, f.key); err != nil {
			return nil, bad(err.Error())
		}
	}
	c.Step, c.Pos = int(step), data.Position{Epoch: int(epoch), Batch: int(batch)}
	if _, ok := root.Get("best_val_acc"); ok {
		if c.BestVal, err = field[float64](root, "best_val_acc"); err != nil {
			return nil, bad(err.Error())
		}
	}
	return c, nil
}

// field reads a dict entry of type T; name is its dotted path, for the error.
func field[T any](d *ptfile.OrderedDict, name string) (T, error) {
	var zero T
	key := name[strings.LastIndex(name, ".")+1:]
	v, ok := d.Get(key)
	if !ok {
		return zero, fmt.Errorf("%s is missing", name)
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%s is %T, want %T", name, v, zero)
	}
	return t, nil
}

// CheckpointDir is where a run keeps its checkpoints.
func CheckpointDir(run string) string { return filepath.Join(run, "checkpoints") }

// StepCheckpointName is the file name of the checkpoint after step.
func StepCheckpointName(step int) string { return fmt.Sprintf("step-%08d.pt", step) }

// ListCheckpoints returns a run's step checkpoints, oldest first.
func ListCheckpoints(run string) ([]string, error) {
	entries, err := os.ReadDir(CheckpointDir(run))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "step-") && strings.HasSuffix(e.Name(), ".pt") {
			out = append(out, filepath.Join(CheckpointDir(run), e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// ResolveCheckpoint turns a run directory or a checkpoint file into a checkpoint path: a
// directory gives its newest step checkpoint (or best.pt when asked for with best). It is the one
// rule for "run directory or checkpoint file" everywhere a user names a model.
func ResolveCheckpoint(p string, best bool) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", p, err)
	}
	if !st.IsDir() {
		return p, nil
	}
	if best {
		b := filepath.Join(CheckpointDir(p), "best.pt")
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	list, err := ListCheckpoints(p)
	if err != nil {
		return "", fmt.Errorf("run %s: %w", p, err)
	}
	if len(list) == 0 {
		return "", fmt.Errorf("run %s has no checkpoints (looked in %s)", p, CheckpointDir(p))
	}
	return list[len(list)-1], nil
}

// RunDirOf is the run directory a checkpoint path belongs to: the path itself when it is a
// folder, else the folder above checkpoints/.
func RunDirOf(p string) string {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return p
	}
	return filepath.Dir(filepath.Dir(p))
}
