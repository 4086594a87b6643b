package ptfile

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type record struct {
	name string
	data []byte
}

func makeZip(t *testing.T, recs ...record) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, r := range recs {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: r.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(r.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rezip rewrites an archive, letting edit change or drop (nil) records.
func rezip(t *testing.T, raw []byte, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var recs []record
	for _, f := range zr.File {
		rc, _ := f.Open()
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		if d := edit(f.Name, b.Bytes()); d != nil {
			recs = append(recs, record{f.Name, d})
		}
	}
	return makeZip(t, recs...)
}

func encoded(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadErrors(t *testing.T) {
	good := encoded(t, map[string]any{"w": f32Tensor([]int64{2, 3}, 1, 2, 3, 4, 5, 6)})
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "empty", nil},
		{"text", "not a torch.save zip archive", []byte("hello, world\n")},
		{"legacy", "legacy (pre-1.6", []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")},
		{"truncated", "truncated", good[:len(good)-30]},
		{"other zip", "no <archive>/data.pkl", makeZip(t, record{"a/b.txt", []byte("x")})},
		{"unknown global", "unknown global posix.system",
			makeZip(t, record{"x/data.pkl", []byte("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.")})},
		{"unknown opcode", "unsupported pickle opcode",
			makeZip(t, record{"x/data.pkl", []byte("\x80\x02\xff.")})},
		{"pickle cut", "pickle ends early",
			makeZip(t, record{"x/data.pkl", []byte("\x80\x02X\x10\x00\x00\x00ab")})},
		{"missing storage", "storage record archive/data/0 is missing",
			rezip(t, good, func(n string, d []byte) []byte {
				if strings.HasSuffix(n, "data/0") {
					return nil
				}
				return d
			})},
		{"short storage", "storage archive/data/0 holds 20 bytes, but its float32 storage needs 24",
			rezip(t, good, func(n string, d []byte) []byte {
				if strings.HasSuffix(n, "data/0") {
					return d[:20]
				}
				return d
			})},
		{"storage smaller than tensor", "needs 6 elements of storage 0, which holds 5",
			rezip(t, good, func(n string, d []byte) []byte {
				if strings.HasSuffix(n, "data.pkl") {
					// The persistent id's numel: BININT1 6 just before TUPLE, BINPERSID.
					return bytes.Replace(d, []byte("K\x06tQ"), []byte("K\x05tQ"), 1)
				}
				return d
			})},
		{"big endian", "only little-endian",
			rezip(t, good, func(n string, d []byte) []byte {
				if strings.HasSuffix(n, "byteorder") {
					return []byte("big")
				}
				return d
			})},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".pt")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name %s and say %q", err, path, c.want)
			}
		})
	}
	if _, err := Read(filepath.Join(dir, "absent.pt")); err == nil || !strings.Contains(err.Error(), "absent.pt") ||
		!strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
}

// TestEveryTruncation cuts a real torch.save file at every length: each must fail cleanly.
func TestEveryTruncation(t *testing.T) {
	raw := readFile(t, filepath.Join("testdata", "state_dict.pt"))
	for n := 0; n < len(raw)-1; n++ {
		if _, err := Decode(bytes.NewReader(raw[:n]), int64(n)); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

// TestEveryPickleTruncation cuts data.pkl at every length inside an otherwise valid archive.
func TestEveryPickleTruncation(t *testing.T) {
	raw := readFile(t, filepath.Join("testdata", "adam.pt"))
	var pkl []byte
	rezip(t, raw, func(n string, d []byte) []byte {
		if strings.HasSuffix(n, "/data.pkl") {
			pkl = d
		}
		return d
	})
	for n := 0; n < len(pkl); n++ {
		cut := rezip(t, raw, func(name string, d []byte) []byte {
			if strings.HasSuffix(name, "/data.pkl") {
				return d[:n]
			}
			return d
		})
		if _, err := Decode(bytes.NewReader(cut), int64(len(cut))); err == nil {
			t.Fatalf("data.pkl cut to %d bytes: no error", n)
		}
	}
}

func TestBytesRoundTrip(t *testing.T) {
	b := []byte{0, 1, 127, 128, 255}
	raw := encoded(t, b)
	got, err := Decode(bytes.NewReader(raw), int64(len(raw)))
	if err != nil || !bytes.Equal(got.([]byte), b) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestCyclesAndBlowups(t *testing.T) {
	for name, pkl := range map[string]string{
		// l = []; l.append(l)
		"self list": "\x80\x02]q\x00h\x00a.",
		// d = {}; d['a'] = d
		"self dict": "\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.",
	} {
		raw := makeZip(t, record{"x/data.pkl", []byte(pkl)})
		if _, err := Decode(bytes.NewReader(raw), int64(len(raw))); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestSharedTuplesStayLinear: t0 = (1,); t_{i+1} = (t_i, t_i), 60 times, is 2^60 leaves if
// expanded naively; sharing must be kept instead.
func TestSharedTuplesStayLinear(t *testing.T) {
	raw := makeZip(t, record{"x/data.pkl", []byte("\x80\x02K\x01\x85" + strings.Repeat("2\x86", 60) + ".")})
	v, err := Decode(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for range 60 {
		l := v.([]any)
		if len(l) != 2 {
			t.Fatalf("len %d", len(l))
		}
		v = l[0]
	}
	if l := v.([]any); len(l) != 1 || l[0] != int64(1) {
		t.Fatalf("leaf %v", v)
	}
}
