package data

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// viewImage is the test image of testdata/make_view_goldens.py: c×4×5, pixel k = ((37k+11) mod 256)/255.
func viewImage(c int) []float32 {
	img := make([]float32, c*20)
	for k := range img {
		img[k] = float32(float64((k*37+11)%256) / 255)
	}
	return img
}

// TestViewOpsMatchTorchvision compares each step with torchvision 0.14's tensor functions on the
// same image (goldens from testdata/make_view_goldens.py). Tolerance 2e-6: float32 rounding of the
// same formulas, in places summed in another order.
func TestViewOpsMatchTorchvision(t *testing.T) {
	blob, err := os.ReadFile(filepath.Join("testdata", "view_goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			Name string
			C    int
			Want []float64
		}
	}
	if err := json.Unmarshal(blob, &g); err != nil {
		t.Fatal(err)
	}
	w := &worker{y0: make([]int, 4), y1: make([]int, 4), x0: make([]int, 5), x1: make([]int, 5),
		ly: make([]float32, 4), lx: make([]float32, 5)}
	ops := map[string]func(img []float32, c int) []float32{
		"brightness 1.3":       func(x []float32, c int) []float32 { brightness(x, 1.3); return x },
		"brightness 0.6":       func(x []float32, c int) []float32 { brightness(x, 0.6); return x },
		"contrast 0.6":         func(x []float32, c int) []float32 { contrast(x, c, 20, 0.6); return x },
		"contrast 1.4":         func(x []float32, c int) []float32 { contrast(x, c, 20, 1.4); return x },
		"saturation 1.4":       func(x []float32, c int) []float32 { saturation(x, 20, 1.4); return x },
		"saturation 0.3":       func(x []float32, c int) []float32 { saturation(x, 20, 0.3); return x },
		"hue 0.25":             func(x []float32, c int) []float32 { hue(x, 20, 0.25); return x },
		"hue -0.1":             func(x []float32, c int) []float32 { hue(x, 20, -0.1); return x },
		"hue 0.5":              func(x []float32, c int) []float32 { hue(x, 20, 0.5); return x },
		"grayscale":            func(x []float32, c int) []float32 { grayscale(x, 20); return x },
		"resized crop 1 0 3 4": func(x []float32, c int) []float32 { return resized(w, x, c, box{1, 0, 3, 4}) },
		"resized crop 0 2 2 2": func(x []float32, c int) []float32 { return resized(w, x, c, box{0, 2, 2, 2}) },
	}
	if len(g.Cases) != len(ops) {
		t.Fatalf("%d golden cases, %d ops", len(g.Cases), len(ops))
	}
	for _, tc := range g.Cases {
		op, ok := ops[tc.Name]
		if !ok {
			t.Fatalf("no op for golden %q", tc.Name)
		}
		got := op(viewImage(tc.C), tc.C)
		if len(got) != len(tc.Want) {
			t.Fatalf("%s: %d values, want %d", tc.Name, len(got), len(tc.Want))
		}
		for i := range got {
			if math.Abs(float64(got[i])-tc.Want[i]) > 2e-6 {
				t.Errorf("%s: value %d = %v, torchvision %v", tc.Name, i, got[i], tc.Want[i])
				break
			}
		}
	}
}

func resized(w *worker, x []float32, c int, b box) []float32 {
	out := make([]float32, len(x))
	w.resizeBox(out, x, c, 4, 5, b)
	return out
}

