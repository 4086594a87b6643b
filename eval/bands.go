package eval

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Band is one series of a comparison: the mean over seeds at each X, and the standard deviation
// drawn as a shaded band around it (none where Std is nil or zero, as for a single seed).
type Band struct {
	Name string
	X    []float64
	Mean []float64
	Std  []float64
	// Palette picks the colour, as 1 + an index into the palette, so one run keeps its colour
	// across figures that leave some runs out; 0 colours by position.
	Palette int
}

// BandOptions: Scale multiplies Y (100 for accuracies as percentages; 0 means 1); Diagonal adds
// the chance line y = x of a ROC curve; LegendBottom moves the legend off rising curves.
type BandOptions struct {
	Scale                  float64
	Diagonal, LegendBottom bool
}

// BandPlot overlays series in the house style, one colour each.
func BandPlot(title, xLabel, yLabel string, series []Band, opt BandOptions) (*plot.Plot, error) {
	p := newPlot(title, xLabel, yLabel)
	scale := opt.Scale
	if scale == 0 {
		scale = 1
	}
	if opt.Diagonal {
		d, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: scale, Y: scale}})
		if err != nil {
			return nil, err
		}
		d.LineStyle = draw.LineStyle{Color: paletteColor(7), Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}
		p.Add(d)
	}
	p.legend.Top = !opt.Diagonal && !opt.LegendBottom // ROC curves fill the top left
	drawn := 0
	for i, s := range series {
		if len(s.X) != len(s.Mean) || (s.Std != nil && len(s.Std) != len(s.X)) {
			return nil, fmt.Errorf("%s, series %s: %d x, %d means, %d stds", title, s.Name, len(s.X), len(s.Mean), len(s.Std))
		}
		var mean, band plotter.XYs
		for j := range s.X {
			if math.IsNaN(s.Mean[j]) {
				continue
			}
			mean = append(mean, plotter.XY{X: s.X[j], Y: scale * s.Mean[j]})
		}
		if len(mean) == 0 {
			continue
		}
		c := paletteColor(i)
		if s.Palette > 0 {
			c = paletteColor(s.Palette - 1)
		}
		if s.Std != nil {
			for j := range s.X {
				if !math.IsNaN(s.Mean[j]) {
					band = append(band, plotter.XY{X: s.X[j], Y: scale * (s.Mean[j] + s.Std[j])})
				}
			}
			for j := len(s.X) - 1; j >= 0; j-- {
				if !math.IsNaN(s.Mean[j]) {
					band = append(band, plotter.XY{X: s.X[j], Y: scale * (s.Mean[j] - s.Std[j])})
				}
			}
			poly, err := plotter.NewPolygon(band)
			if err != nil {
				return nil, fmt.Errorf("%s, series %s: %w", title, s.Name, err)
			}
			poly.Color = withAlpha(c, 60)
			poly.LineStyle.Width = 0
			p.Add(poly)
		}
		l, err := plotter.NewLine(mean)
		if err != nil {
			return nil, fmt.Errorf("%s, series %s: %w", title, s.Name, err)
		}
		l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.8)}
		p.Add(l)
		if len(mean) <= 20 {
			g, err := plotter.NewScatter(mean)
			if err != nil {
				return nil, err
			}
			g.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.6), Shape: draw.CircleGlyph{}}
			p.Add(g)
		}
		p.addLegend(s.Name, l)
		drawn++
	}
	if drawn == 0 {
		return nil, fmt.Errorf("%s: no series to draw", title)
	}
	return p.finish(), nil
}
