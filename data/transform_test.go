package data

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"testing"
)

func synthetic(n, c, h, w, classes int, seed uint64) *Dataset {
	r := newRand(seed, 99)
	d := &Dataset{Name: "synthetic", N: n, C: c, H: h, W: w, Classes: numberedClasses(classes),
		Images: make([]uint8, n*c*h*w), Labels: make([]int64, n)}
	for i := range d.Images {
		d.Images[i] = uint8(r.Uint32())
	}
	for i := range d.Labels {
		d.Labels[i] = int64(i % classes)
	}
	return d
}

// TestConvertMatchesPIL compares with PIL's convert("L") and BILINEAR resize on real images; the
// goldens come from testdata/make_resize_goldens.py. PIL works in fixed point, so ±1 is allowed.
func TestConvertMatchesPIL(t *testing.T) {
	shared := sharedData(t)
	src := Source{Dirs: []string{shared}}
	cifar, err := src.Load("cifar10", Test)
	if err != nil {
		t.Fatal(err)
	}
	mnist, err := src.Load("mnist", Test)
	if err != nil {
		t.Fatal(err)
	}
	first8 := func(d *Dataset) *Dataset { return d.subset(d.Name, identity(8)) }
	cases := []struct {
		golden  string
		in      *Dataset
		c, h, w int
	}{
		{"golden_cifar_gray28.bin", first8(cifar), 1, 28, 28},
		{"golden_cifar_rgb28.bin", first8(cifar), 3, 28, 28},
		{"golden_mnist_rgb32.bin", first8(mnist), 3, 32, 32},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			want := mustRead(t, filepath.Join("testdata", tc.golden))
			got, err := Convert(tc.in, tc.c, tc.h, tc.w)
			if err != nil {
				t.Fatal(err)
			}
			if got.C != tc.c || got.H != tc.h || got.W != tc.w || len(got.Images) != len(want) {
				t.Fatalf("shape %dx%dx%d, %d bytes; want %d", got.C, got.H, got.W, len(got.Images), len(want))
			}
			off := 0
			for i := range want {
				if d := int(got.Images[i]) - int(want[i]); d > 1 || d < -1 {
					t.Fatalf("byte %d: %d, PIL %d", i, got.Images[i], want[i])
				} else if d != 0 {
					off++
				}
			}
			t.Logf("%d of %d bytes differ from PIL by 1", off, len(want))
		})
	}
}

