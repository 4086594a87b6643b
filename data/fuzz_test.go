package data

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The fuzz targets only demand "no panic, and a success is self-consistent"; the seed corpora in
// testdata/fuzz hold valid and broken files so the mutator starts from real structure.

func FuzzIDX(f *testing.F) {
	f.Add(idxBytes(0x803, []uint32{2, 2, 2}, make([]byte, 8)), idxBytes(0x801, []uint32{2}, []byte{1, 2}))
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		n, h, w, pix, err := ParseIDXImages("images", images)
		if err == nil && len(pix) != n*h*w {
			t.Fatalf("%d pixels for %d×%d×%d", len(pix), n, h, w)
		}
		lab, lerr := ParseIDXLabels("labels", labels)
		if err == nil && lerr == nil {
			if d, err := idxDataset("images", "labels", n, h, w, pix, lab, nil); err == nil && d.Validate() != nil {
				t.Fatal(d.Validate())
			}
		}
	})
}

func FuzzCIFAR(f *testing.F) {
	rec := append([]byte{3}, bytes.Repeat([]byte{7}, 3072)...)
	f.Add(rec, uint8(1))
	f.Add(append([]byte{1}, rec...), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, labelBytes uint8) {
		variant := 10
		if labelBytes == 2 {
			variant = 100
		}
		pix, labels, err := ParseCIFAR("f.bin", b, int(labelBytes), variant)
		if err == nil && len(pix) != len(labels)*3072 {
			t.Fatalf("%d pixels for %d labels", len(pix), len(labels))
		}
	})
}

func FuzzMAT(f *testing.F) {
	for _, name := range []string{"svhn_tiny.mat", "svhn_tiny_compressed.mat"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseSVHN("f.mat", b)
		if err == nil {
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
