package torch

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Goldens come from testdata/gen_goldens.py (PyTorch on the same libtorch build).

type goldTensor struct {
	DType string        `json:"dtype"`
	Shape []int64       `json:"shape"`
	Data  []json.Number `json:"data"`
}

type goldCase struct {
	Name    string        `json:"name"`
	Op      string        `json:"op"`
	Params  params        `json:"params"`
	Inputs  []*goldTensor `json:"inputs"`
	Grad    []bool        `json:"grad"`
	Outputs []*goldTensor `json:"outputs"`
	Gouts   []*goldTensor `json:"gouts"`
	Grads   []*goldTensor `json:"grads"`
	Atol    float64       `json:"atol"`
	Rtol    float64       `json:"rtol"`
}

type goldTrajectory struct {
	Kind   string                 `json:"kind"`
	Cfg    params                 `json:"cfg"`
	Steps  int                    `json:"steps"`
	W0     *goldTensor            `json:"w0"`
	B0     *goldTensor            `json:"b0"`
	X      *goldTensor            `json:"x"`
	Y      *goldTensor            `json:"y"`
	Losses []float64              `json:"losses"`
	W      *goldTensor            `json:"w"`
	B      *goldTensor            `json:"b"`
	State  map[string]*goldTensor `json:"state"`
}

type goldFile struct {
	Torch     string                 `json:"torch"`
	Threads   int                    `json:"threads"`
	Cases     []goldCase             `json:"cases"`
	Gradients map[string]*goldTensor `json:"gradients"`
	Optim     []goldTrajectory       `json:"optim"`
}

func loadGoldens(t *testing.T) *goldFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "goldens.json"))
	if err != nil {
		t.Fatalf("goldens: %v (regenerate with /usr/bin/python3 testdata/gen_goldens.py)", err)
	}
	var g goldFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("goldens.json: %v", err)
	}
	return &g
}

// params are an op's keyword arguments as JSON decoded them.
type params map[string]any

func (p params) f(k string) float64 {
	switch v := p[k].(type) {
	case float64:
		return v
	case string:
		if v == "inf" {
			return math.Inf(1)
		}
		if v == "-inf" {
			return math.Inf(-1)
		}
	case bool:
		if v {
			return 1
		}
		return 0
	}
	panic(fmt.Sprintf("param %q: %v is not a number", k, p[k]))
}

func (p params) i(k string) int    { return int(p.f(k)) }
func (p params) b(k string) bool   { v, _ := p[k].(bool); return v }
func (p params) s(k string) string { v, _ := p[k].(string); return v }

// ints is a list parameter; nil stays nil (the ops' "all dims").
func (p params) ints(k string) []int {
	l, ok := p[k].([]any)
	if !ok {
		return nil
	}
	out := make([]int, len(l))
	for i, v := range l {
		out[i] = int(v.(float64))
	}
	return out
}

func (p params) int64s(k string) []int64 {
	var out []int64
	for _, v := range p.ints(k) {
		out = append(out, int64(v))
	}
	return out
}

func (g *goldTensor) floats(t testing.TB) []float64 {
	out := make([]float64, len(g.Data))
	bits := 64
	if g.DType == "float32" {
		bits = 32
	}
	for i, n := range g.Data {
		v, err := strconv.ParseFloat(n.String(), bits)
		if err != nil {
			t.Fatalf("golden number %q: %v", n, err)
		}
		out[i] = v
	}
	return out
}

// tensor builds g in s; requiresGrad marks it as a leaf for autograd.
func (g *goldTensor) tensor(t testing.TB, s *Scope, requiresGrad bool) *Tensor {
	t.Helper()
	vals := g.floats(t)
	var x *Tensor
	switch g.DType {
	case "float32":
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		x = s.FromFloat32(f)
	case "float64":
		x = s.FromFloat64(vals)
	case "int64":
		v := make([]int64, len(vals))
		for i := range vals {
			v[i] = int64(vals[i])
		}
		x = s.FromInt64(v)
	case "uint8":
		v := make([]uint8, len(vals))
		for i := range vals {
			v[i] = uint8(vals[i])
		}
		x = s.FromUint8(v)
	case "bool":
		v := make([]bool, len(vals))
		for i := range vals {
			v[i] = vals[i] != 0
		}
		x = s.FromBool(v)
	default:
		t.Fatalf("golden dtype %q", g.DType)
	}
	x = s.Reshape(x, g.Shape...)
	x = s.Detach(x) // a fresh leaf whatever Reshape did
	if requiresGrad {
		if err := x.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	return x
}

// expectClose compares got with want: same dtype and shape, |got-want| <= atol + rtol*|want|
// element-wise (exact for integer and bool tensors).
func expectClose(t testing.TB, what string, got *Tensor, want *goldTensor, atol, rtol float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: nil tensor", what)
		return
	}
	if got.DType().String() != want.DType {
		t.Errorf("%s: dtype %v, want %s", what, got.DType(), want.DType)
		return
	}
	if fmt.Sprint(got.Shape()) != fmt.Sprint(want.Shape) {
		t.Errorf("%s: shape %v, want %v", what, got.Shape(), want.Shape)
		return
	}
	g, err := got.Float64s()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	w := want.floats(t)
	if want.DType != "float32" && want.DType != "float64" {
		atol, rtol = 0, 0
	}
	worst, at := 0.0, -1
	for i := range w {
		d := math.Abs(g[i] - w[i])
		if math.IsInf(w[i], 0) && g[i] == w[i] {
			d = 0
		}
		if excess := d - (atol + rtol*math.Abs(w[i])); excess > worst || math.IsNaN(d) {
			worst, at = excess, i
		}
	}
	if at >= 0 {
		t.Errorf("%s: element %d is %v, want %v (atol %g, rtol %g)", what, at, g[at], w[at], atol, rtol)
	}
}
