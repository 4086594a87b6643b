package score

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // decoders for image.Decode
	_ "image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval/npy"
)

// item is one image to score: already decoded (datasets, .npy files) or a file to decode.
type item struct {
	name    string
	path    string // image file still to decode; "" when pix is set
	pix     []uint8
	c, h, w int
	err     error // the input could not be read
}

var imageExts = []string{".png", ".jpg", ".jpeg"}

// expand turns the command's arguments into items, in order: image files, folders (their
// images, recursively, sorted by path), dataset specs (FORMAT:PATH, read as their test split)
// and .npy files of images. A failure to read one input becomes an item carrying the error, so
// the others are still scored.
func expand(src data.Source, inputs []string) []item {
	var out []item
	for _, in := range inputs {
		if format, _, ok := strings.Cut(in, ":"); ok && slices.Contains(data.KnownFormats(), format) {
			d, err := src.Load(in, data.Test)
			if err != nil {
				out = append(out, item{name: in, err: err})
				continue
			}
			for i := range d.N {
				out = append(out, item{name: fmt.Sprintf("%s#%d", in, i), pix: d.Image(i), c: d.C, h: d.H, w: d.W})
			}
			continue
		}
		st, err := os.Stat(in)
		switch {
		case err != nil:
			out = append(out, item{name: in, err: err})
		case st.IsDir():
			var files []string
			werr := filepath.WalkDir(in, func(p string, e fs.DirEntry, err error) error {
				if err != nil {
					out = append(out, item{name: p, err: err})
					return nil
				}
				if !e.IsDir() && slices.Contains(imageExts, strings.ToLower(filepath.Ext(p))) {
					files = append(files, p)
				}
				return nil
			})
			if werr != nil {
				out = append(out, item{name: in, err: werr})
			}
			if len(files) == 0 {
				out = append(out, item{name: in, err: fmt.Errorf("folder holds no PNG or JPEG images (a dataset's files are named FORMAT:PATH, e.g. idx:%s or cifar10:%s)", in, in)})
			}
			slices.Sort(files)
			for _, f := range files {
				out = append(out, item{name: f, path: f})
			}
		case strings.EqualFold(filepath.Ext(in), ".npy"):
			out = append(out, readNpy(in)...)
		default:
			out = append(out, item{name: in, path: in})
		}
	}
	return out
}

// decode reads an image file as planar bytes: one channel for grey images, else RGB (alpha is
// dropped).
func decode(it *item) {
	f, err := os.Open(it.path)
	if err != nil {
		it.err = err
		return
	}
	defer f.Close()
	im, _, err := image.Decode(f)
	if err != nil {
		it.err = fmt.Errorf("not a readable PNG or JPEG image: %w", err)
		return
	}
	b := im.Bounds()
	it.h, it.w = b.Dy(), b.Dx()
	if it.h == 0 || it.w == 0 {
		it.err = fmt.Errorf("image has no pixels")
		return
	}
	it.c = 3
	switch im.(type) {
	case *image.Gray, *image.Gray16:
		it.c = 1
	}
	plane := it.h * it.w
	it.pix = make([]uint8, it.c*plane)
	for y := range it.h {
		for x := range it.w {
			o := y*it.w + x
			px := im.At(b.Min.X+x, b.Min.Y+y)
			if it.c == 1 {
				it.pix[o] = color.GrayModel.Convert(px).(color.Gray).Y
				continue
			}
			n := color.NRGBAModel.Convert(px).(color.NRGBA)
			it.pix[o], it.pix[plane+o], it.pix[2*plane+o] = n.R, n.G, n.B
		}
	}
}

// readNpy reads an .npy of images: N×H×W (grey), N×C×H×W or N×H×W×C with C of 1 or 3; uint8
// pixels, or floats in [0, 1].
func readNpy(path string) []item {
	fail := func(format string, args ...any) []item {
		return []item{{name: path, err: fmt.Errorf(format, args...)}}
	}
	a, err := npy.Read(path)
	if err != nil {
		return fail("%v", err)
	}
	var n, c, h, w int
	chw := true
	switch s := a.Shape; {
	case len(s) == 3:
		n, c, h, w = s[0], 1, s[1], s[2]
	case len(s) == 4 && (s[1] == 1 || s[1] == 3):
		n, c, h, w = s[0], s[1], s[2], s[3]
	case len(s) == 4 && (s[3] == 1 || s[3] == 3):
		n, h, w, c, chw = s[0], s[1], s[2], s[3], false
	default:
		return fail("images of shape %v: want N×H×W, N×C×H×W or N×H×W×C with C = 1 or 3", a.Shape)
	}
	if h == 0 || w == 0 {
		return fail("images of shape %v have no pixels", a.Shape)
	}
	var px []uint8
	switch v := a.Data.(type) {
	case []uint8:
		px = v
	default:
		f, err := a.Float64s()
		if err != nil {
			return fail("%s pixels: want uint8, or floats in [0, 1]", a.DType)
		}
		px = make([]uint8, len(f))
		for i, x := range f {
			if !(x >= 0 && x <= 1) {
				return fail("pixel %d is %g: float images must be in [0, 1]", i, x)
			}
			px[i] = uint8(math.Round(x * 255))
		}
	}
	size := c * h * w
	out := make([]item, n)
	for i := range n {
		img := px[i*size : (i+1)*size]
		if !chw {
			p := make([]uint8, size)
			for y := range h {
				for x := range w {
					for ch := range c {
						p[ch*h*w+y*w+x] = img[(y*w+x)*c+ch]
					}
				}
			}
			img = p
		}
		out[i] = item{name: fmt.Sprintf("%s#%d", path, i), pix: img, c: c, h: h, w: w}
	}
	return out
}
