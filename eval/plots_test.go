package eval

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestScoreHistogramPlot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in, _ := synthLogits(rng, 3000, 10, 4, 1)
	out, _ := synthLogits(rng, 2000, 10, 1.5, 1)
	sin, err := LogQX(in)
	mustNoErr(t, err)
	sout, err := LogQX(out)
	mustNoErr(t, err)
	m, err := OOD(sin, sout)
	mustNoErr(t, err)
	h, err := NewHistograms(50, NamedScores{"CIFAR-10", sin}, NamedScores{"SVHN", sout})
	mustNoErr(t, err)
	p, err := ScoreHistogramPlot(h, "log q(x)", m.AUROC)
	mustNoErr(t, err)
	if !strings.Contains(p.Title.Text, "AUROC 0.") {
		t.Errorf("title %q lacks the AUROC", p.Title.Text)
	}
	b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
	mustNoErr(t, err)
	checkPNG(t, "histogram", b)
	keepPNG(t, "hist.png", b)
}

func TestReliabilityPlot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l, y := synthLogits(rng, 5000, 100, 2.6, 2.8)
	c, err := Calibrate(l, y, DefaultCalibrationBins)
	mustNoErr(t, err)
	p, err := ReliabilityPlot(c, "CIFAR-100, HDGE")
	mustNoErr(t, err)
	b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
	mustNoErr(t, err)
	img := checkPNG(t, "reliability", b)
	// Bars are tab10 blue: find some.
	r := img.Bounds()
	blue := 0
	for yy := r.Min.Y; yy < r.Max.Y; yy += 3 {
		for x := r.Min.X; x < r.Max.X; x += 3 {
			cr, cg, cb, _ := img.At(x, yy).RGBA()
			if cb>>8 > 150 && cr>>8 < 80 && cg>>8 > 90 && cg>>8 < 150 {
				blue++
			}
		}
	}
	if blue < 500 {
		t.Errorf("reliability diagram has only %d bar pixels", blue)
	}
	keepPNG(t, "reliability.png", b)
	if _, err := ReliabilityPlot(Calibration{}, ""); err == nil {
		t.Error("empty calibration accepted")
	}
}

func TestRobustnessPlot(t *testing.T) {
	var rows []RobustnessRow
	for _, model := range []string{"CE", "JEM", "HDGE"} {
		for _, steps := range []int{10, 40} {
			for _, eps := range []float64{0, 2, 4, 8, 12, 16, 24, 32} {
				base := map[string]float64{"CE": 0.94, "JEM": 0.92, "HDGE": 0.95}[model]
				decay := map[string]float64{"CE": 0.35, "JEM": 0.08, "HDGE": 0.12}[model]
				acc := base * math.Exp(-decay*eps*(1+0.002*float64(steps)))
				rows = append(rows, RobustnessRow{Model: model, Norm: "linf", Eps: eps, Steps: steps, Accuracy: acc})
				rows = append(rows, RobustnessRow{Model: model, Norm: "l2", Eps: eps * 25, Steps: steps, Accuracy: acc})
			}
		}
	}
	if w := CheckRobustness(rows, nil, 0); len(w) != 0 {
		t.Errorf("consistent rows warned: %v", w)
	}
	for _, norm := range []string{"linf", "l2"} {
		p, err := RobustnessPlot(rows, norm)
		mustNoErr(t, err)
		b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
		mustNoErr(t, err)
		checkPNG(t, "robustness "+norm, b)
		keepPNG(t, "robust_"+norm+".png", b)
	}
	if _, err := RobustnessPlot(rows, "l1"); err == nil {
		t.Error("plot for a norm without rows")
	}
}

func TestTrainingPlots(t *testing.T) {
	log := synthTrainingLog(t, 400)
	plots, err := TrainingPlots(log)
	mustNoErr(t, err)
	if len(plots) != 4 {
		t.Fatalf("%d training plots, want loss, accuracy, lr, throughput", len(plots))
	}
	for i, p := range plots {
		b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
		mustNoErr(t, err)
		checkPNG(t, p.Title.Text, b)
		keepPNG(t, "train"+string(rune('0'+i))+".png", b)
	}
}
