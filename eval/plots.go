package eval

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	stdfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Default figure size: 6.4×4.4 in at 150 dpi, 960×660 pixels, legible when shrunk into a report.
const (
	FigureWidth  = 6.4 * vg.Inch
	FigureHeight = 4.4 * vg.Inch
	FigureDPI    = 150
)

// palette is matplotlib's tab10, so figures look familiar next to the paper's.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

func paletteColor(i int) color.RGBA { return palette[i%len(palette)] }

func withAlpha(c color.RGBA, a uint8) color.NRGBA { return color.NRGBA{c.R, c.G, c.B, a} }

// sans switches a text style to the sans-serif face of the bundled Liberation fonts.
func sans(st *text.Style, size float64) {
	st.Font.Typeface = "Liberation"
	st.Font.Variant = "Sans"
	st.Font.Size = vg.Points(size)
}

// figure is a plot with its legend, which is drawn by the package rather than by gonum's Legend so
// that it gets a background box and can sit in any corner.
type figure struct {
	*plot.Plot
	legend *boxedLegend
}

// newPlot returns a plot in the house style: sans-serif text, light grid, muted axes.
func newPlot(title, xLabel, yLabel string) figure {
	p := plot.New()
	p.Title.Text = title
	sans(&p.Title.TextStyle, 13.5)
	p.Title.Padding = vg.Points(10)
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		sans(&a.Label.TextStyle, 11)
		sans(&a.Tick.Label, 9.5)
		a.Color = color.Gray{110}
		a.Tick.Color = color.Gray{110}
		a.Tick.Label.Color = color.Gray{40}
		a.Padding = vg.Points(3)
		a.Tick.Marker = niceTicks{}
	}
	g := plotter.NewGrid()
	g.Vertical.Color = color.Gray{228}
	g.Horizontal.Color = color.Gray{228}
	g.Vertical.Width = vg.Points(0.6)
	g.Horizontal.Width = vg.Points(0.6)
	p.Add(g)
	l := &boxedLegend{Top: true, Style: p.Legend.TextStyle}
	sans(&l.Style, 9.5)
	return figure{Plot: p, legend: l}
}

// finish adds the legend last, so it is drawn over the data.
func (f figure) finish() *plot.Plot {
	if len(f.legend.entries) > 0 {
		f.Plot.Add(f.legend)
	}
	return f.Plot
}

func (f figure) addLegend(name string, thumbs ...plot.Thumbnailer) {
	f.legend.entries = append(f.legend.entries, legendEntry{name, thumbs})
}

type legendEntry struct {
	text   string
	thumbs []plot.Thumbnailer
}

// boxedLegend draws legend entries on a translucent white box in one corner of the data area.
type boxedLegend struct {
	entries   []legendEntry
	Top, Left bool
	Style     text.Style
}

func (l *boxedLegend) Plot(c draw.Canvas, _ *plot.Plot) {
	const pad, gap, margin = 6, 5, 8
	thumbW := vg.Points(20)
	rowH := l.Style.FontExtents().Height * 1.3
	var textW vg.Length
	for _, e := range l.entries {
		textW = max(textW, l.Style.Width(e.text))
	}
	w := vg.Points(2*pad+gap) + thumbW + textW
	h := vg.Points(2*pad) + rowH*vg.Length(len(l.entries))
	x0 := c.Max.X - vg.Points(margin) - w
	if l.Left {
		x0 = c.Min.X + vg.Points(margin)
	}
	y1 := c.Max.Y - vg.Points(margin)
	if !l.Top {
		y1 = c.Min.Y + vg.Points(margin) + h
	}
	rect := vg.Rectangle{Min: vg.Point{X: x0, Y: y1 - h}, Max: vg.Point{X: x0 + w, Y: y1}}
	c.SetColor(color.NRGBA{255, 255, 255, 225})
	c.Fill(rect.Path())
	c.SetLineStyle(draw.LineStyle{Color: color.Gray{185}, Width: vg.Points(0.6)})
	c.Stroke(rect.Path())
	sty := l.Style
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YCenter
	for i, e := range l.entries {
		top := y1 - vg.Points(pad) - rowH*vg.Length(i)
		icon := &draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: x0 + vg.Points(pad), Y: top - rowH + rowH*0.15},
			Max: vg.Point{X: x0 + vg.Points(pad) + thumbW, Y: top - rowH*0.15},
		}}
		for _, th := range e.thumbs {
			th.Thumbnail(icon)
		}
		c.FillText(sty, vg.Point{X: x0 + vg.Points(pad+gap) + thumbW, Y: top - rowH/2}, e.text)
	}
}

