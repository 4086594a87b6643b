package npy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	f32 := []float32{1.5, -2, float32(math.Inf(1)), 0, 3e-40, 7}
	f64 := []float64{0.1, -1e300, math.Inf(-1), -0.0}
	i64 := []int64{math.MinInt64, -1, 0, math.MaxInt64}
	u8 := []uint8{0, 1, 128, 255}
	bs := []bool{true, false, false, true}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteFloat32(p("f32.npy"), f32, 2, 3))
	must(WriteFloat64(p("f64.npy"), f64))
	must(WriteInt64(p("i64.npy"), i64, 4, 1))
	must(WriteUint8(p("u8.npy"), u8, 2, 1, 2))
	must(WriteBool(p("b.npy"), bs, 2, 2))
	must(WriteFloat32(p("empty.npy"), nil, 0, 10))
	for _, c := range []struct {
		file, dtype string
		shape       []int
		data        any
	}{
		{"f32.npy", "float32", []int{2, 3}, f32},
		{"f64.npy", "float64", []int{4}, f64},
		{"i64.npy", "int64", []int{4, 1}, i64},
		{"u8.npy", "uint8", []int{2, 1, 2}, u8},
		{"b.npy", "bool", []int{2, 2}, bs},
		{"empty.npy", "float32", []int{0, 10}, []float32{}},
	} {
		a, err := Read(p(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if a.DType != c.dtype || !reflect.DeepEqual(a.Shape, c.shape) || !reflect.DeepEqual(a.Data, c.data) {
			t.Errorf("%s: got %s%v %v, want %s%v %v", c.file, a.DType, a.Shape, a.Data, c.dtype, c.shape, c.data)
		}
		raw, _ := os.ReadFile(p(c.file))
		if _, n, err := ParseHeader(bytes.NewReader(raw)); err != nil || n%64 != 0 {
			t.Errorf("%s: header length %d (%v), want a multiple of 64", c.file, n, err)
		}
	}
}

func TestHelpers(t *testing.T) {
	a := &Array{DType: "uint8", Shape: []int{3}, Data: []uint8{1, 2, 255}}
	if v, err := a.Float32s(); err != nil || !reflect.DeepEqual(v, []float32{1, 2, 255}) {
		t.Errorf("Float32s: %v %v", v, err)
	}
	if v, err := a.Int64s(); err != nil || !reflect.DeepEqual(v, []int64{1, 2, 255}) {
		t.Errorf("Int64s: %v %v", v, err)
	}
	f := &Array{DType: "float32", Data: []float32{0.5}}
	if v, err := f.Float64s(); err != nil || v[0] != 0.5 {
		t.Errorf("Float64s: %v %v", v, err)
	}
	if _, err := f.Int64s(); err == nil {
		t.Error("float32 Int64s: no error")
	}
	if _, err := (&Array{DType: "float64", Data: []float64{1}}).Float32s(); err == nil {
		t.Error("float64 Float32s: no error (would round)")
	}
	if _, err := (&Array{DType: "int64", Data: []int64{1<<53 + 1}}).Float64s(); err == nil {
		t.Error("2^53+1 Float64s: no error (would round)")
	}
	if v, err := (&Array{DType: "bool", Data: []bool{true, false}}).Int64s(); err != nil || !reflect.DeepEqual(v, []int64{1, 0}) {
		t.Errorf("bool Int64s: %v %v", v, err)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npy")
	if err := WriteFloat32(path, []float32{1, 2, 3}, 2, 2); err == nil || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "holds 4 elements, data has 3") {
		t.Errorf("shape mismatch: %v", err)
	}
	if err := WriteInt64(path, []int64{}, -1, 0); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative shape: %v", err)
	}
	if err := WriteUint8(filepath.Join(dir, "no", "such", "dir.npy"), []uint8{1}); err == nil || !strings.Contains(err.Error(), "dir.npy") {
		t.Errorf("missing dir: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %v", ents)
	}
	// A rewrite replaces the file whole.
	if err := WriteFloat32(path, []float32{1, 2, 3, 4}, 2, 2); err != nil {
		t.Fatal(err)
	}
	if err := WriteFloat32(path, []float32{9}); err != nil {
		t.Fatal(err)
	}
	if a, err := Read(path); err != nil || !reflect.DeepEqual(a.Data, []float32{9}) {
		t.Errorf("rewrite: %v %v", a, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %v", ents)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.npy")
	if err := WriteFloat64(good, []float64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	hdr := func(dict string) []byte {
		b := append([]byte("\x93NUMPY\x01\x00"), byte(len(dict)), 0)
		return append(b, dict...)
	}
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":     {nil, "too short"},
		"text":      {[]byte("col1,col2\n1,2\n"), "bad magic"},
		"truncated": {raw[:len(raw)-1], "truncated: shape [3] of float64 needs 24 data bytes, file has 23"},
		"trailing":  {append(append([]byte{}, raw...), 0), "1 trailing bytes"},
		"cut hdr":   {raw[:40], "truncated header"},
		"version":   {append([]byte("\x93NUMPY\x04\x00"), raw[8:]...), "unsupported .npy format version 4.0"},
		"fortran":   {hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (0,), }\n"), "fortran_order True is not supported"},
		"dtype":     {hdr("{'descr': '<c8', 'fortran_order': False, 'shape': (0,), }\n"), `unsupported dtype "<c8"`},
		"missing":   {hdr("{'descr': '<f4', 'shape': (0,), }\n"), `missing key "fortran_order"`},
		"extra":     {hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), 'x': 1}\n"), `unexpected key "x"`},
		"shape":     {hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n"), "shape: expected a non-negative integer"},
		"huge":      {hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n"), "overflows"},
		"huge2":     {hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }\n"), "truncated: shape"},
	}
	for name, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".npy")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v should name %s and say %q", name, err, path, c.want)
		}
	}
	if _, err := Read(filepath.Join(dir, "absent.npy")); err == nil || !strings.Contains(err.Error(), "absent.npy") {
		t.Errorf("missing: %v", err)
	}
}

