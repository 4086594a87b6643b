package ptfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeSize counts the values in v as the encoder would visit them, stopping past limit.
func treeSize(v any, limit int) int {
	n := 1
	switch x := v.(type) {
	case []any:
		for _, it := range x {
			if n += treeSize(it, limit-n); n > limit {
				return n
			}
		}
	case *OrderedDict:
		for _, k := range x.Keys {
			if n += treeSize(x.Values[k], limit-n); n > limit {
				return n
			}
		}
	}
	return n
}

// FuzzDecode: no input may panic or hang Decode, and whatever decodes must re-encode to a file
// that decodes to the same thing (compared through a second encoding, which also covers NaN).
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"state_dict.pt", "adam.pt", "misc.pt"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	var buf bytes.Buffer
	if err := Encode(&buf, sample()); err == nil {
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if treeSize(v, 1<<16) > 1<<16 {
			return // heavily shared structure: the encoder writes it expanded
		}
		var e1, e2 bytes.Buffer
		if err := Encode(&e1, v); err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
		v2, err := Decode(bytes.NewReader(e1.Bytes()), int64(e1.Len()))
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if err := Encode(&e2, v2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e1.Bytes(), e2.Bytes()) {
			t.Fatalf("re-encoding is not stable:\n%v\n%v", v, v2)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode when PTFILE_WRITE_SEEDS=1: small
// Go-written files and hand-made pickles that reach the unpickler's less common paths.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PTFILE_WRITE_SEEDS") != "1" {
		t.Skip("set PTFILE_WRITE_SEEDS=1 to regenerate the fuzz seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range seeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func seeds(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"go_small":     encoded(t, map[string]any{"w": f32Tensor([]int64{2, 2}, 1, 2, 3, 4), "n": 3, "s": "x", "b": []byte{1, 2}}),
		"go_ordered":   encoded(t, func() any { d := NewOrderedDict(); d.Set("b", 1.5); d.Set("a", nil); return d }()),
		"go_ints":      encoded(t, []any{int64(1) << 40, -1, 70000, true, false}),
		"go_scalar":    encoded(t, i64Tensor(nil, 5)),
		"go_empty":     encoded(t, &Tensor{DType: "bool", Shape: []int64{0}, Data: []byte{}}),
		"pkl_proto4":   makeZip(t, record{"a/data.pkl", []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94\x8f\x94(K\x01K\x02\x90\x86.")}),
		"pkl_text":     makeZip(t, record{"a/data.pkl", []byte("(dp0\nS'k'\np1\nI42\nsS'f'\np2\nF1.5\nsV\u00e9\np3\n(lp4\nI01\naL7L\nag1\nas.")}),
		"pkl_global":   makeZip(t, record{"a/data.pkl", []byte("\x80\x02ctorch\nSize\nK\x02K\x03\x86\x85R.")}),
		"pkl_strided":  rezipSeed(t),
		"pkl_selfref":  makeZip(t, record{"a/data.pkl", []byte("\x80\x02]q\x00h\x00a.")}),
		"pkl_unknown":  makeZip(t, record{"a/data.pkl", []byte("\x80\x02cos\nsystem\n.")}),
		"not_zip":      []byte("\x80\x02}."),
		"zip_no_pkl":   makeZip(t, record{"a/version", []byte("3\n")}),
		"pkl_newobj":   makeZip(t, record{"a/data.pkl", []byte("\x80\x02ccollections\nOrderedDict\n)\x81(X\x01\x00\x00\x00kK\x01u}b.")}),
		"pkl_bytes":    makeZip(t, record{"a/data.pkl", []byte("\x80\x03C\x03abcB\x01\x00\x00\x00z\x86.")}),
		"pkl_long":     makeZip(t, record{"a/data.pkl", []byte("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\xff\x8b\x00\x00\x00\x00\x86.")}),
		"pkl_dictpair": makeZip(t, record{"a/data.pkl", []byte("\x80\x02ccollections\nOrderedDict\n]X\x01\x00\x00\x00xK\x05\x86a\x85R.")}),
	}
}

// TestSeeds pins what each seed decodes to, so the corpus keeps reaching the paths it names.
func TestSeeds(t *testing.T) {
	want := map[string]string{
		"go_empty":     "Tbool[0][]",
		"go_ints":      "[1099511627776 -1 70000 true false]",
		"go_ordered":   "{b:1.5 a:<nil>}",
		"go_scalar":    "Tint64[][5 0 0 0 0 0 0 0]",
		"go_small":     "{b:[1 2] n:3 s:x w:Tfloat32[2 2][0 0 128 63 0 0 0 64 0 0 64 64 0 0 128 64]}",
		"not_zip":      "error: legacy (pre-1.6, non-zip)",
		"pkl_bytes":    "[[97 98 99] [122]]",
		"pkl_dictpair": "{x:5}",
		"pkl_global":   "[2 3]",
		"pkl_long":     "[-9223372036854775808 0]",
		"pkl_newobj":   "{k:1}",
		"pkl_proto4":   "[a [1 2]]",
		"pkl_selfref":  "error: pickle holds a list that contains itself",
		"pkl_strided":  "Tint64[2 2][1 0 0 0 0 0 0 0 4 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0]",
		"pkl_text":     "{k:42 f:1.5 é:[true 7 k]}",
		"pkl_unknown":  "error: data.pkl offset 13: unknown global os.system",
		"zip_no_pkl":   "error: zip archive has no <archive>/data.pkl record",
	}
	got := seeds(t)
	if len(got) != len(want) {
		t.Errorf("%d seeds, %d expectations", len(got), len(want))
	}
	for name, data := range got {
		v, err := Decode(bytes.NewReader(data), int64(len(data)))
		s := show(v)
		if err != nil {
			s = "error: " + err.Error()
		}
		if !strings.HasPrefix(s, want[name]) || want[name] == "" {
			t.Errorf("%s: got %s, want %s", name, s, want[name])
		}
	}
}

func show(v any) string {
	switch x := v.(type) {
	case *OrderedDict:
		parts := make([]string, len(x.Keys))
		for i, k := range x.Keys {
			parts[i] = k + ":" + show(x.Values[k])
		}
		return "{" + strings.Join(parts, " ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i := range x {
			parts[i] = show(x[i])
		}
		return "[" + strings.Join(parts, " ") + "]"
	case *Tensor:
		return fmt.Sprintf("T%s%v%v", x.DType, x.Shape, x.Data)
	}
	return fmt.Sprint(v)
}

// rezipSeed is a torch.save-style file whose tensor is a strided view with an offset.
func rezipSeed(t *testing.T) []byte {
	pkl := "\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nLongStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQK\x01K\x02K\x02\x86K\x01K\x03\x86\x89ccollections\nOrderedDict\n)RtR."
	data := make([]byte, 48)
	for i := range 6 {
		data[8*i] = byte(i)
	}
	return makeZip(t, record{"a/data.pkl", []byte(pkl)}, record{"a/data/0", data})
}