// RenderPNG draws p into a PNG of the given size and resolution.
func RenderPNG(p *plot.Plot, w, h vg.Length, dpi int) ([]byte, error) {
	c := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// SavePNG renders p at the default figure size into path.
func SavePNG(p *plot.Plot, path string) error {
	b, err := RenderPNG(p, FigureWidth, FigureHeight, FigureDPI)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing plot: %w", err)
	}
	return nil
}

// ScoreHistogramPlot overlays the normalised score densities of each set in h, like the paper's
// Figure 1. Set 0 is drawn first (the in-distribution set by convention). Pass a NaN auroc to
// leave it out of the title.
func ScoreHistogramPlot(h *Histograms, scoreName string, auroc float64) (*plot.Plot, error) {
	if h == nil || len(h.Sets) == 0 {
		return nil, fmt.Errorf("score histogram: no sets")
	}
	names := make([]string, len(h.Sets))
	for i, s := range h.Sets {
		names[i] = s.Name
	}
	title := fmt.Sprintf("%s: %s", scoreName, strings.Join(names, " vs "))
	if !math.IsNaN(auroc) {
		title += fmt.Sprintf("  (AUROC %.3f)", auroc)
	}
	p := newPlot(title, scoreName, "density")
	for i := range h.Sets {
		d := h.Density(i)
		bins := make([]plotter.HistogramBin, len(d))
		for b := range d {
			bins[b] = plotter.HistogramBin{Min: h.Edges[b], Max: h.Edges[b+1], Weight: d[b]}
		}
		c := paletteColor(i)
		hp := &plotter.Histogram{Bins: bins, Width: h.Edges[1] - h.Edges[0], FillColor: withAlpha(c, 110)}
		hp.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(0.8)}
		p.Add(hp)
		p.addLegend(fmt.Sprintf("%s (n=%d)", h.Sets[i].Name, h.Sets[i].Total), hp)
	}
	p.Y.Min = 0
	return p.finish(), nil
}

// niceTicks places about five major ticks at 1, 2, 2.5 or 5 × 10^k and labels them without
// trailing zeros; gonum's default sometimes labels only two ticks, with needless decimals.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []plot.Tick
	first := math.Ceil(lo/step-1e-9) * step
	for v := first; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: formatTick(v, step)})
		// Minor ticks halfway, unlabelled.
		if m := v + step/2; m <= hi {
			ticks = append(ticks, plot.Tick{Value: m})
		}
	}
	if m := first - step/2; m >= lo {
		ticks = append(ticks, plot.Tick{Value: m})
	}
	return ticks
}

