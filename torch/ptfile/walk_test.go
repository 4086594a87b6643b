package ptfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"testing"
)

// entry is one line of the listing testdata/fixtures.py prints: every dict, list and leaf of a
// saved object in walk order, so ordering, types and exact values are all compared.
type entry struct {
	Path         string   `json:"path"`
	Type         string   `json:"type"`
	Keys         []string `json:"keys,omitempty"`
	Ordered      *bool    `json:"ordered,omitempty"`
	Len          int      `json:"len,omitempty"`
	DType        string   `json:"dtype,omitempty"`
	Shape        []int64  `json:"shape,omitempty"`
	RequiresGrad *bool    `json:"requires_grad,omitempty"`
	Contiguous   *bool    `json:"contiguous,omitempty"`
	Values       []any    `json:"values,omitempty"`
	Value        any      `json:"value,omitempty"`
	canonValues  []string // tensor values as canonical text
	canonValue   string   // scalar value as canonical text
}

func canonFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// canon turns JSON-decoded numbers (json.Number) and Go values into comparable text.
func canon(dtype string, v any) string {
	switch x := v.(type) {
	case json.Number:
		if isFloatType(dtype) {
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return "bad:" + string(x)
			}
			return canonFloat(f)
		}
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case string:
		if isFloatType(dtype) {
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return "bad:" + x
			}
			return canonFloat(f)
		}
		return strconv.Quote(x)
	case nil:
		return "None"
	case float64:
		return canonFloat(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprintf("?%T", v)
}

func loadListing(t *testing.T, data []byte) []entry {
	t.Helper()
	var es []entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&es); err != nil {
		t.Fatalf("listing: %v", err)
	}
	for i := range es {
		e := &es[i]
		for _, v := range e.Values {
			e.canonValues = append(e.canonValues, canon(e.DType, v))
		}
		if e.Type == "int" || e.Type == "float" || e.Type == "str" || e.Type == "bool" {
			e.canonValue = canon(e.Type, e.Value)
		}
	}
	return es
}

func boolp(b bool) *bool { return &b }

