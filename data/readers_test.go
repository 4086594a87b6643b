package data

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }

func TestRealDatasets(t *testing.T) {
	shared := sharedData(t)
	src := Source{Dirs: []string{shared, DebianDatasets}}
	type realCase struct {
		spec    string
		split   Split
		n, c, h int
		classes int
		mean    []float64 // published train statistics; nil to skip
		std     []float64
	}
	cases := []realCase{
		{"mnist", Train, 60000, 1, 28, 10, []float64{0.1307}, []float64{0.3081}},
		{"mnist", Test, 10000, 1, 28, 10, nil, nil},
		{"cifar10", Train, 50000, 3, 32, 10, []float64{0.4914, 0.4822, 0.4465}, []float64{0.2470, 0.2435, 0.2616}},
		{"cifar10", Test, 10000, 3, 32, 10, nil, nil},
		{"cifar100", Test, 10000, 3, 32, 100, nil, nil},
		{"idx:" + filepath.Join(shared, "mnist"), Test, 10000, 1, 28, 10, nil, nil},
		{"cifar10:" + filepath.Join(shared, "cifar-10-batches-bin"), Test, 10000, 3, 32, 10, nil, nil},
		{"cifar100:" + filepath.Join(shared, "cifar-100-binary"), Test, 10000, 3, 32, 100, nil, nil},
	}
	if dirExists(filepath.Join(DebianDatasets, "fashion-mnist")) {
		cases = append(cases,
			realCase{"fashion-mnist", Train, 60000, 1, 28, 10, []float64{0.2860}, []float64{0.3530}},
			realCase{"fashion-mnist", Test, 10000, 1, 28, 10, nil, nil})
	}
	for _, tc := range cases {
		t.Run(tc.spec+"/"+string(tc.split), func(t *testing.T) {
			d, err := src.Load(tc.spec, tc.split)
			if err != nil {
				t.Fatal(err)
			}
			if d.N != tc.n || d.C != tc.c || d.H != tc.h || d.W != tc.h || len(d.Classes) != tc.classes {
				t.Fatalf("got N=%d C=%d H=%d W=%d classes=%d, want %d %d %d %d %d", d.N, d.C, d.H, d.W, len(d.Classes), tc.n, tc.c, tc.h, tc.h, tc.classes)
			}
			counts := make([]int, tc.classes)
			for _, y := range d.Labels {
				counts[y]++
			}
			for k, n := range counts {
				// Every class of these datasets is present and none dominates.
				if n == 0 || n > d.N/tc.classes*2 {
					t.Errorf("class %d (%s) has %d of %d images", k, d.Classes[k], n, d.N)
				}
			}
			if tc.mean == nil {
				return
			}
			mean, std := meanStd(d)
			for c := range mean {
				if math.Abs(mean[c]-tc.mean[c]) > 5e-5 || math.Abs(std[c]-tc.std[c]) > 5e-5 {
					t.Errorf("channel %d: mean %.5f std %.5f, want %.4f %.4f", c, mean[c], std[c], tc.mean[c], tc.std[c])
				}
			}
		})
	}
}

func TestRealClassNames(t *testing.T) {
	shared := sharedData(t)
	src := Source{Dirs: []string{shared}}
	d, err := src.Load("cifar100", Test)
	if err != nil {
		t.Fatal(err)
	}
	if d.Classes[0] != "apple" || d.Classes[99] != "worm" {
		t.Errorf("CIFAR-100 classes %q ... %q", d.Classes[0], d.Classes[99])
	}
	d, err = src.Load("cifar10", Test)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Classes, ",") != strings.Join(cifar10Classes, ",") {
		t.Errorf("CIFAR-10 classes %v", d.Classes)
	}
}

func TestCIFAR100TrainMissing(t *testing.T) {
	shared := sharedData(t)
	_, err := Source{Dirs: []string{shared}}.Load("cifar100", Train)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(shared, "cifar-100-binary", "train.bin")) {
		t.Fatalf("want an error naming the missing train.bin, got %v", err)
	}
}

func TestNamedNotFound(t *testing.T) {
	_, err := Source{Dirs: []string{t.TempDir()}}.Load("svhn", Test)
	if err == nil || !strings.Contains(err.Error(), "data fetch svhn") {
		t.Fatalf("want a hint to fetch, got %v", err)
	}
}

func TestDefaultSource(t *testing.T) {
	t.Setenv("HDGE_DATA", "/a"+string(os.PathListSeparator)+"/b")
	s := DefaultSource("/flag")
	if len(s.Dirs) < 4 || s.Dirs[0] != "/flag" || s.Dirs[1] != "/a" || s.Dirs[2] != "/b" || s.Dirs[len(s.Dirs)-1] != DebianDatasets {
		t.Fatalf("dirs %v", s.Dirs)
	}
	if DefaultDataDir("") != "/a" || DefaultDataDir("/x") != "/x" {
		t.Errorf("DefaultDataDir: %q %q", DefaultDataDir(""), DefaultDataDir("/x"))
	}
}

func TestSVHNFixtures(t *testing.T) {
	wantLabels := []int64{0, 1, 2, 9, 0}
	for _, f := range []string{"svhn_small.mat", "svhn_small_compressed.mat", "svhn_small_double.mat"} {
		t.Run(f, func(t *testing.T) {
			d, err := Source{}.Load("svhn:"+filepath.Join("testdata", f), Test)
			if err != nil {
				t.Fatal(err)
			}
			if d.N != 5 || d.C != 3 || d.H != 32 || d.W != 32 || len(d.Classes) != 10 {
				t.Fatalf("shape N=%d C=%d H=%d W=%d", d.N, d.C, d.H, d.W)
			}
			for i, y := range d.Labels {
				if y != wantLabels[i] {
					t.Errorf("label %d = %d, want %d", i, y, wantLabels[i])
				}
			}
			for n := range d.N {
				img := d.Image(n)
				for ch := range 3 {
					for r := range 32 {
						for c := range 32 {
							want := uint8((r*7 + c*3 + ch*50 + n*11) % 256)
							if got := img[ch*1024+r*32+c]; got != want {
								t.Fatalf("image %d (ch %d, row %d, col %d) = %d, want %d", n, ch, r, c, got, want)
							}
						}
					}
				}
			}
		})
	}
	for _, f := range []string{"svhn_tiny.mat", "svhn_tiny_compressed.mat"} {
		d, err := ReadSVHN(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		// X(r, c, ch, n) with r = 3, c = 1, ch = 2, n = 1 lands at CHW offset ch*16 + r*4 + c.
		if d.N != 2 || d.H != 4 || d.W != 4 || d.Image(1)[2*16+3*4+1] != uint8(3*7+1*3+2*50+1*11) {
			t.Errorf("%s: N=%d H=%d W=%d", f, d.N, d.H, d.W)
		}
	}
	_, err := ReadSVHN(filepath.Join("testdata", "svhn_bad_label.mat"))
	if err == nil || !strings.Contains(err.Error(), "svhn_bad_label.mat") || !strings.Contains(err.Error(), "11") {
		t.Fatalf("want a label-range error naming the file, got %v", err)
	}
}