func formatTick(v, step float64) string {
	if math.Abs(v) < step*1e-6 {
		return "0"
	}
	if a := math.Abs(v); a >= 1e5 || a < 1e-3 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	decimals := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	if step*math.Pow(10, float64(decimals)) != math.Trunc(step*math.Pow(10, float64(decimals))) {
		decimals++ // 2.5 × 10^k steps need one more digit
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// unitTicks labels [0, 1] every 0.2 with minor ticks every 0.1.
var unitTicks = plot.ConstantTicks(func() []plot.Tick {
	var t []plot.Tick
	for i := 0; i <= 10; i++ {
		v := float64(i) / 10
		label := ""
		if i%2 == 0 {
			label = fmt.Sprintf("%.1f", v)
		}
		t = append(t, plot.Tick{Value: v, Label: label})
	}
	return t
}())

// box returns a filled rectangle in data coordinates.
func box(x0, x1, y0, y1 float64, fill color.Color, line draw.LineStyle) (*plotter.Polygon, error) {
	poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	if err != nil {
		return nil, err
	}
	poly.Color = fill
	poly.LineStyle = line
	return poly, nil
}

// ReliabilityPlot draws a reliability diagram like the paper's Figure 2: per confidence bin, a bar
// of the bin's accuracy and a translucent red bar spanning the gap to its mean confidence, against
// the diagonal of perfect calibration, with accuracy and ECE printed on the plot.
func ReliabilityPlot(c Calibration, title string) (*plot.Plot, error) {
	if len(c.Bins) == 0 {
		return nil, fmt.Errorf("reliability diagram: no bins")
	}
	if title == "" {
		title = "Reliability diagram"
	}
	p := newPlot(title, "confidence", "accuracy")
	blue := paletteColor(0)
	red := paletteColor(3)
	edge := draw.LineStyle{Color: color.RGBA{20, 60, 110, 255}, Width: vg.Points(0.6)}
	gapLine := draw.LineStyle{Color: withAlpha(red, 200), Width: vg.Points(0.6)}
	var outputs, gap *plotter.Polygon
	for _, b := range c.Bins {
		if b.Count == 0 {
			continue
		}
		bar, err := box(b.Lo, b.Hi, 0, b.Accuracy, withAlpha(blue, 230), edge)
		if err != nil {
			return nil, err
		}
		p.Add(bar)
		outputs = bar
		lo, hi := min(b.Accuracy, b.Confidence), max(b.Accuracy, b.Confidence)
		g, err := box(b.Lo, b.Hi, lo, hi, withAlpha(red, 80), gapLine)
		if err != nil {
			return nil, err
		}
		p.Add(g)
		gap = g
	}
	diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return nil, err
	}
	diag.LineStyle = draw.LineStyle{Color: color.Gray{60}, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(5), vg.Points(3)}}
	p.Add(diag)
	p.legend.Left = true
	p.addLegend("perfect calibration", diag)
	if outputs != nil {
		p.addLegend("accuracy", outputs)
		p.addLegend("gap to confidence", gap)
	}
	// The summary sits bottom right, where an over-confident model's bars leave room.
	note, err := box(0.56, 0.985, 0.035, 0.135, color.NRGBA{255, 255, 255, 235}, draw.LineStyle{Color: color.Gray{150}, Width: vg.Points(0.6)})
	if err != nil {
		return nil, err
	}
	p.Add(note)
	lbl, err := plotter.NewLabels(plotter.XYLabels{
		XYs:    []plotter.XY{{X: 0.7725, Y: 0.085}},
		Labels: []string{fmt.Sprintf("ACC %.1f%%   ECE %.2f%%", 100*c.Accuracy, 100*c.ECE)},
	})
	if err != nil {
		return nil, err
	}
	for i := range lbl.TextStyle {
		sans(&lbl.TextStyle[i], 12.5)
		lbl.TextStyle[i].Font.Weight = stdfont.WeightBold
		lbl.TextStyle[i].XAlign = draw.XCenter
		lbl.TextStyle[i].YAlign = draw.YCenter
	}
	p.Add(lbl)
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.X.Tick.Marker, p.Y.Tick.Marker = unitTicks, unitTicks
	return p.finish(), nil
}

func robustnessSeriesName(r RobustnessRow, multiModel, multiSteps bool) string {
	var parts []string
	if multiModel || r.Model != "" {
		parts = append(parts, cmp.Or(r.Model, "model"))
	}
	if multiSteps || r.Model == "" {
		parts = append(parts, fmt.Sprintf("PGD-%d", r.Steps))
	}
	return strings.Join(parts, ", ")
}

// RobustnessPlot draws accuracy against ε for the rows of one norm, one line per model and steps
// setting, like the paper's Figure 4.
func RobustnessPlot(rows []RobustnessRow, norm string) (*plot.Plot, error) {
	var sel []RobustnessRow
	for _, r := range rows {
		if r.Norm == norm {
			sel = append(sel, r)
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("robustness plot: no rows for norm %q", norm)
	}
	sel = sortRobustness(sel)
	models, steps := map[string]bool{}, map[int]bool{}
	for _, r := range sel {
		models[r.Model], steps[r.Steps] = true, true
	}
	normName := map[string]string{"linf": "L∞", "l2": "L2"}[norm]
	if normName == "" {
		normName = norm
	}
	p := newPlot(fmt.Sprintf("PGD robustness (%s)", normName), fmt.Sprintf("ε (%s)", normName), "accuracy (%)")
	// With several models and several step counts, colour says the model and the line pattern
	// and marker say the steps, so one model's curves read as a family.
	var modelOrder []string
	var stepOrder []int
	for _, r := range sel {
		if !slices.Contains(modelOrder, r.Model) {
			modelOrder = append(modelOrder, r.Model)
		}
		if !slices.Contains(stepOrder, r.Steps) {
			stepOrder = append(stepOrder, r.Steps)
		}
	}
	slices.Sort(stepOrder)
	type seriesKey struct {
		model string
		steps int
	}
	var order []seriesKey
	series := map[seriesKey]plotter.XYs{}
	for _, r := range sel {
		k := seriesKey{r.Model, r.Steps}
		if _, ok := series[k]; !ok {
			order = append(order, k)
		}
		series[k] = append(series[k], plotter.XY{X: r.Eps, Y: 100 * r.Accuracy})
	}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}}
	dashes := [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}
	for i, k := range order {
		name := robustnessSeriesName(RobustnessRow{Model: k.model, Steps: k.steps}, len(models) > 1, len(steps) > 1)
		l, s, err := plotter.NewLinePoints(series[k])
		if err != nil {
			return nil, fmt.Errorf("robustness plot, series %s: %w", name, err)
		}
		ci, si := i, 0
		if len(models) > 1 {
			ci, si = slices.Index(modelOrder, k.model), slices.Index(stepOrder, k.steps)
		}
		c := paletteColor(ci)
		l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.8), Dashes: dashes[si%len(dashes)]}
		s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(3.2), Shape: shapes[(ci+si)%len(shapes)]}
		p.Add(l, s)
		p.addLegend(name, l, s)
	}
	p.Y.Min, p.Y.Max = 0, 100
	p.X.Min = 0
	return p.finish(), nil
}

