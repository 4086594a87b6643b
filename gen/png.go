package gen

import (
	"image"
	"image/color"
	"image/png"
	"io"
	"math"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

// grid lays samples (float32 [N, C, H, W] in [-1, 1]) out as PNG mosaics with a 1-pixel border.
type grid struct {
	c, h, w int
	x       []float32
}

// rows is one row per class, cols samples each, in sample order.
func (g grid) rows(path string, rows, cols int) error {
	cells := make([][]int, rows)
	for r := range cells {
		for j := 0; j < cols; j++ {
			cells[r] = append(cells[r], r*cols+j)
		}
	}
	return g.write(path, cells, cols)
}

// square is n samples in a near-square mosaic.
func (g grid) square(path string, n int) error {
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	var cells [][]int
	for i := 0; i < n; i += cols {
		var row []int
		for j := i; j < min(n, i+cols); j++ {
			row = append(row, j)
		}
		cells = append(cells, row)
	}
	return g.write(path, cells, cols)
}

// picked is one row per class of the given sample indices (rows may be short or empty).
func (g grid) picked(path string, idx [][]int, cols int) error { return g.write(path, idx, cols) }

func (g grid) write(path string, cells [][]int, cols int) error {
	const pad = 1
	cols = max(cols, 1)
	W, H := cols*(g.w+pad)+pad, len(cells)*(g.h+pad)+pad
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	for i := range img.Pix {
		img.Pix[i] = 255 // white border
	}
	px := func(v float32) uint8 {
		u := (float64(v) + 1) / 2
		return uint8(math.Round(255 * math.Min(1, math.Max(0, u))))
	}
	plane := g.h * g.w
	for r, row := range cells {
		for j, s := range row {
			ox, oy := pad+j*(g.w+pad), pad+r*(g.h+pad)
			base := s * g.c * plane
			for yy := 0; yy < g.h; yy++ {
				for xx := 0; xx < g.w; xx++ {
					o := yy*g.w + xx
					var col color.RGBA
					if g.c == 1 {
						v := px(g.x[base+o])
						col = color.RGBA{v, v, v, 255}
					} else {
						col = color.RGBA{px(g.x[base+o]), px(g.x[base+plane+o]), px(g.x[base+2*plane+o]), 255}
					}
					img.SetRGBA(ox+xx, oy+yy, col)
				}
			}
		}
	}
	return atomicfile.Write(path, func(w io.Writer) error { return png.Encode(w, img) })
}
