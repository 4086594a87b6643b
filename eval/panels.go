package eval

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// MaxPanelColumns bounds a row of panels: wider, a figure shrunk to a page's width makes each
// panel's text unreadable.
const MaxPanelColumns = 3

// PanelColumns is how many panels of n go in a row: all of them up to MaxPanelColumns, otherwise
// as few rows as that allows with the panels spread evenly over them (four make two rows of two,
// not three and one).
func PanelColumns(n int) int {
	if n <= MaxPanelColumns {
		return max(n, 1)
	}
	rows := (n + MaxPanelColumns - 1) / MaxPanelColumns
	return (n + rows - 1) / rows
}

// RenderPanels draws plots side by side, cols to a row and wrapping onto further rows, each panel
// w × h, into one PNG of cols·w × rows·h. The data areas of the panels are aligned, so a row reads
// as one figure. Cells past the last plot stay white.
func RenderPanels(plots []*plot.Plot, cols int, w, h vg.Length, dpi int) ([]byte, error) {
	if len(plots) == 0 {
		return nil, fmt.Errorf("panels: no plots")
	}
	if cols <= 0 {
		return nil, fmt.Errorf("panels: %d columns, want at least 1", cols)
	}
	cols = min(cols, len(plots))
	rows := (len(plots) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range cols {
			if i := r*cols + c; i < len(plots) {
				if plots[i] == nil {
					return nil, fmt.Errorf("panels: plot %d is nil", i)
				}
				grid[r][c] = plots[i]
			}
		}
	}
	W, H := w*vg.Length(cols), h*vg.Length(rows)
	img := vgimg.NewWith(vgimg.UseWH(W, H), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	pad := vg.Points(6)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: 2 * pad, PadY: 2 * pad, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c, p := range grid[r] {
			if p != nil {
				p.Draw(canvases[r][c])
			}
		}
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// RobustnessPoint is a model's accuracy (a fraction) at one ε, over N seeds; Std is the sample
// standard deviation over them, NaN with one seed.
type RobustnessPoint struct {
	Eps      float64
	Accuracy float64
	Std      float64
	N        int
}

// RobustnessCurve is one model's accuracy against ε under PGD of one norm and step count.
// Colour indexes the palette, so that a model keeps its colour in every figure of a comparison
// even when others are left out of one.
type RobustnessCurve struct {
	Name   string
	Steps  int
	Colour int
	Points []RobustnessPoint
}

// RobustnessComparePlot draws several models' robustness curves of one norm in one plot, like the
// paper's Figure 4: mean accuracy against ε, one line per curve, and where a point has two seeds
// or more a translucent band of ±1 standard deviation (an error bar for a curve of one point).
// With several step counts the line pattern says the steps.
func RobustnessComparePlot(curves []RobustnessCurve, norm string) (*plot.Plot, error) {
	if len(curves) == 0 {
		return nil, fmt.Errorf("robustness comparison (%s): no curves", norm)
	}
	var stepOrder []int
	for _, c := range curves {
		if len(c.Points) == 0 {
			return nil, fmt.Errorf("robustness comparison (%s): curve %q has no points", norm, c.Name)
		}
		if !slices.Contains(stepOrder, c.Steps) {
			stepOrder = append(stepOrder, c.Steps)
		}
	}
	slices.Sort(stepOrder)
	nt := NormTitle(norm)
	p := newPlot(fmt.Sprintf("PGD robustness (%s)", nt), fmt.Sprintf("ε (%s)", nt), "accuracy (%)")
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}}
	dashes := [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}}
	// Bands first, so that no band covers another curve's line.
	var lines []plot.Plotter
	for _, c := range curves {
		pts := slices.Clone(c.Points)
		slices.SortStableFunc(pts, func(a, b RobustnessPoint) int { return cmp.Compare(a.Eps, b.Eps) })
		col := paletteColor(c.Colour)
		si := slices.Index(stepOrder, c.Steps)
		xy := make(plotter.XYs, len(pts))
		spread := false
		for i, pt := range pts {
			if math.IsNaN(pt.Accuracy) || math.IsInf(pt.Accuracy, 0) || math.IsNaN(pt.Eps) || math.IsInf(pt.Eps, 0) {
				return nil, fmt.Errorf("robustness comparison (%s): curve %q has accuracy %v at ε %v", norm, c.Name, pt.Accuracy, pt.Eps)
			}
			xy[i] = plotter.XY{X: pt.Eps, Y: 100 * pt.Accuracy}
			spread = spread || (pt.N > 1 && pt.Std > 0)
		}
		std := func(pt RobustnessPoint) float64 {
			if pt.N > 1 && !math.IsNaN(pt.Std) {
				return 100 * pt.Std
			}
			return 0
		}
		if spread && len(pts) > 1 {
			band := make(plotter.XYs, 0, 2*len(pts))
			for _, pt := range pts {
				band = append(band, plotter.XY{X: pt.Eps, Y: min(100, 100*pt.Accuracy+std(pt))})
			}
			for i := len(pts) - 1; i >= 0; i-- {
				band = append(band, plotter.XY{X: pts[i].Eps, Y: max(0, 100*pts[i].Accuracy-std(pts[i]))})
			}
			poly, err := plotter.NewPolygon(band)
			if err != nil {
				return nil, fmt.Errorf("robustness comparison, band of %s: %w", c.Name, err)
			}
			poly.Color = withAlpha(col, 55)
			poly.LineStyle.Width = 0
			p.Add(poly)
		} else if spread {
			errs := make(plotter.YErrors, len(pts))
			for i, pt := range pts {
				errs[i].Low, errs[i].High = std(pt), std(pt)
			}
			eb := &plotter.YErrorBars{XYs: xy, YErrors: errs, LineStyle: draw.LineStyle{Color: col, Width: vg.Points(1.2)}, CapWidth: vg.Points(8)}
			lines = append(lines, eb)
		}
		l, s, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("robustness comparison, curve %s: %w", c.Name, err)
		}
		l.LineStyle = draw.LineStyle{Color: col, Width: vg.Points(1.8), Dashes: dashes[si%len(dashes)]}
		s.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(3.2), Shape: shapes[(c.Colour+si)%len(shapes)]}
		lines = append(lines, l, s)
		name := c.Name
		if len(stepOrder) > 1 {
			name = fmt.Sprintf("%s, PGD-%d", c.Name, c.Steps)
		}
		p.addLegend(name, l, s)
	}
	p.Add(lines...)
	p.Y.Min, p.Y.Max = 0, 100
	p.X.Min = 0
	if whole255ths(curves) {
		p.X.Tick.Marker = per255Ticks{}
	}
	return p.finish(), nil
}

