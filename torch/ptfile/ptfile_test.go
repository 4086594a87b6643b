package ptfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func f32Tensor(shape []int64, vals ...float32) *Tensor {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return &Tensor{DType: "float32", Shape: shape, Data: b}
}

func i64Tensor(shape []int64, vals ...int64) *Tensor {
	b := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return &Tensor{DType: "int64", Shape: shape, Data: b}
}

// sample is a checkpoint-shaped value exercising every kind Write accepts.
func sample() any {
	model := NewOrderedDict()
	model.Set("conv.weight", f32Tensor([]int64{2, 1, 2, 2}, 1, -2, 3.5, 1e-8, float32(math.Pi), -0, 7, 8))
	model.Set("bn.num_batches_tracked", i64Tensor(nil, 12))
	model.Set("fc.bias", f32Tensor([]int64{3}, 0.1, 0.2, 0.3))
	model.Set("a_late_key", f32Tensor([]int64{1, 1}, 42))
	return map[string]any{
		"model":   model,
		"epoch":   7,
		"step":    int64(1) << 40,
		"neg":     -123456789012,
		"small":   int64(-3),
		"lr":      0.1,
		"inf":     math.Inf(-1),
		"name":    "wrn-28-10 ünïcode",
		"done":    true,
		"nothing": nil,
		"list":    []any{1, 2.5, "x", false, nil, []any{}},
		"nested":  map[string]any{"queue_ptr": 3, "empty": map[string]any{}, "od": NewOrderedDict()},
		"bool":    &Tensor{DType: "bool", Shape: []int64{2, 2}, Data: []byte{1, 0, 0, 1}},
		"int64":   i64Tensor([]int64{3}, math.MinInt64, 0, math.MaxInt64),
		"uint8":   &Tensor{DType: "uint8", Shape: []int64{3}, Data: []byte{0, 128, 255}},
		"float64": &Tensor{DType: "float64", Shape: []int64{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.1)), math.Float64bits(-1e300))},
		"scalar":  f32Tensor(nil, 2.5),
		"empty":   &Tensor{DType: "float32", Shape: []int64{0, 3}, Data: []byte{}},
		"ones":    f32Tensor([]int64{2, 1, 0}),
		"optim": map[string]any{
			"state":        map[int]any{0: map[string]any{"step": f32Tensor(nil, 1)}, 10: map[string]any{"step": f32Tensor(nil, 2)}},
			"param_groups": []any{map[string]any{"lr": 1e-3, "betas": []any{0.9, 0.999}, "params": []int{0, 10}}},
		},
	}
}

// normalise converts a value given to Write into the form Read returns.
func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		d := NewOrderedDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortStrings(keys)
		for _, k := range keys {
			d.Set(k, normalise(x[k]))
		}
		return d
	case map[int]any:
		d := NewOrderedDict()
		for _, k := range []int{0, 10} {
			if v, ok := x[k]; ok {
				d.Set(map[int]string{0: "0", 10: "10"}[k], normalise(v))
			}
		}
		return d
	case *OrderedDict:
		d := NewOrderedDict()
		for _, k := range x.Keys {
			d.Set(k, normalise(x.Values[k]))
		}
		return d
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalise(x[i])
		}
		return out
	case []int:
		out := make([]any, len(x))
		for i := range x {
			out[i] = int64(x[i])
		}
		return out
	case int:
		return int64(x)
	case *Tensor:
		c := *x
		if c.Shape == nil {
			c.Shape = []int64{}
		}
		return &c
	}
	return v
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt.pt")
	want := sample()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, normalise(want)) {
		compareListings(t, walkGo(t, got, "", nil), walkGo(t, normalise(want), "", nil), true)
		t.Fatal("round trip differs")
	}
	d := got.(*OrderedDict)
	m, _ := d.Get("model")
	if keys := m.(*OrderedDict).Keys; strings.Join(keys, ",") != "conv.weight,bn.num_batches_tracked,fc.bias,a_late_key" {
		t.Errorf("OrderedDict order lost: %v", keys)
	}
}

func TestEncodeDecodeInMemory(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, []any{f32Tensor([]int64{2}, 1, 2), "x"}); err != nil {
		t.Fatal(err)
	}
	v, err := Decode(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	l := v.([]any)
	if tt := l[0].(*Tensor); !reflect.DeepEqual(tt, f32Tensor([]int64{2}, 1, 2)) || l[1] != "x" {
		t.Fatalf("got %#v", v)
	}
}

// TestLayout checks the archive the way torch's reader relies on it: stored records under one
// folder named after the file, storages starting on 64-byte boundaries, a version record.
func TestLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "my.ckpt.pt")
	if err := Write(path, sample()); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, path)
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	storages := 0
	for _, f := range zr.File {
		names[f.Name] = true
		if !strings.HasPrefix(f.Name, "my.ckpt/") {
			t.Errorf("record %s outside my.ckpt/", f.Name)
		}
		if f.Method != zip.Store {
			t.Errorf("record %s compressed", f.Name)
		}
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if off%64 != 0 {
			t.Errorf("record %s data at offset %d, not 64-aligned", f.Name, off)
		}
		if strings.Contains(f.Name, "/data/") {
			storages++
		}
	}
	for _, n := range []string{"my.ckpt/data.pkl", "my.ckpt/version", "my.ckpt/data/0"} {
		if !names[n] {
			t.Errorf("missing record %s", n)
		}
	}
	if storages != 13 {
		t.Errorf("%d storages, want 13 (one per tensor)", storages)
	}
}

