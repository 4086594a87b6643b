package model

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
	"github.com/hdge-torch/hdge-torch/torch/ptfile"
)

// TestCheckpointFieldOfWrongType: a damaged or foreign checkpoint whose fields have other types
// is refused with the field named, never read as zeros.
func TestCheckpointFieldOfWrongType(t *testing.T) {
	good := func() *ptfile.OrderedDict {
		sd := ptfile.NewOrderedDict()
		sd.Set("conv1.weight", &ptfile.Tensor{DType: "float32", Shape: []int64{1}, Data: make([]byte, 4)})
		opt := ptfile.NewOrderedDict()
		opt.Set("name", "adam")
		opt.Set("step", int64(3))
		opt.Set("lr", 0.001)
		opt.Set("state", ptfile.NewOrderedDict())
		root := ptfile.NewOrderedDict()
		root.Set("format", checkpointFormat)
		root.Set("model_state_dict", sd)
		root.Set("optimizer", opt)
		root.Set("objective", ptfile.NewOrderedDict())
		root.Set("rng", ptfile.NewOrderedDict())
		root.Set("step", int64(3))
		root.Set("epoch", int64(0))
		root.Set("batch", int64(3))
		root.Set("best_val_acc", 0.5)
		root.Set("config", `{"model": "wrn-10-1"}`)
		return root
	}
	dir := t.TempDir()
	read := func(root *ptfile.OrderedDict) error {
		p := filepath.Join(dir, "c.pt")
		if err := ptfile.Write(p, root); err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		defer s.Close()
		_, err := ReadCheckpoint(s, p)
		return err
	}
	if err := read(good()); err != nil {
		t.Fatalf("a good checkpoint: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ptfile.OrderedDict)
		want string
	}{
		{"step as text", func(r *ptfile.OrderedDict) { r.Set("step", "3") }, "step is string, want int64"},
		{"no epoch", func(r *ptfile.OrderedDict) { r.Set("epoch", nil) }, "epoch is <nil>, want int64"},
		{"lr as int", func(r *ptfile.OrderedDict) { o, _ := r.Get("optimizer"); o.(*ptfile.OrderedDict).Set("lr", int64(1)) }, "optimizer.lr is int64, want float64"},
		{"best as text", func(r *ptfile.OrderedDict) { r.Set("best_val_acc", "high") }, "best_val_acc is string"},
		{"rng of floats", func(r *ptfile.OrderedDict) {
			g := ptfile.NewOrderedDict()
			g.Set("dropout", &ptfile.Tensor{DType: "float32", Shape: []int64{1}, Data: make([]byte, 4)})
			r.Set("rng", g)
		}, "rng.dropout is not a uint8 tensor"},
		{"config not JSON", func(r *ptfile.OrderedDict) { r.Set("config", "{") }, "config is not JSON"},
	} {
		root := good()
		tc.mod(root)
		if err := read(root); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