// whole255ths says whether every ε is k/255, the unit L∞ budgets are given in (as the tables and
// the eval flags write them), so the axis can be labelled in it too.
func whole255ths(curves []RobustnessCurve) bool {
	for _, c := range curves {
		for _, pt := range c.Points {
			if k := pt.Eps * 255; pt.Eps < 0 || pt.Eps > 1 || math.Abs(k-math.Round(k)) > 1e-9 {
				return false
			}
		}
	}
	return true
}

// per255Ticks labels an axis of budgets in 255ths ("0", "4/255", "8/255") at a power-of-two
// step, as budgets are usually chosen (2, 4, 8, 16/255), with unlabelled minor ticks halfway.
type per255Ticks struct{}

func (per255Ticks) Ticks(lo, hi float64) []plot.Tick {
	lo, hi = lo*255, hi*255
	if !(hi > lo) || hi-lo < 2 || math.IsInf(hi-lo, 0) {
		return niceTicks{}.Ticks(lo/255, hi/255)
	}
	step := 1.0
	for step < (hi-lo)/5 {
		step *= 2
	}
	var out []plot.Tick
	for k := math.Ceil(lo/step) * step; k <= hi+1e-9; k += step {
		label := fmt.Sprintf("%d/255", int(k))
		if k == 0 {
			label = "0"
		}
		out = append(out, plot.Tick{Value: k / 255, Label: label})
		if m := k + step/2; step > 1 && m <= hi {
			out = append(out, plot.Tick{Value: m / 255})
		}
	}
	return out
}
