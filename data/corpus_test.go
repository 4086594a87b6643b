package data

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestWriteFuzzCorpus regenerates the checked-in seed corpora: HDGE_WRITE_CORPUS=1 go test -run
// TestWriteFuzzCorpus. Otherwise it only checks that every corpus folder is populated.
func TestWriteFuzzCorpus(t *testing.T) {
	idxImg := idxBytes(0x803, []uint32{3, 2, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	idxLab := idxBytes(0x801, []uint32{3}, []byte{0, 9, 4})
	rec1 := append([]byte{9}, bytes.Repeat([]byte{200}, 3072)...)
	rec2 := append([]byte{19, 99}, bytes.Repeat([]byte{1}, 3072)...)
	mat, _ := os.ReadFile(filepath.Join("testdata", "svhn_tiny.mat"))
	matz, _ := os.ReadFile(filepath.Join("testdata", "svhn_tiny_compressed.mat"))
	corpora := map[string][][]any{
		"FuzzIDX": {
			{idxImg, idxLab},
			{idxImg[:10], idxLab},
			{idxBytes(0x0803, []uint32{0xffffffff, 0xffffffff, 2}, nil), idxLab[:6]},
			{gz(idxImg), idxBytes(0x801, []uint32{2}, []byte{1})},
		},
		"FuzzCIFAR": {
			{append(rec1, rec1...), uint8(1)},
			{rec2, uint8(2)},
			{rec1[:1000], uint8(1)},
			{append([]byte{10}, rec1[1:]...), uint8(1)},
		},
		"FuzzMAT": {
			{mat},
			{matz},
			{mat[:300]},
			{mat[:128]},
		},
	}
	for name, entries := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("HDGE_WRITE_CORPUS") == "" {
			files, _ := os.ReadDir(dir)
			if len(files) < len(entries) {
				t.Errorf("%s holds %d seed files, want %d; regenerate with HDGE_WRITE_CORPUS=1", dir, len(files), len(entries))
			}
			continue
		}
		os.MkdirAll(dir, 0o755)
		for i, args := range entries {
			var b bytes.Buffer
			b.WriteString("go test fuzz v1\n")
			for _, a := range args {
				switch v := a.(type) {
				case []byte:
					fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
				case uint8:
					fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
