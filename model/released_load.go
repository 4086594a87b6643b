package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/hdge-torch/hdge-torch/model/released"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// Assumptions for a released checkpoint, which records no settings: the released code's
// contrast settings, and no test-time noise (its eval_wrn.py adds none).
const (
	releasedSide        = 32 // the released code's image side (its trunk pools 8×8)
	releasedTemperature = 0.1
	releasedContrast    = "official"
)

// looksReleased reports whether a file's content is in the released layout: a dict with
// model_state_dict holding f.* and class_output.* keys, or such a state dict itself.
func looksReleased(v any) bool {
	d, ok := v.(*ptfile.OrderedDict)
	if !ok {
		return false
	}
	if sd, ok := d.Get(released.ModelStateDict); ok {
		if d, ok = sd.(*ptfile.OrderedDict); !ok {
			return false
		}
	}
	_, head := d.Get("class_output.weight")
	_, trunk := d.Get("f.conv1.weight")
	return head && trunk
}

var blockKey = regexp.MustCompile(`^layer1\.(\d+)\.conv1\.weight$`)

// loadReleased builds the WideResNet a released checkpoint holds. Depth, width and norm come
// from the tensors' shapes; what the file cannot say (the dataset, the test-time noise, the
// contrast settings) is assumed and listed in Loaded.Inferred.
func loadReleased(p string, v any, device string) (*Loaded, error) {
	ck, err := released.FromReleased(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	blocks := 0
	for k := range ck.Model {
		if m := blockKey.FindStringSubmatch(k); m != nil {
			n, _ := strconv.Atoi(m[1])
			blocks = max(blocks, n+1)
		}
	}
	w0, ok := ck.Model["layer1.0.conv1.weight"]
	if blocks == 0 || !ok || len(w0.Shape) != 4 || w0.Shape[0]%16 != 0 {
		return nil, fmt.Errorf("%s: a released checkpoint, but not of a WideResNet (no layer1.N.conv1.weight with a multiple of 16 filters)", p)
	}
	run := Run{
		Model: fmt.Sprintf("wrn-%d-%d", 6*blocks+4, w0.Shape[0]/16), Norm: "none", Objective: "released",
		Device: device, Temperature: releasedTemperature, Contrast: releasedContrast, NormLogits: true,
	}
	if _, ok := ck.Model["bn1.running_mean"]; ok {
		run.Norm = "batch"
	}
	if ck.Queue != nil {
		run.Objective = "hdge"
	}
	if run.Device == "" {
		run.Device = "cpu"
	}
	run.ChannelsLast = LayoutAuto // the file records none: the rule picks for this device and norm
	inferred := []string{
		fmt.Sprintf("--model %s and --norm %s from the tensors' shapes", run.Model, run.Norm),
		"no test-time noise and no dataset recorded (give the in-distribution set with --test)",
	}
	if ck.Queue != nil {
		inferred = append(inferred, fmt.Sprintf("pxsim with the released defaults: --temperature %g --contrast %s --norm-logits", releasedTemperature, releasedContrast))
	}
	s := torch.NewScope()
	defer s.Close()
	named := map[string]*torch.Tensor{}
	for k, h := range ck.Model {
		if named[k], err = s.FromHost(h); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p, k, err)
		}
	}
	channels, classes, err := shapeOf(named)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	m, err := Build(run.Settings(), channels, classes, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := m.LoadStateDict(named); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s (released layout, read as %s --norm %s): %w", p, run.Model, run.Norm, err)
	}
	objScope := torch.NewScope()
	obj := map[string]*torch.Tensor{}
	for k, h := range map[string]*ptfile.Tensor{"queue": ck.Queue, "queue_ptr": ck.Ptr, "replay_buffer": ck.Buffer} {
		if h == nil {
			continue
		}
		if obj[k], err = objScope.FromHost(h); err != nil {
			m.Close()
			objScope.Close()
			return nil, fmt.Errorf("%s: %s: %w", p, k, err)
		}
	}
	cfg, err := json.Marshal(map[string]any{"model": run.Model, "norm": run.Norm, "objective": run.Objective, "device": run.Device,
		"channels_last": run.ChannelsLast, "temperature": run.Temperature, "contrast": run.Contrast, "norm_logits": run.NormLogits,
		"released": true, "inferred": inferred})
	if err != nil {
		m.Close()
		objScope.Close()
		return nil, err
	}
	return &Loaded{Model: m, Run: run, Config: cfg, Path: p, Objective: obj, objScope: objScope, Released: true, Inferred: inferred}, nil
}

