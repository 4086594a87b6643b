package npy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParseHeader: no input may panic the header parser or the decoder, and an accepted header
// for a dtype this package writes must survive being written again.
func FuzzParseHeader(f *testing.F) {
	f.Add(header("<f4", []int{2, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := ParseHeader(bytes.NewReader(data))
		if _, derr := decode(bytes.NewReader(data), int64(len(data))); derr == nil && err != nil {
			t.Fatalf("decode accepted what ParseHeader refused: %v", err)
		}
		if err != nil {
			return
		}
		if n > len(data) {
			t.Fatalf("consumed %d of %d bytes", n, len(data))
		}
		dt, err := parseDescr(h.Descr)
		if err != nil || h.FortranOrder || len(h.Shape) == 0 {
			return
		}
		out := map[string]string{"float32": "<f4", "float64": "<f8", "int64": "<i8", "uint8": "|u1", "bool": "|b1"}[dt.name]
		again := header(out, h.Shape)
		h2, n2, err := ParseHeader(bytes.NewReader(again))
		if err != nil || n2 != len(again) || n2%64 != 0 || !reflect.DeepEqual(h2.Shape, h.Shape) || h2.Descr != out {
			t.Fatalf("rewritten header %q parses as %+v, %d, %v", again, h2, n2, err)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzParseHeader when NPY_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("NPY_WRITE_SEEDS") != "1" {
		t.Skip("set NPY_WRITE_SEEDS=1 to regenerate the fuzz seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseHeader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v1 := func(dict string) []byte {
		return append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(dict)), 0}, dict...)
	}
	seeds := map[string][]byte{
		"py2_long":  v1("{'descr': '<i8', 'fortran_order': False, 'shape': (3L, 2L), }\n"),
		"dq":        v1(`{"descr": ">f8", "fortran_order": False, "shape": (1,)}` + "\n"),
		"scalar":    append(v1("{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n"), 0, 0, 0x80, 0x3f),
		"v2":        append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 55, 0, 0, 0}, "{'descr': '|b1', 'fortran_order': False, 'shape': (1,)}\x01"...),
		"fortran":   v1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n"),
		"struct":    v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n"),
		"no_close":  v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,"),
		"truncated": v1("{'descr': '<f4'")[:12],
	}
	for _, name := range []string{"f4_2x3", "i8_big_endian", "f4_empty", "bool_2x2", "u1_labels"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		seeds["numpy_"+name] = b
	}
	for name, data := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
