package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func idxBytes(magic uint32, dims []uint32, body []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(body)
	return b.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// TestCorruptInput checks that every way a file can be wrong gives an error that names the file
// and says what is wrong.
func TestCorruptInput(t *testing.T) {
	dir := t.TempDir()
	goodImages := idxBytes(0x803, []uint32{2, 2, 2}, make([]byte, 8))
	goodLabels := idxBytes(0x801, []uint32{2}, []byte{1, 2})
	cifarRec := func(label byte) []byte { return append([]byte{label}, make([]byte, 3072)...) }
	cases := []struct {
		name  string
		setup func() error // returns the load error
		want  []string     // substrings of the error
	}{
		{"idx bad magic", func() error {
			p := writeFile(t, filepath.Join(dir, "m1", "x-images"), idxBytes(0x01000803, []uint32{2, 2, 2}, make([]byte, 8)))
			_, _, _, _, err := ParseIDXImages(p, mustRead(t, p))
			return err
		}, []string{"x-images", "magic"}},
		{"idx wrong type", func() error {
			_, _, _, _, err := ParseIDXImages("f.idx", idxBytes(0x0d03, []uint32{2, 2, 2}, make([]byte, 32)))
			return err
		}, []string{"f.idx", "data type"}},
		{"idx truncated header", func() error {
			_, _, _, _, err := ParseIDXImages("f.idx", []byte{0, 0, 8, 3, 0, 0})
			return err
		}, []string{"f.idx", "truncated"}},
		{"idx truncated data", func() error {
			_, _, _, _, err := ParseIDXImages("f.idx", idxBytes(0x803, []uint32{3, 2, 2}, make([]byte, 8)))
			return err
		}, []string{"f.idx", "truncated", "12 bytes"}},
		{"idx labels as images", func() error {
			_, _, _, _, err := ParseIDXImages("f.idx", goodLabels)
			return err
		}, []string{"f.idx", "1 dimensions, want 3"}},
		{"idx count mismatch", func() error {
			d := filepath.Join(dir, "m2")
			writeFile(t, filepath.Join(d, "train-images-idx3-ubyte.gz"), gz(goodImages))
			writeFile(t, filepath.Join(d, "train-labels-idx1-ubyte"), idxBytes(0x801, []uint32{3}, []byte{1, 2, 3}))
			_, err := Source{}.Load("idx:"+d, Train)
			return err
		}, []string{"train-images-idx3-ubyte.gz has 2 images", "train-labels-idx1-ubyte has 3 labels"}},
		{"idx truncated gzip", func() error {
			d := filepath.Join(dir, "m3")
			z := gz(goodImages)
			writeFile(t, filepath.Join(d, "train-images-idx3-ubyte.gz"), z[:len(z)-10])
			writeFile(t, filepath.Join(d, "train-labels-idx1-ubyte.gz"), gz(goodLabels))
			_, err := Source{}.Load("idx:"+d, Train)
			return err
		}, []string{"train-images-idx3-ubyte.gz", "gzip"}},
		{"idx label out of range for named", func() error {
			d := filepath.Join(dir, "m4", "mnist")
			writeFile(t, filepath.Join(d, "t10k-images-idx3-ubyte.gz"), gz(goodImages))
			writeFile(t, filepath.Join(d, "t10k-labels-idx1-ubyte.gz"), gz(idxBytes(0x801, []uint32{2}, []byte{1, 12})))
			_, err := Source{Dirs: []string{filepath.Join(dir, "m4")}}.Load("mnist", Test)
			return err
		}, []string{"t10k-labels-idx1-ubyte.gz", "label 12", "out of range"}},
		{"idx missing dir", func() error {
			_, err := Source{}.Load("idx:"+filepath.Join(dir, "nope"), Train)
			return err
		}, []string{filepath.Join(dir, "nope")}},
		{"idx missing labels", func() error {
			d := filepath.Join(dir, "m5")
			writeFile(t, filepath.Join(d, "train-images-idx3-ubyte"), goodImages)
			_, err := Source{}.Load("idx:"+d, Train)
			return err
		}, []string{"missing IDX file", filepath.Join(dir, "m5", "train-labels-idx1-ubyte")}},
		{"cifar truncated", func() error {
			d := filepath.Join(dir, "c1")
			writeFile(t, filepath.Join(d, "test_batch.bin"), append(cifarRec(1), cifarRec(2)[:100]...))
			_, err := Source{}.Load("cifar10:"+d, Test)
			return err
		}, []string{"test_batch.bin", "not a multiple", "3073"}},
		{"cifar label out of range", func() error {
			d := filepath.Join(dir, "c2")
			writeFile(t, filepath.Join(d, "test_batch.bin"), append(cifarRec(1), cifarRec(10)...))
			_, err := Source{}.Load("cifar10:"+d, Test)
			return err
		}, []string{"test_batch.bin", "label 10 of record 1 out of range"}},
		{"cifar100 fed cifar10 file", func() error {
			d := filepath.Join(dir, "c3")
			writeFile(t, filepath.Join(d, "test.bin"), append(cifarRec(1), cifarRec(2)...))
			_, err := Source{}.Load("cifar100:"+d, Test)
			return err
		}, []string{"test.bin", "3074"}},
		{"cifar missing dir", func() error {
			_, err := Source{}.Load("cifar10:"+filepath.Join(dir, "none"), Test)
			return err
		}, []string{filepath.Join(dir, "none")}},
		{"unknown prefix", func() error {
			_, err := Source{}.Load("tfrecord:/x", Test)
			return err
		}, []string{`unknown format prefix "tfrecord"`}},
		{"unknown name", func() error {
			_, err := Source{}.Load("imagenet", Test)
			return err
		}, []string{`unknown dataset "imagenet"`}},
		{"mat truncated", func() error {
			p := filepath.Join("testdata", "svhn_small.mat")
			_, err := ParseSVHN(p, mustRead(t, p)[:5000])
			return err
		}, []string{"svhn_small.mat", "truncated"}},
		{"mat bad header", func() error {
			_, err := ParseSVHN("x.mat", make([]byte, 200))
			return err
		}, []string{"x.mat", "endian indicator"}},
		{"mat missing file", func() error {
			_, err := Source{}.Load("svhn:"+filepath.Join(dir, "train_32x32.mat"), Train)
			return err
		}, []string{filepath.Join(dir, "train_32x32.mat")}},
		{"folder missing", func() error {
			_, err := Source{}.Load("folder:"+filepath.Join(dir, "f0"), Test)
			return err
		}, []string{filepath.Join(dir, "f0"), "does not exist"}},
		{"folder mixed sizes", func() error {
			d := filepath.Join(dir, "f1")
			writePNG(t, filepath.Join(d, "a", "1.png"), image.NewGray(image.Rect(0, 0, 4, 4)))
			writePNG(t, filepath.Join(d, "b", "2.png"), image.NewGray(image.Rect(0, 0, 5, 4)))
			_, err := Source{}.Load("folder:"+d, Test)
			return err
		}, []string{filepath.Join(dir, "f1", "b", "2.png"), "5x4"}},
		{"folder corrupt png", func() error {
			d := filepath.Join(dir, "f2")
			writeFile(t, filepath.Join(d, "a", "1.png"), []byte("\x89PNG\r\n\x1a\nnot really"))
			_, err := Source{}.Load("folder:"+d, Test)
			return err
		}, []string{filepath.Join(dir, "f2", "a", "1.png")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.setup()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writePNG(t *testing.T, path string, im image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

func TestReadFolder(t *testing.T) {
	dir := t.TempDir()
	// RGB images in two classes, plus a gray-only folder.
	for k, cls := range []string{"cats", "dogs"} {
		for i := range 3 {
			im := image.NewNRGBA(image.Rect(0, 0, 3, 2))
			for y := range 2 {
				for x := range 3 {
					im.SetNRGBA(x, y, color.NRGBA{uint8(10*k + i), uint8(x), uint8(y), 255})
				}
			}
			writePNG(t, filepath.Join(dir, "rgb", "test", cls, string(rune('a'+i))+".png"), im)
		}
	}
	ds, err := Source{}.Load("folder:"+filepath.Join(dir, "rgb"), Test)
	if err != nil {
		t.Fatal(err)
	}
	if ds.N != 6 || ds.C != 3 || ds.H != 2 || ds.W != 3 || strings.Join(ds.Classes, ",") != "cats,dogs" {
		t.Fatalf("got N=%d C=%d H=%d W=%d classes %v", ds.N, ds.C, ds.H, ds.W, ds.Classes)
	}
	img := ds.Image(4) // dogs/b.png
	if ds.Labels[4] != 1 || img[0] != 11 || img[6+2] != 2 || img[12+3] != 1 {
		t.Errorf("image 4 label %d pixels %v", ds.Labels[4], img)
	}
	g := image.NewGray(image.Rect(0, 0, 2, 2))
	g.Pix = []uint8{1, 2, 3, 4}
	writePNG(t, filepath.Join(dir, "gray", "only", "x.png"), g)
	ds, err = ReadFolder(filepath.Join(dir, "gray"))
	if err != nil {
		t.Fatal(err)
	}
	if ds.C != 1 || !bytes.Equal(ds.Images, []uint8{1, 2, 3, 4}) {
		t.Errorf("gray folder: C=%d pixels %v", ds.C, ds.Images)
	}
}
