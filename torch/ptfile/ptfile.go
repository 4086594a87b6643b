package ptfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

// Tensor is a dense CPU tensor: Data holds the elements little-endian in contiguous row-major order.
// DType is one of "float32", "float64", "int64", "uint8", "bool", "float16", "bfloat16", "int32",
// "int16" or "int8". A 0-d (scalar) tensor has an empty Shape and one element.
type Tensor struct {
	DType string
	Shape []int64
	Data  []byte
}

// Numel is the number of elements the shape describes.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// OrderedDict is a Python dict (plain or collections.OrderedDict) with its insertion order.
type OrderedDict struct {
	Keys   []string
	Values map[string]any
}

// NewOrderedDict returns an empty dict ready for Set.
func NewOrderedDict() *OrderedDict {
	return &OrderedDict{Values: map[string]any{}}
}

// Set stores v under k; a key already present keeps its position, as in Python.
func (d *OrderedDict) Set(k string, v any) {
	if d.Values == nil {
		d.Values = map[string]any{}
	}
	if _, ok := d.Values[k]; !ok {
		d.Keys = append(d.Keys, k)
	}
	d.Values[k] = v
}

// Get returns the value under k and whether it was present.
func (d *OrderedDict) Get(k string) (any, bool) {
	v, ok := d.Values[k]
	return v, ok
}

// dtypeInfo ties a dtype name to its element size and to the legacy storage class name that
// torch.save writes (and torch.load of every version since 1.6 understands).
type dtypeInfo struct {
	name    string
	size    int
	storage string
}

var dtypes = []dtypeInfo{
	{"float32", 4, "FloatStorage"},
	{"float64", 8, "DoubleStorage"},
	{"float16", 2, "HalfStorage"},
	{"bfloat16", 2, "BFloat16Storage"},
	{"int64", 8, "LongStorage"},
	{"int32", 4, "IntStorage"},
	{"int16", 2, "ShortStorage"},
	{"int8", 1, "CharStorage"},
	{"uint8", 1, "ByteStorage"},
	{"bool", 1, "BoolStorage"},
}

func dtypeByName(name string) (dtypeInfo, bool) {
	for _, d := range dtypes {
		if d.name == name {
			return d, true
		}
	}
	return dtypeInfo{}, false
}

func dtypeByStorage(class string) (dtypeInfo, bool) {
	if class == "UntypedStorage" {
		// torch 1.13 saves a bare UntypedStorage with dtype uint8 and numel in bytes.
		return dtypeInfo{"uint8", 1, "ByteStorage"}, true
	}
	for _, d := range dtypes {
		if d.storage == class {
			return d, true
		}
	}
	return dtypeInfo{}, false
}

// Write saves v to path in torch.save's format, atomically: the file appears complete or not at
// all. v may nest *OrderedDict, map[string]any (written with sorted keys), map[int]any and
// map[int64]any (integer keys, as optimizer state dicts need), []any, []int, []int64, []float64,
// []string, []byte, string, int, int32, int64, float32, float64, bool, nil and *Tensor.
func Write(path string, v any) error {
	base := filepath.Base(path)
	if err := atomicfile.Write(path, func(w io.Writer) error { return encode(w, v, archiveName(base)) }); err != nil {
		return fmt.Errorf("ptfile: %w", err)
	}
	return nil
}

// archiveName mirrors torch.save, which names the zip's top folder after the file's stem.
func archiveName(base string) string {
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	if stem == "" || strings.ContainsAny(stem, "/\\") {
		return "archive"
	}
	return stem
}

// Read loads a file written by torch.save (or Write). Dicts come back as *OrderedDict in their
// saved order (non-string keys such as the integer parameter ids of an optimizer state dict are
// turned into their decimal text), lists and tuples as []any, ints as int64, floats as float64,
// bytes as []byte and tensors as contiguous *Tensor.
func Read(path string) (any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ptfile: read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ptfile: read %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("ptfile: read %s: is a directory", path)
	}
	v, err := Decode(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("ptfile: read %s: %w", path, err)
	}
	return v, nil
}
