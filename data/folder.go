package data

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReadFolder reads an image folder with one subfolder per class (names sorted give the class
// order, as torchvision's ImageFolder does) holding PNG or JPEG files of one size. The result has
// one channel when every image is grayscale and three otherwise; alpha is dropped.
func ReadFolder(dir string) (*Dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	var classes []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			classes = append(classes, e.Name())
		}
	}
	sort.Strings(classes)
	if len(classes) == 0 {
		return nil, fmt.Errorf("image folder %s has no class subfolders", dir)
	}
	type item struct {
		path  string
		label int64
	}
	var items []item
	for k, c := range classes {
		files, err := os.ReadDir(filepath.Join(dir, c))
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		for _, f := range files {
			switch strings.ToLower(filepath.Ext(f.Name())) {
			case ".png", ".jpg", ".jpeg":
				if f.Type().IsRegular() {
					items = append(items, item{filepath.Join(dir, c, f.Name()), int64(k)})
				}
			}
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("image folder %s: no .png or .jpg files in its %d class subfolders", dir, len(classes))
	}
	imgs := make([]image.Image, len(items))
	gray := true
	for i, it := range items {
		f, err := os.Open(it.path)
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		im, _, err := image.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", it.path, err)
		}
		if b, b0 := im.Bounds(), imgs[0]; i > 0 && b.Size() != b0.Bounds().Size() {
			return nil, fmt.Errorf("%s is %dx%d but %s is %dx%d: images in a folder must share one size", it.path, b.Dx(), b.Dy(), items[0].path, b0.Bounds().Dx(), b0.Bounds().Dy())
		}
		if b := im.Bounds(); b.Empty() {
			return nil, fmt.Errorf("%s: empty image", it.path)
		}
		switch im.ColorModel() {
		case color.GrayModel, color.Gray16Model:
		default:
			gray = false
		}
		imgs[i] = im
	}
	b := imgs[0].Bounds()
	d := &Dataset{Name: filepath.Base(dir), N: len(items), H: b.Dy(), W: b.Dx(), C: 3, Classes: classes, Labels: make([]int64, len(items))}
	if gray {
		d.C = 1
	}
	d.Images = make([]uint8, d.N*d.ImageSize())
	for i, im := range imgs {
		d.Labels[i] = items[i].label
		toCHW(im, d.Image(i), d.C)
	}
	return d, d.Validate()
}

// toCHW writes im into dst (len C*H*W) as planar bytes, with fast paths for the decoders' usual
// image types.
func toCHW(im image.Image, dst []uint8, c int) {
	b := im.Bounds()
	h, w := b.Dy(), b.Dx()
	plane := h * w
	for y := range h {
		for x := range w {
			o := y*w + x
			px, py := b.Min.X+x, b.Min.Y+y
			if c == 1 {
				dst[o] = color.GrayModel.Convert(im.At(px, py)).(color.Gray).Y
				continue
			}
			var r, g, bl uint8
			switch m := im.(type) {
			case *image.NRGBA:
				i := m.PixOffset(px, py)
				r, g, bl = m.Pix[i], m.Pix[i+1], m.Pix[i+2]
			case *image.YCbCr:
				v := m.YCbCrAt(px, py)
				r, g, bl = color.YCbCrToRGB(v.Y, v.Cb, v.Cr)
			default:
				n := color.NRGBAModel.Convert(im.At(px, py)).(color.NRGBA)
				r, g, bl = n.R, n.G, n.B
			}
			dst[o], dst[plane+o], dst[2*plane+o] = r, g, bl
		}
	}
}
