package trainer

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
//	model_state_dict  OrderedDict name → tensor, loadable into the PyTorch WideResNet
//	optimizer         {"name", "step", "lr", "state": {name → tensor}}
//	objective         {name → tensor}: the HDGE queue (C×K raw logits) and queue_ptr
//	rng               {"torch_cpu": uint8 state of libtorch's default CPU generator (dropout)}
//	step, epoch, batch (the data pipeline position: next batch of that epoch)
//	best_val_acc, config (JSON text), format ("hdge-torch/1")
const checkpointFormat = "hdge-torch/1"

type checkpoint struct {
	Model     map[string]*torch.Tensor
	ModelKeys []string
	OptName   string
	OptStep   int64
	OptLR     float64
	OptState  map[string]*torch.Tensor
	Objective map[string]*torch.Tensor
	RNG       []byte
	Step      int
	Pos       data.Position
	BestVal   float64
	Config    Config
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

// save writes the checkpoint atomically (ptfile.Write: temp file, fsync, rename).
func (c *checkpoint) save(path string) error {
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
	cfg, _ := json.Marshal(c.Config)
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
	rng.Set("torch_cpu", &ptfile.Tensor{DType: "uint8", Shape: []int64{int64(len(c.RNG))}, Data: c.RNG})
	root.Set("rng", rng)
	root.Set("step", int64(c.Step))
	root.Set("epoch", int64(c.Pos.Epoch))
	root.Set("batch", int64(c.Pos.Batch))
	root.Set("best_val_acc", c.BestVal)
	root.Set("config", string(cfg))
	if err := ptfile.Write(path, root); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint reads a checkpoint file written by save; tensors land in s.
func loadCheckpoint(s *torch.Scope, path string) (*checkpoint, error) {
	v, err := ptfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
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
	c := &checkpoint{}
	cfgText, _ := root.Get("config")
	cs, ok := cfgText.(string)
	if !ok {
		return nil, bad("no config")
	}
	if err := json.Unmarshal([]byte(cs), &c.Config); err != nil {
		return nil, bad("config: " + err.Error())
	}
	c.Config.fillOlder()
	tensors := func(key string, d any) (map[string]*torch.Tensor, []string, error) {
		od, ok := d.(*ptfile.OrderedDict)
		if !ok {
			return nil, nil, bad(key + " is missing")
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
		name, _ := od.Get("name")
		c.OptName, _ = name.(string)
		st, _ := od.Get("step")
		c.OptStep, _ = st.(int64)
		lr, _ := od.Get("lr")
		c.OptLR, _ = lr.(float64)
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
	if rv, ok := root.Get("rng"); ok {
		if rd, ok := rv.(*ptfile.OrderedDict); ok {
			if t, ok := rd.Values["torch_cpu"].(*ptfile.Tensor); ok {
				c.RNG = t.Data
			}
		}
	}
	geti := func(k string) int {
		v, _ := root.Get(k)
		i, _ := v.(int64)
		return int(i)
	}
	c.Step = geti("step")
	c.Pos = data.Position{Epoch: geti("epoch"), Batch: geti("batch")}
	if bv, ok := root.Get("best_val_acc"); ok {
		c.BestVal, _ = bv.(float64)
	}
	return c, nil
}

// checkpointDir is where a run keeps its checkpoints.
func checkpointDir(run string) string { return filepath.Join(run, "checkpoints") }

func stepCheckpointName(step int) string { return fmt.Sprintf("step-%08d.pt", step) }

// listCheckpoints returns a run's step checkpoints, oldest first.
func listCheckpoints(run string) ([]string, error) {
	entries, err := os.ReadDir(checkpointDir(run))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "step-") && strings.HasSuffix(e.Name(), ".pt") {
			out = append(out, filepath.Join(checkpointDir(run), e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// ResolveCheckpoint turns a run directory or a checkpoint file into a checkpoint path: a
// directory gives its newest step checkpoint (or best.pt when asked for with best).
func ResolveCheckpoint(p string, best bool) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", p, err)
	}
	if !st.IsDir() {
		return p, nil
	}
	if best {
		b := filepath.Join(checkpointDir(p), "best.pt")
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	list, err := listCheckpoints(p)
	if err != nil {
		return "", fmt.Errorf("run %s: %w", p, err)
	}
	if len(list) == 0 {
		return "", fmt.Errorf("run %s has no checkpoints (looked in %s)", p, checkpointDir(p))
	}
	return list[len(list)-1], nil
}