// TestViewOpsKnownValues: results a person can work out by hand.
func TestViewOpsKnownValues(t *testing.T) {
	near := func(what string, got, want float32) {
		t.Helper()
		if math.Abs(float64(got-want)) > 1e-6 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	x := []float32{0.8, 0.2, 0.6, 0.7}
	brightness(x, 0.5)
	near("brightness 0.5 of 0.8", x[0], 0.4)
	brightness(x, 3)
	near("brightness 3 of 0.4 (clamped)", x[0], 1)
	// Contrast 0 gives the mean grey everywhere; on one channel the plain mean.
	y := []float32{0.1, 0.3, 0.5, 0.7}
	contrast(y, 1, 4, 0)
	near("contrast 0", y[2], 0.4)
	// Pure red, green, blue: greyscale gives the luma weights themselves.
	rgb := []float32{1, 0, 0 /* R */, 0, 1, 0 /* G */, 0, 0, 1 /* B */}
	grayscale(rgb, 3)
	for c := range 3 {
		near("grey of red", rgb[c*3+0], 0.2989)
		near("grey of green", rgb[c*3+1], 0.587)
		near("grey of blue", rgb[c*3+2], 0.114)
	}
	// A hue shift of 1/3 turns red into green and green into blue; grey stays grey.
	px := []float32{1, 0, 0.5 /* R */, 0, 1, 0.5 /* G */, 0, 0, 0.5 /* B */}
	hue(px, 3, 1.0/3)
	for k, want := range []float32{0, 1, 0, 0, 0, 1, 0.5, 0.5, 0.5} {
		near("hue-shifted channel value", px[[]int{0, 3, 6, 1, 4, 7, 2, 5, 8}[k]], want)
	}
	// Saturation 0 is greyscale.
	s := []float32{1, 0, 0}
	saturation(s, 1, 0)
	near("saturation 0 of red", s[1], 0.2989)
	// A crop box covering the whole image resizes to the image itself; a 1×1 box to a constant.
	w := &worker{y0: make([]int, 4), y1: make([]int, 4), x0: make([]int, 5), x1: make([]int, 5),
		ly: make([]float32, 4), lx: make([]float32, 5)}
	img := viewImage(3)
	if got := resized(w, img, 3, box{0, 0, 4, 5}); !slices.Equal(got, img) {
		t.Errorf("full-box resize changed the image")
	}
	one := resized(w, img, 3, box{2, 3, 1, 1})
	for c := range 3 {
		for k := range 20 {
			if one[c*20+k] != img[c*20+2*5+3] {
				t.Fatalf("1×1 box of channel %d gives %v at %d, want pixel (2,3) = %v", c, one[c*20+k], k, img[c*20+13])
			}
		}
	}
}

// TestSampleBox: boxes respect the scale and ratio ranges up to rounding, cover many positions,
// and the centre-crop fallback takes over when no box can fit.
func TestSampleBox(t *testing.T) {
	r := newRand(1, 2)
	c := ResizedCrop{Scale: [2]float64{0.2, 1}, Ratio: [2]float64{3.0 / 4, 4.0 / 3}}
	tops := map[int]bool{}
	full := 0
	for range 2000 {
		b := sampleBox(r, 32, 32, c)
		if b.top < 0 || b.left < 0 || b.top+b.h > 32 || b.left+b.w > 32 || b.h < 1 || b.w < 1 {
			t.Fatalf("box %+v outside 32×32", b)
		}
		if b.h == 32 && b.w == 32 {
			full++
			continue // the fallback, or a draw near scale 1
		}
		if a := float64(b.h*b.w) / 1024; a < 0.2*0.85 || a > 1.0 {
			t.Fatalf("box %+v has area fraction %v", b, a)
		}
		if q := float64(b.w) / float64(b.h); q < 0.75*0.85 || q > 4.0/3/0.85 {
			t.Fatalf("box %+v has aspect %v", b, q)
		}
		tops[b.top] = true
	}
	if len(tops) < 20 || full > 200 {
		t.Errorf("%d distinct top rows, %d full boxes in 2000", len(tops), full)
	}
	// Ratio 2..3 at full area never fits a square image: centre crop of width 32, height 16.
	if b := sampleBox(r, 32, 32, ResizedCrop{Scale: [2]float64{1, 1}, Ratio: [2]float64{2, 3}}); b != (box{8, 0, 16, 32}) {
		t.Errorf("fallback box %+v, want {8 0 16 32}", b)
	}
	if b := sampleBox(r, 10, 40, ResizedCrop{Scale: [2]float64{1, 1}, Ratio: [2]float64{1, 2}}); b != (box{0, 10, 10, 20}) {
		t.Errorf("fallback on a wide image %+v, want {0 10 10 20}", b)
	}
}

func twoViewConfig() LoaderConfig {
	return LoaderConfig{BatchSize: 16, Workers: 1, Shuffle: true, Epochs: 2, Seed: 4, Views: 2,
		Augment: ContrastiveAugment(false)}
}

func sameViews(t *testing.T, what string, a, b Batch) {
	t.Helper()
	if len(a.Views) != len(b.Views) {
		t.Fatalf("%s: %d vs %d views", what, len(a.Views), len(b.Views))
	}
	for v := range a.Views {
		sameBatch(t, what, Batch{X: a.Views[v], Y: a.Y, Indices: a.Indices, Epoch: a.Epoch, Index: a.Index},
			Batch{X: b.Views[v], Y: b.Y, Indices: b.Indices, Epoch: b.Epoch, Index: b.Index})
	}
}

// TestTwoViewsDeterministic: every view is a function of (seed, epoch, batch, view): the stream
// with 1 or 3 workers, Get, and a resumed stream give the same pixels; the two views differ; view
// 0 is the single-view batch.
func TestTwoViewsDeterministic(t *testing.T) {
	d := synthetic(100, 3, 12, 12, 10, 11)
	cfg := twoViewConfig()
	ref := collect(t, NewLoader(d, cfg), Position{}, -1)
	if len(ref) != 14 || len(ref[0].Views) != 2 || &ref[0].X[0] != &ref[0].Views[0][0] {
		t.Fatalf("%d batches, %d views, X is view 0: %v", len(ref), len(ref[0].Views), &ref[0].X[0] == &ref[0].Views[0][0])
	}
	cfg.Workers = 3
	l := NewLoader(d, cfg)
	for i, b := range collect(t, l, Position{}, -1) {
		sameViews(t, "3 workers", ref[i], b)
		g, err := l.Get(b.Epoch, b.Index)
		if err != nil {
			t.Fatal(err)
		}
		sameViews(t, "Get", ref[i], g)
	}
	for _, k := range []int{0, 6, 9} {
		rest := collect(t, NewLoader(d, cfg), l.After(ref[k]), -1)
		if len(rest) != len(ref)-k-1 {
			t.Fatalf("resumed after %d: %d batches", k, len(rest))
		}
		for i, b := range rest {
			sameViews(t, "resumed", ref[k+1+i], b)
		}
	}
	for _, b := range ref {
		same := 0
		for i := range b.Views[0] {
			if b.Views[0][i] == b.Views[1][i] {
				same++
			}
		}
		if same > len(b.X)/10 {
			t.Fatalf("batch (%d,%d): views agree on %d of %d values", b.Epoch, b.Index, same, len(b.X))
		}
	}
	one := cfg
	one.Views = 0
	single := collect(t, NewLoader(d, one), Position{}, 3)
	for i := range single {
		sameBatch(t, "view 0 vs one view", single[i], Batch{X: ref[i].X, Y: ref[i].Y, Indices: ref[i].Indices, Epoch: ref[i].Epoch, Index: ref[i].Index})
	}
	cfg.Seed = 5
	if other := collect(t, NewLoader(d, cfg), Position{}, 1); slices.Equal(other[0].Views[1], ref[0].Views[1]) {
		t.Error("seed does not change view 1")
	}
}

// TestViewAugmentPerView: each view follows its own settings, here a plain view and a greyscale
// one; greyscale on every image leaves three equal channels.
func TestViewAugmentPerView(t *testing.T) {
	d := synthetic(20, 3, 8, 8, 4, 12)
	l := NewLoader(d, LoaderConfig{BatchSize: 10, Views: 2, ViewAugment: []Augment{{}, {Gray: 1, Flip: true}}})
	b, err := l.Get(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for j, idx := range b.Indices {
		for p, v := range d.Image(idx) {
			if want := float32(v)/127.5 - 1; math.Abs(float64(b.Views[0][j*192+p]-want)) > 1e-6 {
				t.Fatalf("plain view image %d pixel %d: %v, want %v", j, p, b.Views[0][j*192+p], want)
			}
		}
		g := b.Views[1][j*192 : (j+1)*192]
		for k := range 64 {
			if g[k] != g[64+k] || g[k] != g[128+k] {
				t.Fatalf("grey view image %d pixel %d: channels %v %v %v", j, k, g[k], g[64+k], g[128+k])
			}
		}
	}
	l.Recycle(b)
}

// TestGreyImagesColourNoOps: on 1-channel images saturation, hue and greyscale change nothing.
func TestGreyImagesColourNoOps(t *testing.T) {
	d := synthetic(16, 1, 6, 6, 2, 13)
	plain, err := NewLoader(d, LoaderConfig{BatchSize: 16}).Get(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	aug := Augment{Jitter: Jitter{Saturation: 0.9, Hue: 0.5, Prob: 1}, Gray: 1}
	b, err := NewLoader(d, LoaderConfig{BatchSize: 16, Augment: aug}).Get(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.X {
		if math.Abs(float64(b.X[i]-plain.X[i])) > 1e-6 {
			t.Fatalf("pixel %d: %v, unaugmented %v", i, b.X[i], plain.X[i])
		}
	}
	// Brightness does act on grey images.
	aug.Jitter.Brightness = 0.4
	b2, _ := NewLoader(d, LoaderConfig{BatchSize: 16, Augment: aug}).Get(0, 0)
	if slices.Equal(b2.X, plain.X) {
		t.Error("brightness jitter left grey images unchanged")
	}
}

func TestViewBadOptions(t *testing.T) {
	d := synthetic(10, 3, 4, 4, 2, 14)
	rc := ResizedCrop{Scale: [2]float64{0.2, 1}, Ratio: [2]float64{0.75, 4.0 / 3}}
	for _, tc := range []struct {
		cfg  LoaderConfig
		want string
	}{
		{LoaderConfig{Augment: Augment{ResizedCrop: ResizedCrop{Scale: [2]float64{0, 1}, Ratio: rc.Ratio}}}, "resized-crop scale 0..1"},
		{LoaderConfig{Augment: Augment{ResizedCrop: ResizedCrop{Scale: [2]float64{0.5, 1.2}, Ratio: rc.Ratio}}}, "resized-crop scale"},
		{LoaderConfig{Augment: Augment{ResizedCrop: ResizedCrop{Scale: rc.Scale, Ratio: [2]float64{2, 1}}}}, "resized-crop ratio 2..1"},
		{LoaderConfig{Augment: Augment{ResizedCrop: ResizedCrop{Scale: rc.Scale}}}, "resized-crop ratio 0..0"},
		{LoaderConfig{Augment: Augment{Jitter: Jitter{Brightness: -0.1}}}, "jitter brightness -0.1"},
		{LoaderConfig{Augment: Augment{Jitter: Jitter{Saturation: math.NaN()}}}, "jitter saturation NaN"},
		{LoaderConfig{Augment: Augment{Jitter: Jitter{Hue: 0.6}}}, "jitter hue 0.6"},
		{LoaderConfig{Augment: Augment{Jitter: Jitter{Prob: 1.5}}}, "jitter probability 1.5"},
		{LoaderConfig{Augment: Augment{Gray: -1}}, "greyscale probability -1"},
		{LoaderConfig{Views: 2, ViewAugment: []Augment{{}}}, "1 view augmentations for 2 views"},
		{LoaderConfig{Views: 2, ViewAugment: []Augment{{}, {Crop: -2}}}, "view 1 augment: crop padding -2"},
	} {
		tc.cfg.BatchSize = 2
		err := NewLoader(d, tc.cfg).Err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	two := &Dataset{Name: "two", N: 2, C: 2, H: 2, W: 2, Classes: []string{"a"}, Labels: make([]int64, 2), Images: make([]uint8, 16)}
	if err := NewLoader(two, LoaderConfig{BatchSize: 1, Augment: Augment{Gray: 0.5}}).Err(); err == nil || !strings.Contains(err.Error(), "1 or 3 channels") {
		t.Errorf("greyscale on 2 channels: %v", err)
	}
}

// TestTwoViewRecycle: both views' buffers go back to the pool and later batches are unchanged.
func TestTwoViewRecycle(t *testing.T) {
	d := synthetic(40, 3, 6, 6, 2, 15)
	cfg := LoaderConfig{BatchSize: 8, Epochs: 2, Workers: 2, Shuffle: true, Seed: 1, Views: 2, Augment: ContrastiveAugment(false)}
	ref := collect(t, NewLoader(d, cfg), Position{}, -1)
	l := NewLoader(d, cfg)
	i := 0
	for b := range l.Start(context.Background(), Position{}) {
		sameViews(t, "with recycling", ref[i], b)
		l.Recycle(b)
		i++
	}
	if i != 10 {
		t.Fatalf("%d batches", i)
	}
}