func TestConvertBasics(t *testing.T) {
	d := &Dataset{Name: "px", N: 1, C: 3, H: 1, W: 3, Classes: []string{"a"}, Labels: []int64{0},
		Images: []uint8{255, 0, 0, 0, 255, 0, 0, 0, 255}}
	g, err := Convert(d, 1, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint8{76, 150, 29}; !bytes.Equal(g.Images, want) {
		t.Errorf("luma %v, want %v", g.Images, want)
	}
	rgb, err := Convert(g, 3, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint8{76, 150, 29, 76, 150, 29, 76, 150, 29}; !bytes.Equal(rgb.Images, want) {
		t.Errorf("replicate %v", rgb.Images)
	}
	// A constant image stays constant at any size: the filter weights sum to one.
	c := &Dataset{Name: "k", N: 1, C: 1, H: 7, W: 5, Classes: []string{"a"}, Labels: []int64{0}, Images: bytes.Repeat([]byte{77}, 35)}
	for _, s := range [][2]int{{3, 2}, {14, 11}, {7, 5}, {1, 1}} {
		r, err := Convert(c, 1, s[0], s[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Images, bytes.Repeat([]byte{77}, s[0]*s[1])) {
			t.Errorf("resize to %v: %v", s, r.Images)
		}
	}
	if _, err := Convert(c, 2, 3, 3); err == nil {
		t.Error("2 channels accepted")
	}
	if _, err := Convert(c, 1, 0, 3); err == nil {
		t.Error("height 0 accepted")
	}
}

func TestInterp(t *testing.T) {
	d := &Dataset{Name: "k", N: 100, C: 1, H: 2, W: 2, Classes: []string{"a"}, Labels: make([]int64, 100)}
	for i := range d.N {
		d.Images = append(d.Images, bytes.Repeat([]byte{uint8(2 * i)}, 4)...)
	}
	a, b := Interp(d, 500, 1), Interp(d, 500, 1)
	if !bytes.Equal(a.Images, b.Images) {
		t.Fatal("same seed, different images")
	}
	if c := Interp(d, 500, 2); bytes.Equal(a.Images, c.Images) {
		t.Fatal("different seeds, same images")
	}
	for k := range a.N {
		img := a.Image(k)
		// (2i + 2j + 1) >> 1 = i + j for some i != j.
		if img[0] != img[3] {
			t.Fatalf("image %d not constant: %v", k, img)
		}
		if img[0] < 1 || img[0] > 197 {
			t.Fatalf("image %d value %d out of the range of i+j", k, img[0])
		}
	}
	// Rounding is half up: 0 and 1 average to 1.
	two := &Dataset{Name: "t", N: 2, C: 1, H: 1, W: 1, Classes: []string{"a"}, Labels: []int64{0, 0}, Images: []uint8{0, 1}}
	if got := Interp(two, 3, 5).Images; !bytes.Equal(got, []uint8{1, 1, 1}) {
		t.Errorf("interp of 0 and 1: %v", got)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNoiseSets(t *testing.T) {
	u := UniformNoise(200, 3, 8, 8, 7)
	g := GaussianNoise(200, 3, 8, 8, 7)
	for _, d := range []*Dataset{u, g} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	mean := func(b []uint8) float64 {
		s := 0.0
		for _, v := range b {
			s += float64(v)
		}
		return s / float64(len(b))
	}
	if m := mean(u.Images); math.Abs(m-127.5) > 2 {
		t.Errorf("uniform mean %v", m)
	}
	sat := 0
	for _, v := range g.Images {
		if v == 0 || v == 255 {
			sat++
		}
	}
	// P(|N(0,1)| > 1) = 0.3173.
	if f := float64(sat) / float64(len(g.Images)); math.Abs(f-0.3173) > 0.02 {
		t.Errorf("gaussian saturated fraction %v, want 0.317", f)
	}
	if m := mean(g.Images); math.Abs(m-127.5) > 2 {
		t.Errorf("gaussian mean %v", m)
	}
	if bytes.Equal(UniformNoise(10, 1, 4, 4, 1).Images, UniformNoise(10, 1, 4, 4, 2).Images) {
		t.Error("uniform noise ignores the seed")
	}
}

func TestSplitAndSubset(t *testing.T) {
	d := synthetic(1000, 1, 2, 2, 10, 3)
	tr, va := SplitValidation(d, 150, 42)
	tr2, va2 := SplitValidation(d, 150, 42)
	if tr.N != 850 || va.N != 150 || !bytes.Equal(va.Images, va2.Images) || !bytes.Equal(tr.Images, tr2.Images) {
		t.Fatalf("split sizes %d/%d or not deterministic", tr.N, va.N)
	}
	// Images are distinct random 4-byte strings, so they identify their source row.
	seen := map[string]int{}
	for _, part := range []*Dataset{tr, va} {
		for i := range part.N {
			seen[string(part.Image(i))]++
		}
	}
	for i := range d.N {
		if seen[string(d.Image(i))] != 1 {
			t.Fatalf("image %d appears %d times across train+val", i, seen[string(d.Image(i))])
		}
	}
	_, va3 := SplitValidation(d, 150, 43)
	if bytes.Equal(va.Images, va3.Images) {
		t.Error("validation split ignores the seed")
	}
	s := SubsetPerClass(d, 7, 1)
	counts := make([]int, 10)
	for _, y := range s.Labels {
		counts[y]++
	}
	if s.N != 70 || slices.Max(counts) != 7 || slices.Min(counts) != 7 {
		t.Errorf("subset N=%d counts %v", s.N, counts)
	}
}