// movingAverage smooths noisy per-step losses; the window is centred and shrinks at the ends.
func movingAverage(y []float64, window int) []float64 {
	out := make([]float64, len(y))
	half := window / 2
	for i := range y {
		lo, hi := max(0, i-half), min(len(y), i+half+1)
		var s float64
		for _, v := range y[lo:hi] {
			s += v
		}
		out[i] = s / float64(hi-lo)
	}
	return out
}

// TrainingPlots returns one plot per group of fields in the log: losses, accuracies (in %), and the
// learning rate and throughput when logged. Noisy per-step curves get a smoothed overlay.
func TrainingPlots(t *TrainingLog) ([]*plot.Plot, error) {
	if t == nil || len(t.Records) == 0 {
		return nil, fmt.Errorf("training plots: no records")
	}
	xLabel := cmp.Or(t.XKey(), "record")
	type group struct {
		title, yLabel string
		keys          []string
		scale         float64
	}
	groups := []group{
		{"Training losses", "loss", t.LossKeys(), 1},
		{"Accuracy", "accuracy (%)", t.AccuracyKeys(), 100},
	}
	for _, k := range []string{"logit_norm", "lr", "img_per_s"} {
		if t.Has(k) {
			title := map[string]string{"logit_norm": "Mean logit norm", "lr": "Learning rate", "img_per_s": "Throughput"}[k]
			yl := map[string]string{"logit_norm": "mean ‖f(x)‖₂", "lr": "learning rate", "img_per_s": "images / s"}[k]
			groups = append(groups, group{title, yl, []string{k}, 1})
		}
	}
	var plots []*plot.Plot
	for _, g := range groups {
		if len(g.keys) == 0 {
			continue
		}
		p := newPlot(g.title, xLabel, g.yLabel)
		xMin := math.Inf(1)
		for i, k := range g.keys {
			x, y := t.Series(k)
			if len(x) == 0 {
				continue
			}
			xMin = min(xMin, slices.Min(x))
			c := paletteColor(i)
			pts := make(plotter.XYs, len(x))
			for j := range x {
				pts[j] = plotter.XY{X: x[j], Y: g.scale * y[j]}
			}
			raw, err := plotter.NewLine(pts)
			if err != nil {
				return nil, fmt.Errorf("training plot %s: %w", k, err)
			}
			if len(pts) > 60 {
				raw.LineStyle = draw.LineStyle{Color: withAlpha(c, 70), Width: vg.Points(0.8)}
				sm := movingAverage(y, max(5, len(y)/40))
				spts := make(plotter.XYs, len(x))
				for j := range x {
					spts[j] = plotter.XY{X: x[j], Y: g.scale * sm[j]}
				}
				smooth, err := plotter.NewLine(spts)
				if err != nil {
					return nil, fmt.Errorf("training plot %s: %w", k, err)
				}
				smooth.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.8)}
				p.Add(raw, smooth)
				p.addLegend(k, smooth)
			} else {
				raw.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.8)}
				s, err := plotter.NewScatter(pts)
				if err != nil {
					return nil, fmt.Errorf("training plot %s: %w", k, err)
				}
				s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.2), Shape: draw.CircleGlyph{}}
				p.Add(raw, s)
				p.addLegend(k, raw, s)
			}
		}
		if g.scale == 100 {
			// Accuracy rises, so its legend goes where the curve is not.
			p.legend.Top = false
			p.Y.Max = min(p.Y.Max, 100)
		}
		if xMin >= 0 {
			p.X.Min = 0 // steps and epochs read better from zero
		}
		plots = append(plots, p.finish())
	}
	if len(plots) == 0 {
		return nil, fmt.Errorf("training plots: %s has no loss, accuracy, lr or img_per_s fields (has %s)", t.Source, strings.Join(slices.Clone(t.Keys), ", "))
	}
	return plots, nil
}