type described struct {
	DType     string `json:"dtype"`
	Shape     []int  `json:"shape"`
	Values    []any  `json:"values"`
	SameBytes *bool  `json:"same_bytes"`
}

// text renders values (Go slices or JSON-decoded ones) as canonical text for exact comparison.
func text(t *testing.T, v any) []string {
	t.Helper()
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			switch e := e.(type) {
			case json.Number:
				if strings.ContainsAny(string(e), ".eE") {
					f, _ := strconv.ParseFloat(string(e), 64)
					out = append(out, strconv.FormatFloat(f, 'g', -1, 64))
				} else {
					out = append(out, string(e))
				}
			case string: // non-finite floats
				f, err := strconv.ParseFloat(e, 64)
				if err != nil {
					t.Fatalf("value %q", e)
				}
				out = append(out, strconv.FormatFloat(f, 'g', -1, 64))
			default:
				out = append(out, fmt.Sprint(e))
			}
		}
	case []float32:
		for _, e := range x {
			out = append(out, strconv.FormatFloat(float64(e), 'g', -1, 64))
		}
	case []float64:
		for _, e := range x {
			out = append(out, strconv.FormatFloat(e, 'g', -1, 64))
		}
	default:
		// Integers and bools print the same in Go and JSON.
		rv := reflect.ValueOf(v)
		for i := range rv.Len() {
			out = append(out, fmt.Sprint(rv.Index(i).Interface()))
		}
	}
	return out
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatal(err)
	}
}

// checkFixtures reads numpy-written files in dir and compares them with expected.json.
func checkFixtures(t *testing.T, dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]described
	decodeJSON(t, raw, &want)
	if len(want) < 10 {
		t.Fatalf("only %d fixtures", len(want))
	}
	for name, w := range want {
		a, err := Read(filepath.Join(dir, name+".npy"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if a.DType != w.DType || fmt.Sprint(a.Shape) != fmt.Sprint(w.Shape) {
			t.Errorf("%s: %s%v, want %s%v", name, a.DType, a.Shape, w.DType, w.Shape)
		}
		if g, e := text(t, a.Data), text(t, w.Values); !reflect.DeepEqual(g, e) {
			t.Errorf("%s: values %v, want %v", name, g, e)
		}
	}
	for name, msg := range map[string]string{
		"bad_fortran":    "fortran_order True",
		"bad_int32":      `unsupported dtype "<i4"`,
		"bad_structured": "structured dtypes are not supported",
	} {
		if _, err := Read(filepath.Join(dir, name+".npy")); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want %q", name, err, msg)
		}
	}
}

func TestNumpyFixtures(t *testing.T) { checkFixtures(t, "testdata") }

func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		t.Skip("python3 has no numpy")
	}
	return py
}

func TestNumpyLive(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	if out, err := exec.Command(py, filepath.Join("testdata", "fixtures.py"), "make", dir).CombinedOutput(); err != nil {
		t.Fatalf("fixtures.py: %v\n%s", err, out)
	}
	checkFixtures(t, dir)
}

