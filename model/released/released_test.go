package released

import (
	"encoding/binary"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

const refPython = "/usr/bin/python3"

func tensor(dtype string, shape ...int64) *ptfile.Tensor {
	return zeros(dtype, shape...)
}

// TestKeyRules checks the mapping on a hand-made state dict, both ways, with the errors a user
// meets for a checkpoint of something else.
func TestKeyRules(t *testing.T) {
	model := map[string]*ptfile.Tensor{
		"conv1.weight": tensor("float32", 16, 3, 3, 3), "conv1.bias": tensor("float32", 16),
		"layer1.0.bn1.running_mean": tensor("float32", 16), "layer1.0.bn1.num_batches_tracked": tensor("int64"),
		"bn1.weight": tensor("float32", 64), "linear.weight": tensor("float32", 10, 64), "linear.bias": tensor("float32", 10),
	}
	queue, ptr, buf := tensor("float32", 10, 32), &ptfile.Tensor{DType: "int64", Shape: []int64{1}, Data: []byte{5, 0, 0, 0, 0, 0, 0, 0}}, tensor("float32", 2, 3, 32, 32)
	ck, err := ToReleased(model, queue, ptr, buf, JEMOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ck.Keys, []string{ModelStateDict, ReplayBuffer}) {
		t.Errorf("checkpoint keys %v", ck.Keys)
	}
	sdv, _ := ck.Get(ModelStateDict)
	sd := sdv.(*ptfile.OrderedDict)
	want := []string{"f.bn1.weight", "f.conv1.bias", "f.conv1.weight", "f.layer1.0.bn1.num_batches_tracked", "f.layer1.0.bn1.running_mean",
		"f.linear.weight", "f.linear.bias", "energy_output.weight", "energy_output.bias", "class_output.weight", "class_output.bias", "queue_logit", "queue_ptr"}
	if !slices.Equal(sd.Keys, want) {
		t.Errorf("state dict keys\n got %v\nwant %v", sd.Keys, want)
	}
	shape := func(k string) string { v, _ := sd.Get(k); return fmt.Sprint(v.(*ptfile.Tensor).Shape) }
	for k, s := range map[string]string{"energy_output.weight": "[1 64]", "energy_output.bias": "[1]", "f.linear.weight": "[10 64]", "queue_ptr": "[1]"} {
		if shape(k) != s {
			t.Errorf("%s has shape %s, want %s", k, shape(k), s)
		}
	}
	back, err := FromReleased(ck)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sortedKeys(back.Model)) != fmt.Sprint(sortedKeys(model)) || back.Queue != queue || back.Buffer != buf || back.Ptr.Data[0] != 5 {
		t.Errorf("round trip: %v, queue %v, buffer %v", sortedKeys(back.Model), back.Queue != nil, back.Buffer != nil)
	}
	if !slices.Equal(back.Dropped, []string{"f.linear.weight", "f.linear.bias", "energy_output.weight", "energy_output.bias"}) {
		t.Errorf("dropped %v", back.Dropped)
	}
	// Without the trunk's Linear, without queue or buffer, and from a bare state dict.
	ck, err = ToReleased(model, nil, nil, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sdv, _ = ck.Get(ModelStateDict)
	if keys := sdv.(*ptfile.OrderedDict).Keys; slices.Contains(keys, "f.linear.weight") || slices.Contains(keys, QueueLogit) || len(ck.Keys) != 1 {
		t.Errorf("minimal checkpoint %v / %v", ck.Keys, keys)
	}
	if back, err := FromReleased(sdv); err != nil || back.Queue != nil || back.Buffer != nil || len(back.Model) != len(model) {
		t.Errorf("bare state dict: %v %+v", err, back)
	}

	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"no head", func() error {
			_, err := ToReleased(map[string]*ptfile.Tensor{"conv1.weight": tensor("float32", 1)}, nil, nil, nil, JEMOptions)
			return err
		}, "no 2-D linear.weight"},
		{"queue of other classes", func() error {
			_, err := ToReleased(model, tensor("float32", 100, 8), nil, nil, JEMOptions)
			return err
		}, "want float32 [10, K]"},
		{"already released", func() error {
			_, err := ToReleased(map[string]*ptfile.Tensor{"f.conv1.weight": tensor("float32", 1), "linear.weight": tensor("float32", 2, 2), "linear.bias": tensor("float32", 2)}, nil, nil, nil, JEMOptions)
			return err
		}, `"f.conv1.weight" is already in the released layout`},
		{"other model", func() error {
			_, err := FromReleased(map[string]any{"fc.weight": tensor("float32", 1), "class_output.weight": tensor("float32", 1)})
			return err
		}, "keys outside the released layout (f.*, class_output.*, energy_output.*, queue_logit, queue_ptr): fc.weight"},
		{"no head in released", func() error {
			_, err := FromReleased(map[string]any{"f.conv1.weight": tensor("float32", 1)})
			return err
		}, "no class_output.weight"},
		{"not a dict", func() error { _, err := FromReleased([]any{1}); return err }, "not a dict"},
	} {
		if err := tc.run(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func floats(t *testing.T, x *torch.Tensor) []float32 {
	t.Helper()
	h, err := torch.ToHost(x)
	if err != nil || h.DType != "float32" {
		t.Fatalf("tensor to host: %v (%s)", err, h.DType)
	}
	v := make([]float32, len(h.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(h.Data[4*i:]))
	}
	return v
}

func hostState(t *testing.T, m *nn.WideResNet) map[string]*ptfile.Tensor {
	t.Helper()
	out := map[string]*ptfile.Tensor{}
	for _, p := range m.StateDict() {
		h, err := torch.ToHost(p.T)
		if err != nil {
			t.Fatal(err)
		}
		out[p.Name] = h
	}
	return out
}

// TestExchangeWithPyTorch: a Go WideResNet with a queue and a replay buffer, mapped by
// ToReleased, loads strictly into the released layout's F (testdata/released_model.py) with the
// same logits; and a checkpoint that F saves, mapped by FromReleased, loads into the Go model
// with the same logits.
func TestExchangeWithPyTorch(t *testing.T) {
	if err := exec.Command(refPython, "-c", "import torch").Run(); err != nil {
		t.Skip("Debian's python3-torch is not installed; `make deps` installs it")
	}
	for _, cfg := range []nn.WRNConfig{
		{Depth: 10, Width: 1, Classes: 10, InChannels: 3, Norm: "none"},
		{Depth: 10, Width: 2, Classes: 100, InChannels: 3, Norm: "batch"},
	} {
		const queueSize = 16
		args := []string{fmt.Sprint(cfg.Depth), fmt.Sprint(cfg.Width), cfg.Norm, fmt.Sprint(cfg.InChannels), fmt.Sprint(cfg.Classes), fmt.Sprint(queueSize), "10"}
		t.Run(fmt.Sprintf("wrn-%d-%d-%s", cfg.Depth, cfg.Width, cfg.Norm), func(t *testing.T) {
			store := torch.NewScope()
			defer store.Close()
			gen, err := torch.NewGenerator(3, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer gen.Close()
			m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: gen, Dev: torch.CPU}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := torch.NewScope()
			defer s.Close()
			x := s.Randn(gen, []int64{3, 3, 32, 32}, torch.Float32, torch.CPU)
			if cfg.Norm == "batch" {
				for i := 0; i < 3; i++ {
					m.Forward(s, s.AddScalar(x, float64(i)), true)
				}
			}
			logits := m.Forward(s, x, false)
			queue := s.Randn(gen, []int64{int64(cfg.Classes), queueSize}, torch.Float32, torch.CPU)
			buf := s.Randn(gen, []int64{2, 3, 32, 32}, torch.Float32, torch.CPU)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			hq, _ := torch.ToHost(queue)
			hb, _ := torch.ToHost(buf)
			ptr := &ptfile.Tensor{DType: "int64", Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 0, 0, 0, 0}}
			ck, err := ToReleased(hostState(t, m), hq, ptr, hb, JEMOptions)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			ckPath, ioPath := filepath.Join(dir, "go.pt"), filepath.Join(dir, "go_io.pt")
			if err := ptfile.Write(ckPath, ck); err != nil {
				t.Fatal(err)
			}
			if err := torch.Save(ioPath, map[string]*torch.Tensor{"input": x, "logits": logits, "queue": queue, "buffer": buf,
				"ptr": s.FromInt64([]int64{9}, 1)}); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(refPython, append([]string{"testdata/released_model.py", "CHECK", ckPath, ioPath}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("the released F refuses the Go checkpoint or disagrees: %v\n%s", err, out)
			} else {
				t.Logf("Go → released: %s", strings.TrimSpace(string(out)))
			}

			// The other way: F saves, Go loads.
			pyPath, pyIO := filepath.Join(dir, "py.pt"), filepath.Join(dir, "py_io.pt")
			if out, err := exec.Command(refPython, append([]string{"testdata/released_model.py", "MAKE", pyPath, pyIO}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("making the released checkpoint: %v\n%s", err, out)
			}
			raw, err := ptfile.Read(pyPath)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromReleased(raw)
			if err != nil {
				t.Fatal(err)
			}
			named := map[string]*torch.Tensor{}
			for k, h := range got.Model {
				if named[k], err = s.FromHost(h); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.LoadStateDict(named); err != nil {
				t.Fatal(err)
			}
			io, err := torch.Load(s, pyIO)
			if err != nil {
				t.Fatal(err)
			}
			goLogits := m.Forward(s, io["input"], false)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			a, b := floats(t, goLogits), floats(t, io["logits"])
			if len(a) != len(b) || len(a) != 3*cfg.Classes {
				t.Fatalf("logits: %d values from Go, %d from PyTorch", len(a), len(b))
			}
			var diff float64
			for i := range a {
				diff = max(diff, math.Abs(float64(a[i]-b[i])))
			}
			if diff > 1e-4 {
				t.Errorf("released → Go: logits differ by up to %g", diff)
			}
			t.Logf("released → Go: max |diff| %.3g", diff)
			if got.Queue == nil || fmt.Sprint(got.Queue.Shape) != fmt.Sprintf("[%d %d]", cfg.Classes, queueSize) || got.Ptr == nil || got.Ptr.Data[0] != 7 {
				t.Errorf("queue %v, pointer %v", got.Queue, got.Ptr)
			}
			if got.Buffer == nil || fmt.Sprint(got.Buffer.Shape) != "[4 3 32 32]" {
				t.Errorf("replay buffer %v", got.Buffer)
			}
			if len(got.Dropped) != 4 {
				t.Errorf("dropped %v", got.Dropped)
			}
		})
	}
}