// Exported describes a file ExportReleased wrote.
type Exported struct {
	Checkpoint string // the hdge-torch checkpoint it came from
	Model      string
	Keys       int  // entries of its model_state_dict
	Queue      bool // queue_logit and queue_ptr included
	// Buffer is true when the run's own replay buffer was written; otherwise replay_buffer is
	// JEM's fresh start (FreshBufferSize uniform images), which eval_wrn_ebm.py needs to load.
	Buffer bool
}

// ExportReleased writes the checkpoint that path names (a run directory's best.pt, else its
// newest, or a file) in the released code's layout (released.ToReleased), with HDGE's queue and
// JEM's replay buffer when the run has them, so the authors' eval_wrn.py and eval_wrn_ebm.py
// load it as they are. Only the WideResNet has a released counterpart.
func ExportReleased(path, out string) (*Exported, error) {
	p, err := ResolveCheckpoint(path, true)
	if err != nil {
		return nil, err
	}
	v, err := ptfile.Read(p)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if !isCheckpoint(v) {
		return nil, fmt.Errorf("%s is not an hdge-torch checkpoint (already in the released layout?)", p)
	}
	root := v.(*ptfile.OrderedDict)
	var run Run
	if c, ok := root.Get("config"); ok {
		if cs, ok := c.(string); ok {
			_ = json.Unmarshal([]byte(cs), &run)
		}
	}
	if _, _, err := nn.ParseModel(run.Model); err != nil {
		return nil, fmt.Errorf("%s: model %q has no counterpart in the released code (a WideResNet, wrn-DEPTH-WIDTH, does)", p, run.Model)
	}
	host := func(key string) (map[string]*ptfile.Tensor, error) {
		d := map[string]*ptfile.Tensor{}
		dv, ok := root.Get(key)
		if !ok {
			return d, nil
		}
		od, ok := dv.(*ptfile.OrderedDict)
		if !ok {
			return nil, fmt.Errorf("%s: %s is not a dict", p, key)
		}
		for _, k := range od.Keys {
			t, ok := od.Values[k].(*ptfile.Tensor)
			if !ok {
				return nil, fmt.Errorf("%s: %s.%s is not a tensor", p, key, k)
			}
			d[k] = t
		}
		return d, nil
	}
	sd, err := host("model_state_dict")
	if err != nil {
		return nil, err
	}
	obj, err := host("objective")
	if err != nil {
		return nil, err
	}
	buf, fresh := obj["replay_buffer"], false
	if buf == nil {
		// JEM's eval_wrn_ebm.py reads ckpt["replay_buffer"] on load; a run without one gets the
		// buffer JEM starts from, uniform noise in [-1, 1].
		w, ok := sd["conv1.weight"]
		if !ok || len(w.Shape) != 4 {
			return nil, fmt.Errorf("%s: model_state_dict has no 4-D conv1.weight", p)
		}
		buf, fresh = freshBuffer(w.Shape[1]), true
	}
	ck, err := released.ToReleased(sd, obj["queue"], obj["queue_ptr"], buf, released.JEMOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := ptfile.Write(out, ck); err != nil {
		return nil, fmt.Errorf("--out %s: %w", out, err)
	}
	keys := 0
	if v, ok := ck.Get(released.ModelStateDict); ok {
		keys = len(v.(*ptfile.OrderedDict).Keys)
	}
	return &Exported{Checkpoint: p, Model: run.Model, Keys: keys, Queue: obj["queue"] != nil, Buffer: !fresh}, nil
}

// FreshBufferSize is the number of images in the replay buffer ExportReleased writes for a run
// that has none, at the released code's 32×32.
const FreshBufferSize = 100

// freshBuffer is JEM's initial replay buffer (init_random: uniform in [-1, 1]), from a fixed seed.
func freshBuffer(channels int64) *ptfile.Tensor {
	n := FreshBufferSize * channels * releasedSide * releasedSide
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(2*r.Float64()-1)))
	}
	return &ptfile.Tensor{DType: "float32", Shape: []int64{FreshBufferSize, channels, releasedSide, releasedSide}, Data: b}
}
