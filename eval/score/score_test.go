package score

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/eval/npy"
)

// TestThresholdFor: the threshold keeps at least the asked share of in-distribution scores,
// and no more than ties force.
func TestThresholdFor(t *testing.T) {
	s := make([]float64, 100)
	for i := range s {
		s[i] = float64((i * 37) % 100) // 0..99, shuffled
	}
	for _, tc := range []struct{ tpr, value, achieved float64 }{{0.95, 5, 0.95}, {0.5, 50, 0.5}, {0.999, 0, 1}, {0.001, 99, 0.01}} {
		v, a := ThresholdFor(s, tc.tpr)
		if v != tc.value || a != tc.achieved {
			t.Errorf("TPR %g: threshold %g keeping %g, want %g keeping %g", tc.tpr, v, a, tc.value, tc.achieved)
		}
	}
	if v, a := ThresholdFor([]float64{1, 1, 1, 2}, 0.5); v != 1 || a != 1 {
		t.Errorf("ties: %g keeping %g", v, a)
	}
}

// TestReadNpy: the three image layouts read to the same planar pixels; floats are scaled, and
// shapes or values that are not images are errors naming the file.
func TestReadNpy(t *testing.T) {
	dir := t.TempDir()
	chw := []uint8{1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 250, 255} // one 3×2×2 image
	hwc := make([]uint8, 12)
	for c := range 3 {
		for p := range 4 {
			hwc[p*3+c] = chw[c*4+p]
		}
	}
	write := func(name string, f func(string) error) string {
		p := filepath.Join(dir, name)
		if err := f(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("chw.npy", func(p string) error { return npy.WriteUint8(p, chw, 1, 3, 2, 2) })
	b := write("hwc.npy", func(p string) error { return npy.WriteUint8(p, hwc, 1, 2, 2, 3) })
	fl := make([]float32, 12)
	for i, v := range chw {
		fl[i] = float32(v) / 255
	}
	c := write("float.npy", func(p string) error { return npy.WriteFloat32(p, fl, 1, 3, 2, 2) })
	for _, p := range []string{a, b, c} {
		items := readNpy(p)
		if len(items) != 1 || items[0].err != nil || items[0].c != 3 || string(items[0].pix) != string(chw) || items[0].name != p+"#0" {
			t.Errorf("%s: %+v", p, items)
		}
	}
	grey := readNpy(write("grey.npy", func(p string) error { return npy.WriteUint8(p, chw, 3, 2, 2) }))
	if len(grey) != 3 || grey[2].c != 1 || grey[2].pix[0] != 100 {
		t.Errorf("grey: %+v", grey)
	}
	for name, tc := range map[string]struct {
		f    func(string) error
		want string
	}{
		"four.npy":  {func(p string) error { return npy.WriteUint8(p, make([]uint8, 32), 2, 4, 2, 2) }, "want N×H×W, N×C×H×W or N×H×W×C"},
		"range.npy": {func(p string) error { return npy.WriteFloat32(p, []float32{0, 2, 0, 0}, 1, 2, 2) }, "must be in [0, 1]"},
		"flat.npy":  {func(p string) error { return npy.WriteUint8(p, chw) }, "want N×H×W"},
	} {
		items := readNpy(write(name, tc.f))
		if len(items) != 1 || items[0].err == nil || !strings.Contains(items[0].err.Error(), tc.want) {
			t.Errorf("%s: %+v, want an error with %q", name, items, tc.want)
		}
	}
}
