package torch

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const python = "/usr/bin/python3"

// pyCheck runs testdata/ptcheck.py, skipping when Python with torch is absent.
func pyCheck(t *testing.T, mode, file string) map[string]*goldTensor {
	t.Helper()
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skipf("%s with torch is not available: %v", python, err)
	}
	out, err := exec.Command(python, filepath.Join("testdata", "ptcheck.py"), mode, file).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("ptcheck.py %s: %v\n%s", mode, err, msg)
	}
	var m map[string]*goldTensor
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("ptcheck.py output: %v", err)
	}
	return m
}

func TestSaveReadByPython(t *testing.T) {
	s := NewScope()
	defer s.Close()
	named := map[string]*Tensor{
		"f32":        s.FromFloat32([]float32{1.5, -2, 3.25, 0, 1e-7, -1e30}, 2, 3),
		"f64":        s.FromFloat64([]float64{1.0 / 3, -1e300}),
		"i64":        s.FromInt64([]int64{-5, 1 << 40, 7}),
		"u8":         s.FromUint8([]uint8{0, 255, 7}),
		"bool":       s.FromBool([]bool{true, false, true, true}, 2, 2),
		"scalar":     s.Reshape(s.FromFloat32([]float32{42})),
		"transposed": s.Transpose(s.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3), 0, 1),
		"empty":      s.Zeros([]int64{0, 3}, Float32, CPU),
		"grad.param": s.Detach(s.Ones([]int64{2}, Float32, CPU)),
	}
	_ = named["grad.param"].SetRequiresGrad(true)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "go.pt")
	if err := Save(path, named); err != nil {
		t.Fatal(err)
	}
	got := pyCheck(t, "dump", path)
	if len(got) != len(named) {
		t.Errorf("Python read %d tensors, want %d", len(got), len(named))
	}
	for k, want := range named {
		py, ok := got[k]
		if !ok {
			t.Errorf("Python is missing %q", k)
			continue
		}
		// The comparison runs the other way round: Python's values against ours.
		wantVals, _ := want.Float64s()
		if py.DType != want.DType().String() || fmt.Sprint(py.Shape) != fmt.Sprint(want.Shape()) {
			t.Errorf("%s: Python sees %s %v, want %v %v", k, py.DType, py.Shape, want.DType(), want.Shape())
			continue
		}
		for i, v := range py.floats(t) {
			if v != wantVals[i] {
				t.Errorf("%s[%d]: Python reads %v, want %v", k, i, v, wantVals[i])
				break
			}
		}
	}
	// Our own Load reads it back the same.
	back, err := Load(s, path)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range named {
		a, _ := want.Float64s()
		b, err := back[k].Float64s()
		if err != nil || fmt.Sprint(a) != fmt.Sprint(b) || back[k].DType() != want.DType() {
			t.Errorf("%s: Load gives %v (%v), want %v", k, b, err, a)
		}
	}
}

func TestLoadPythonStateDict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.pt")
	want := pyCheck(t, "save", path)
	s := NewScope()
	defer s.Close()
	got, err := Load(s, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("loaded %d tensors, want %d", len(got), len(want))
	}
	for k, w := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %q", k)
			continue
		}
		expectClose(t, k, got[k], w, 0, 0)
	}
	if _, ok := got["1.num_batches_tracked"]; !ok {
		t.Errorf("num_batches_tracked (an int64 scalar) was not loaded")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	s := NewScope()
	defer s.Close()
	base := LiveTensors()
	_, err := Load(s, filepath.Join(dir, "missing.pt"))
	expectTorchError(t, err, "Load", "missing.pt")
	expectWorks(t)

	corrupt := filepath.Join(dir, "corrupt.pt")
	if err := os.WriteFile(corrupt, []byte("PK\x03\x04 this is not a torch file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(s, corrupt)
	expectTorchError(t, err, "Load", "corrupt.pt")
	expectWorks(t)

	// A valid file cut short must fail cleanly too.
	good := filepath.Join(dir, "good.pt")
	if err := Save(good, map[string]*Tensor{"w": s.Ones([]int64{64, 64}, Float32, CPU)}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	truncated := filepath.Join(dir, "truncated.pt")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(s, truncated)
	expectTorchError(t, err, "Load", "truncated.pt")
	expectWorks(t)
	if LiveTensors() != base+1 {
		t.Errorf("failed loads left %d tensors behind", LiveTensors()-base-1)
	}
	err = Save(filepath.Join(dir, "nil.pt"), map[string]*Tensor{"x": nil})
	expectTorchError(t, err, "Save", `"x"`)
}
