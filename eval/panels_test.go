package eval

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// pixelOf maps a data point of p, drawn at the default figure size, to its pixel.
func pixelOf(p *plot.Plot, x, y float64) image.Point {
	c := vgimg.NewWith(vgimg.UseWH(FigureWidth, FigureHeight), vgimg.UseDPI(FigureDPI))
	da := p.DataCanvas(draw.New(c))
	pt := vg.Point{X: da.X(p.X.Norm(x)), Y: da.Y(p.Y.Norm(y))}
	px := func(l vg.Length) float64 { return float64(l) / float64(vg.Inch) * FigureDPI }
	return image.Point{X: int(math.Round(px(pt.X))), Y: int(math.Round(px(FigureHeight) - px(pt.Y)))}
}

func near(a, b color.Color, tol int) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	d := func(x, y uint32) int { return int(x>>8) - int(y>>8) }
	return abs(d(ar, br)) <= tol && abs(d(ag, bg)) <= tol && abs(d(ab, bb)) <= tol
}

func abs(x int) int { return max(x, -x) }

// countNear counts the pixels of colour c within r pixels of at.
func countNear(img image.Image, at image.Point, r int, c color.Color, tol int) int {
	n := 0
	for y := at.Y - r; y <= at.Y+r; y++ {
		for x := at.X - r; x <= at.X+r; x++ {
			if near(img.At(x, y), c, tol) {
				n++
			}
		}
	}
	return n
}

// onWhite is colour c at alpha a over white, as a translucent band is drawn.
func onWhite(c color.RGBA, a uint8) color.RGBA {
	mix := func(v uint8) uint8 { return uint8(255 - (255-int(v))*int(a)/255) }
	return color.RGBA{mix(c.R), mix(c.G), mix(c.B), 255}
}

func TestRobustnessComparePlot(t *testing.T) {
	eps := []float64{0, 4.0 / 255, 8.0 / 255, 16.0 / 255}
	two := RobustnessCurve{Name: "hdge (2 seeds)", Steps: 10, Colour: 0}
	one := RobustnessCurve{Name: "ce (1 seed)", Steps: 10, Colour: 3}
	for i, e := range eps {
		two.Points = append(two.Points, RobustnessPoint{Eps: e, Accuracy: []float64{0.9, 0.6, 0.35, 0.1}[i], Std: []float64{0.02, 0.08, 0.08, 0.05}[i], N: 2})
		one.Points = append(one.Points, RobustnessPoint{Eps: e, Accuracy: []float64{0.92, 0.3, 0.1, 0.02}[i], Std: math.NaN(), N: 1})
	}
	p, err := RobustnessComparePlot([]RobustnessCurve{two, one}, "linf")
	mustNoErr(t, err)
	b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
	mustNoErr(t, err)
	img := checkPNG(t, "robustness comparison", b)
	keepPNG(t, "robust_compare.png", b)

	blue, red := paletteColor(0), paletteColor(3)
	for _, c := range []struct {
		curve RobustnessCurve
		col   color.RGBA
	}{{two, blue}, {one, red}} {
		for _, pt := range c.curve.Points {
			at := pixelOf(p, pt.Eps, 100*pt.Accuracy)
			if n := countNear(img, at, 4, c.col, 40); n < 8 {
				t.Errorf("%s at ε=%.4f, %.0f%%: %d pixels of its colour near pixel %v", c.curve.Name, pt.Eps, 100*pt.Accuracy, n, at)
			}
		}
	}
	// Between two points, 5 points above the mean, the two-seed curve's ±1 std band shows; the
	// one-seed curve has none.
	mid := 6.0 / 255
	if at := pixelOf(p, mid, 100*(0.6+0.35)/2+5); !near(img.At(at.X, at.Y), onWhite(blue, 55), 12) {
		t.Errorf("no band of ±1 std at pixel %v: colour %v, want about %v", at, img.At(at.X, at.Y), onWhite(blue, 55))
	}
	if at := pixelOf(p, mid, 100*(0.3+0.1)/2+5); !near(img.At(at.X, at.Y), color.White, 8) {
		t.Errorf("the one-seed curve has a band at pixel %v: colour %v", at, img.At(at.X, at.Y))
	}
	// The legend, top right where the curves have fallen low, names both in their colours.
	corner := pixelOf(p, 16.0/255, 100)
	legendBlue, legendRed := 0, 0
	for y := corner.Y; y < corner.Y+90; y++ {
		for x := corner.X - 260; x < corner.X; x++ {
			legendBlue += countNear(img, image.Point{X: x, Y: y}, 0, blue, 30)
			legendRed += countNear(img, image.Point{X: x, Y: y}, 0, red, 30)
		}
	}
	if legendBlue < 20 || legendRed < 20 {
		t.Errorf("legend corner holds %d blue and %d red pixels", legendBlue, legendRed)
	}
	if got := p.X.Tick.Marker.Ticks(0, 16.0/255); len(got) == 0 || got[len(got)-1].Label == "" || got[0].Label != "0" {
		t.Errorf("ε ticks %+v", got)
	} else if l := got[1].Label; l != "" && l[len(l)-4:] != "/255" {
		t.Errorf("L∞ ticks labelled %q, want k/255", l)
	}

	// One ε with two seeds: an error bar instead of a band.
	single := RobustnessCurve{Name: "jem", Colour: 2, Points: []RobustnessPoint{{Eps: 0.5, Accuracy: 0.4, Std: 0.1, N: 2}}}
	p, err = RobustnessComparePlot([]RobustnessCurve{single}, "l2")
	mustNoErr(t, err)
	b, err = RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
	mustNoErr(t, err)
	img, _ = png.Decode(bytes.NewReader(b))
	if at := pixelOf(p, 0.5, 46); countNear(img, at, 2, paletteColor(2), 40) == 0 {
		t.Errorf("no error bar above the single point at pixel %v", at)
	}

	if _, err := RobustnessComparePlot(nil, "linf"); err == nil {
		t.Error("no curves accepted")
	}
	if _, err := RobustnessComparePlot([]RobustnessCurve{{Name: "x"}}, "linf"); err == nil {
		t.Error("a curve without points accepted")
	}
}