// TestGoToNumpy: numpy.load must read what Go wrote, value for value, and numpy.save of the
// result must reproduce the file byte for byte.
func TestGoToNumpy(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	type file struct {
		name, dtype string
		shape       []int
		data        any
		write       func(string) error
	}
	f32 := []float32{1.5, -2, float32(math.Inf(1)), 0, 3e-40, 7}
	f64 := []float64{0.1, -1e300, math.NaN(), -0.0}
	i64 := []int64{math.MinInt64, -1, 0, math.MaxInt64}
	u8 := []uint8{0, 1, 128, 255}
	bs := []bool{true, false, false, true}
	long := make([]float32, 12345)
	for i := range long {
		long[i] = float32(i) / 7
	}
	files := []file{
		{"f32.npy", "float32", []int{2, 3}, f32, func(p string) error { return WriteFloat32(p, f32, 2, 3) }},
		{"f64.npy", "float64", []int{4}, f64, func(p string) error { return WriteFloat64(p, f64) }},
		{"i64.npy", "int64", []int{1, 4, 1}, i64, func(p string) error { return WriteInt64(p, i64, 1, 4, 1) }},
		{"u8.npy", "uint8", []int{4}, u8, func(p string) error { return WriteUint8(p, u8) }},
		{"b.npy", "bool", []int{2, 2}, bs, func(p string) error { return WriteBool(p, bs, 2, 2) }},
		{"empty.npy", "float32", []int{0, 3}, []float32{}, func(p string) error { return WriteFloat32(p, nil, 0, 3) }},
		{"long.npy", "float32", []int{12345, 1}, long, func(p string) error { return WriteFloat32(p, long, 12345, 1) }},
	}
	// Many dimensions move the header across 64-byte boundaries, including landing exactly on
	// one, where numpy pads a whole extra block.
	for nd := 3; nd <= 20; nd++ {
		for digits := range 4 {
			shape := make([]int, nd)
			for i := range shape {
				shape[i] = 1
			}
			shape[0] = 1 + nd%3*10000
			shape[1] = int(math.Pow10(digits))
			shape[2] = 0
			files = append(files, file{fmt.Sprintf("nd%d_%d.npy", nd, digits), "uint8", shape, []uint8{},
				func(p string) error { return WriteUint8(p, nil, shape...) }})
		}
	}
	args := []string{filepath.Join("testdata", "fixtures.py"), "check"}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := f.write(p); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	out, err := exec.Command(py, args...).Output()
	if err != nil {
		t.Fatalf("numpy.load: %v", err)
	}
	var got []described
	decodeJSON(t, out, &got)
	if len(got) != len(files) {
		t.Fatalf("%d results for %d files", len(got), len(files))
	}
	for i, f := range files {
		g := got[i]
		if g.DType != f.dtype || fmt.Sprint(g.Shape) != fmt.Sprint(f.shape) {
			t.Errorf("%s: numpy sees %s%v, want %s%v", f.name, g.DType, g.Shape, f.dtype, f.shape)
		}
		if a, b := text(t, g.Values), text(t, f.data); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: numpy values %v, want %v", f.name, a, b)
		}
		if g.SameBytes == nil || !*g.SameBytes {
			t.Errorf("%s: numpy.save writes different bytes", f.name)
		}
	}
}

// TestAcceptedHeaders covers header forms numpy accepts beyond what it writes today.
func TestAcceptedHeaders(t *testing.T) {
	v1 := func(dict string, data ...byte) []byte {
		return append(append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(dict)), 0}, dict...), data...)
	}
	v2 := func(dict string, data ...byte) []byte {
		return append(append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, byte(len(dict)), 0, 0, 0}, dict...), data...)
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"python 2 longs": {v1("{'descr': '<i8', 'fortran_order': False, 'shape': (1L, 1L), }\n", 7, 0, 0, 0, 0, 0, 0, 0), "int64 [1 1] [7]"},
		"double quotes":  {v1(`{"descr": ">f8", "fortran_order": False, "shape": (1,)}`+"\n", 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), "float64 [1] [1.5]"},
		"0-d":            {v1("{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", 0, 0, 0x80, 0x3f), "float32 [] [1]"},
		"version 2.0":    {v2("{'descr': '|b1', 'fortran_order': False, 'shape': (1,)}", 1), "bool [1] [true]"},
	} {
		a, err := decode(bytes.NewReader(c.data), int64(len(c.data)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := fmt.Sprint(a.DType, " ", a.Shape, " ", a.Data); got != c.want {
			t.Errorf("%s: got %s, want %s", name, got, c.want)
		}
	}
}