func TestSharedTensorSharesStorage(t *testing.T) {
	x := f32Tensor([]int64{2}, 1, 2)
	var buf bytes.Buffer
	if err := Encode(&buf, []any{x, x}); err != nil {
		t.Fatal(err)
	}
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "data/1") {
			t.Error("one tensor saved twice")
		}
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.pt")
	if err := Write(path, map[string]any{"v": 1}); err != nil {
		t.Fatal(err)
	}
	// A failing write must leave the old file and no temp files behind.
	err := Write(path, map[string]any{"bad": &Tensor{DType: "float32", Shape: []int64{3}, Data: []byte{1}}})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "needs 12 bytes") {
		t.Fatalf("err = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %v", ents)
	}
	v, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.(*OrderedDict).Get("v"); got != int64(1) {
		t.Fatalf("old content lost: %v", v)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestWriteRejects(t *testing.T) {
	for name, v := range map[string]any{
		"type":      struct{}{},
		"dtype":     &Tensor{DType: "complex64", Data: []byte{}},
		"negative":  &Tensor{DType: "uint8", Shape: []int64{-1}},
		"keys":      &OrderedDict{Keys: []string{"a"}, Values: map[string]any{}},
		"short":     f32Tensor([]int64{2, 2}, 1, 2, 3),
		"nestedbad": map[string]any{"x": []any{map[string]any{"y": uint16(1)}}},
	} {
		var buf bytes.Buffer
		if err := Encode(&buf, v); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	self := []any{nil}
	self[0] = self
	var buf bytes.Buffer
	if err := Encode(&buf, self); err == nil {
		t.Error("self-containing list: no error")
	}
}

func TestIntEncoding(t *testing.T) {
	for _, v := range []int64{0, 1, 255, 256, 65535, 65536, -1, -128, -129, math.MaxInt32, math.MinInt32,
		math.MaxInt32 + 1, math.MinInt32 - 1, 1 << 40, -(1 << 40), math.MaxInt64, math.MinInt64, 0x80, 0x8000, 0x7fffffffff} {
		var buf bytes.Buffer
		if err := Encode(&buf, v); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil || got != v {
			t.Errorf("%d came back as %v (%v)", v, got, err)
		}
	}
}

// TestPythonFixtures reads files torch.save wrote (made by testdata/fixtures.py and checked in)
// and compares every value with the listing Python printed next to them.
func TestPythonFixtures(t *testing.T) {
	for _, name := range []string{"state_dict", "adam", "misc"} {
		t.Run(name, func(t *testing.T) {
			checkFixture(t, filepath.Join("testdata", name+".pt"), filepath.Join("testdata", name+".json"))
		})
	}
}

func checkFixture(t *testing.T, ptPath, jsonPath string) {
	t.Helper()
	v, err := Read(ptPath)
	if err != nil {
		t.Fatal(err)
	}
	compareListings(t, walkGo(t, v, "", nil), loadListing(t, readFile(t, jsonPath)), false)
}

func TestStateDictDetails(t *testing.T) {
	v, err := Read(filepath.Join("testdata", "state_dict.pt"))
	if err != nil {
		t.Fatal(err)
	}
	sd := v.(*OrderedDict)
	want := "0.weight,0.bias,1.weight,1.bias,1.running_mean,1.running_var,1.num_batches_tracked,4.weight,4.bias"
	if got := strings.Join(sd.Keys, ","); got != want {
		t.Fatalf("keys %s", got)
	}
	nbt, _ := sd.Get("1.num_batches_tracked")
	if tt := nbt.(*Tensor); tt.DType != "int64" || len(tt.Shape) != 0 || binary.LittleEndian.Uint64(tt.Data) != 1 {
		t.Fatalf("num_batches_tracked = %+v", tt)
	}
	misc, err := Read(filepath.Join("testdata", "misc.pt"))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := misc.(*OrderedDict).Get("transposed")
	if got := tr.(*Tensor); !reflect.DeepEqual(got, f32Tensor([]int64{4, 3}, 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11)) {
		t.Fatalf("transposed = %+v", got)
	}
}

func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("python3 has no torch")
	}
	return py
}

// TestPythonLive regenerates the fixtures with the installed torch and reads them, so a torch
// upgrade that changes the format shows up here.
func TestPythonLive(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	if out, err := exec.Command(py, filepath.Join("testdata", "fixtures.py"), "make", dir).CombinedOutput(); err != nil {
		t.Fatalf("fixtures.py: %v\n%s", err, out)
	}
	for _, name := range []string{"state_dict", "adam", "misc"} {
		t.Run(name, func(t *testing.T) {
			checkFixture(t, filepath.Join(dir, name+".pt"), filepath.Join(dir, name+".json"))
		})
	}
}

// TestGoToPython has torch.load read a Go-written file and list it; the listing must match the
// value written, down to dict types, dtypes, requires_grad and bit-exact values.
func TestGoToPython(t *testing.T) {
	py := python(t)
	path := filepath.Join(t.TempDir(), "go.pt")
	v := sample()
	if err := Write(path, v); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, filepath.Join("testdata", "fixtures.py"), "dump", path).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("torch.load: %v\n%s", err, msg)
	}
	compareListings(t, loadListing(t, out), walkGo(t, v, "", nil), true)
}