func TestPanelColumns(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 3, 4: 2, 5: 3, 6: 3, 7: 3, 8: 3, 9: 3, 10: 3} {
		if got := PanelColumns(n); got != want {
			t.Errorf("PanelColumns(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestRenderPanels: four reliability diagrams make a 2×2 grid of default-sized panels, each with
// its bars; five make 3 + 2 with the last cell blank.
func TestRenderPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var plots []*plot.Plot
	for i := range 5 {
		l, y := synthLogits(rng, 2000, 10, 1.5+float64(i), 1.5)
		c, err := Calibrate(l, y, DefaultCalibrationBins)
		mustNoErr(t, err)
		p, err := ReliabilityPlot(c, "")
		mustNoErr(t, err)
		plots = append(plots, p)
	}
	pw, ph := int(math.Round(float64(FigureWidth/vg.Inch)*FigureDPI)), int(math.Round(float64(FigureHeight/vg.Inch)*FigureDPI))
	barPixels := func(img image.Image, r image.Rectangle) int {
		n := 0
		for y := r.Min.Y; y < r.Max.Y; y += 3 {
			for x := r.Min.X; x < r.Max.X; x += 3 {
				if near(img.At(x, y), onWhite(paletteColor(0), 230), 25) {
					n++
				}
			}
		}
		return n
	}
	for _, tc := range []struct{ n, cols, rows int }{{4, 2, 2}, {5, 3, 2}} {
		b, err := RenderPanels(plots[:tc.n], PanelColumns(tc.n), FigureWidth, FigureHeight, FigureDPI)
		mustNoErr(t, err)
		img, err := png.Decode(bytes.NewReader(b))
		mustNoErr(t, err)
		keepPNG(t, "panels.png", b)
		if r := img.Bounds(); r.Dx() != tc.cols*pw || r.Dy() != tc.rows*ph {
			t.Fatalf("%d panels: %dx%d pixels, want %dx%d", tc.n, r.Dx(), r.Dy(), tc.cols*pw, tc.rows*ph)
		}
		for i := range tc.cols * tc.rows {
			cell := image.Rect(i%tc.cols*pw, i/tc.cols*ph, (i%tc.cols+1)*pw, (i/tc.cols+1)*ph)
			n := barPixels(img, cell)
			if i < tc.n && n < 300 {
				t.Errorf("%d panels: panel %d has %d bar pixels", tc.n, i, n)
			}
			if i >= tc.n && n != 0 {
				t.Errorf("%d panels: empty cell %d has %d bar pixels", tc.n, i, n)
			}
		}
	}
	if _, err := RenderPanels(nil, 1, FigureWidth, FigureHeight, FigureDPI); err == nil {
		t.Error("no plots accepted")
	}
	if _, err := RenderPanels(plots, 0, FigureWidth, FigureHeight, FigureDPI); err == nil {
		t.Error("zero columns accepted")
	}
}

// TestPoolCalibration: the tables of two halves of a sample pool into the table of the whole.
func TestPoolCalibration(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	l, y := synthLogits(rng, 3000, 10, 2.5, 2)
	whole, err := Calibrate(l, y, DefaultCalibrationBins)
	mustNoErr(t, err)
	a, err := NewLogits(l.Data[:1200*l.C], 1200, l.C)
	mustNoErr(t, err)
	b, err := NewLogits(l.Data[1200*l.C:], 1800, l.C)
	mustNoErr(t, err)
	ca, err := Calibrate(a, y[:1200], DefaultCalibrationBins)
	mustNoErr(t, err)
	cb, err := Calibrate(b, y[1200:], DefaultCalibrationBins)
	mustNoErr(t, err)
	got, err := PoolCalibration(ca, cb)
	mustNoErr(t, err)
	eq := func(x, y float64) bool { return math.Abs(x-y) < 1e-12 }
	if got.N != whole.N || !eq(got.ECE, whole.ECE) || !eq(got.MCE, whole.MCE) || !eq(got.Accuracy, whole.Accuracy) ||
		!eq(got.Brier, whole.Brier) || !eq(got.NLL, whole.NLL) {
		t.Errorf("pooled %+v\nwhole  %+v", got, whole)
	}
	for i := range whole.Bins {
		g, w := got.Bins[i], whole.Bins[i]
		if g.Count != w.Count || !eq(g.Accuracy, w.Accuracy) || !eq(g.Confidence, w.Confidence) || g.Lo != w.Lo || g.Hi != w.Hi {
			t.Errorf("bin %d: pooled %+v, whole %+v", i, g, w)
		}
	}
	other, err := Calibrate(a, y[:1200], 10)
	mustNoErr(t, err)
	if _, err := PoolCalibration(ca, other); err == nil {
		t.Error("tables of 20 and 10 bins pooled")
	}
	if _, err := PoolCalibration(); err == nil {
		t.Error("nothing pooled without an error")
	}
}
