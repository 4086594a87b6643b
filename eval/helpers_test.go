package eval

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/plot/vg"
)

// synthLogits makes an over-confident classifier's logits: the true class gets a boost of
// `margin` on average, so accuracy and confidence are realistic but not equal.
func synthLogits(rng *rand.Rand, n, c int, margin, scale float64) (Logits, []int64) {
	data := make([]float32, n*c)
	labels := make([]int64, n)
	for i := range n {
		y := rng.IntN(c)
		labels[i] = int64(y)
		for j := range c {
			v := rng.NormFloat64()
			if j == y {
				v += margin + 0.8*rng.NormFloat64()
			}
			data[i*c+j] = float32(scale * v)
		}
	}
	l, err := NewLogits(data, n, c)
	if err != nil {
		panic(err)
	}
	return l, labels
}

// keepPNG writes b to $EVAL_PLOT_DIR/name when that variable is set, to look at the figures.
func keepPNG(t *testing.T, name string, b []byte) {
	if dir := os.Getenv("EVAL_PLOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPNG decodes b and checks it has the expected size and real content: several distinct
// colours, including at least one strongly coloured pixel (a data mark, not just axes and text).
func checkPNG(t *testing.T, what string, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	r := img.Bounds()
	wantW, wantH := int(math.Round(float64(FigureWidth/vg.Inch)*FigureDPI)), int(math.Round(float64(FigureHeight/vg.Inch)*FigureDPI))
	if r.Dx() != wantW || r.Dy() != wantH {
		t.Errorf("%s: size %dx%d, want %dx%d", what, r.Dx(), r.Dy(), wantW, wantH)
	}
	colours := map[[3]uint32]bool{}
	saturated := 0
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			colours[[3]uint32{cr >> 8, cg >> 8, cb >> 8}] = true
			if max(cr, cg, cb)-min(cr, cg, cb) > 0x6000 {
				saturated++
			}
		}
	}
	if len(colours) < 20 || saturated < 200 {
		t.Errorf("%s: looks blank (%d colours, %d coloured pixels)", what, len(colours), saturated)
	}
	return img
}

func mustNoErr(t *testing.T, err error, what ...any) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Sprint(what...), err)
	}
}