// walkGo lists a Go value the way fixtures.py lists a Python one. Values read back by Decode and
// values handed to Write are both accepted.
func walkGo(t *testing.T, v any, path string, out []entry) []entry {
	t.Helper()
	switch x := v.(type) {
	case *OrderedDict:
		out = append(out, entry{Path: path, Type: "dict", Keys: x.Keys, Ordered: boolp(true)})
		for _, k := range x.Keys {
			out = walkGo(t, x.Values[k], path+"/"+k, out)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out = append(out, entry{Path: path, Type: "dict", Keys: keys, Ordered: boolp(false)})
		for _, k := range keys {
			out = walkGo(t, x[k], path+"/"+k, out)
		}
	case map[int]any:
		keys := make([]int, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		var sk []string
		for _, k := range keys {
			sk = append(sk, strconv.Itoa(k))
		}
		out = append(out, entry{Path: path, Type: "dict", Keys: sk, Ordered: boolp(false)})
		for _, k := range keys {
			out = walkGo(t, x[k], path+"/"+strconv.Itoa(k), out)
		}
	case []any:
		out = append(out, entry{Path: path, Type: "list", Len: len(x)})
		for i, it := range x {
			out = walkGo(t, it, path+"/"+strconv.Itoa(i), out)
		}
	case []int:
		l := make([]any, len(x))
		for i := range x {
			l[i] = x[i]
		}
		out = walkGo(t, l, path, out)
	case *Tensor:
		out = append(out, entry{Path: path, Type: "tensor", DType: x.DType, Shape: x.Shape,
			RequiresGrad: boolp(false), Contiguous: boolp(true), canonValues: tensorText(t, x)})
	case bool:
		out = append(out, entry{Path: path, Type: "bool", canonValue: canon("", x)})
	case int:
		out = append(out, entry{Path: path, Type: "int", canonValue: canon("", int64(x))})
	case int64:
		out = append(out, entry{Path: path, Type: "int", canonValue: canon("", x)})
	case float64:
		out = append(out, entry{Path: path, Type: "float", canonValue: canon("", x)})
	case string:
		out = append(out, entry{Path: path, Type: "str", canonValue: canon("", x)})
	case nil:
		out = append(out, entry{Path: path, Type: "none"})
	default:
		t.Fatalf("%s: unexpected %T", path, v)
	}
	return out
}

func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 31:
		if frac == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// tensorText decodes a tensor's bytes independently of the package, as canonical text.
func tensorText(t *testing.T, x *Tensor) []string {
	t.Helper()
	info, ok := dtypeByName(x.DType)
	if !ok {
		t.Fatalf("dtype %q", x.DType)
	}
	n := len(x.Data) / info.size
	if int64(n) != x.Numel() || len(x.Data)%info.size != 0 {
		t.Fatalf("tensor %v %s has %d bytes", x.Shape, x.DType, len(x.Data))
	}
	le := binary.LittleEndian
	out := make([]string, n)
	for i := range n {
		b := x.Data[i*info.size:]
		switch x.DType {
		case "float32":
			out[i] = canonFloat(float64(math.Float32frombits(le.Uint32(b))))
		case "float64":
			out[i] = canonFloat(math.Float64frombits(le.Uint64(b)))
		case "float16":
			out[i] = canonFloat(halfToFloat(le.Uint16(b)))
		case "bfloat16":
			out[i] = canonFloat(float64(math.Float32frombits(uint32(le.Uint16(b)) << 16)))
		case "int64":
			out[i] = strconv.FormatInt(int64(le.Uint64(b)), 10)
		case "int32":
			out[i] = strconv.FormatInt(int64(int32(le.Uint32(b))), 10)
		case "int16":
			out[i] = strconv.FormatInt(int64(int16(le.Uint16(b))), 10)
		case "int8":
			out[i] = strconv.FormatInt(int64(int8(b[0])), 10)
		case "uint8":
			out[i] = strconv.FormatInt(int64(b[0]), 10)
		case "bool":
			out[i] = strconv.FormatBool(b[0] != 0)
		}
	}
	return out
}

// compareListings checks got against want. With strict, Python-side facts (OrderedDict or dict,
// requires_grad, contiguous) are compared too: a Go-written file must load as torch.save's would.
func compareListings(t *testing.T, got, want []entry, strict bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("listing has %d entries, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		where := fmt.Sprintf("entry %d (%q)", i, w.Path)
		if g.Path != w.Path || g.Type != w.Type {
			t.Fatalf("%s: got %q %s, want %q %s", where, g.Path, g.Type, w.Path, w.Type)
		}
		if fmt.Sprint(g.Keys) != fmt.Sprint(w.Keys) || g.Len != w.Len {
			t.Errorf("%s: keys/len %v %d, want %v %d", where, g.Keys, g.Len, w.Keys, w.Len)
		}
		if strict && fmt.Sprint(deref(g.Ordered)) != fmt.Sprint(deref(w.Ordered)) {
			t.Errorf("%s: ordered %v, want %v", where, deref(g.Ordered), deref(w.Ordered))
		}
		if g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Errorf("%s: tensor %s%v, want %s%v", where, g.DType, g.Shape, w.DType, w.Shape)
		}
		if strict && (fmt.Sprint(deref(g.RequiresGrad)) != fmt.Sprint(deref(w.RequiresGrad)) ||
			fmt.Sprint(deref(g.Contiguous)) != fmt.Sprint(deref(w.Contiguous))) {
			t.Errorf("%s: requires_grad/contiguous %v/%v, want %v/%v", where,
				deref(g.RequiresGrad), deref(g.Contiguous), deref(w.RequiresGrad), deref(w.Contiguous))
		}
		if fmt.Sprint(g.canonValues) != fmt.Sprint(w.canonValues) {
			t.Errorf("%s: values\n got  %v\n want %v", where, g.canonValues, w.canonValues)
		}
		if g.canonValue != w.canonValue {
			t.Errorf("%s: value %s, want %s", where, g.canonValue, w.canonValue)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func isFloatType(dtype string) bool {
	switch dtype {
	case "float", "float16", "float32", "float64", "bfloat16":
		return true
	}
	return false
}
