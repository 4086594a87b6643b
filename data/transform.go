package data

import (
	"fmt"
	"math"
	"slices"
)

// SplitValidation holds out n images chosen by seed as a validation set (JEM holds out 5000).
// Both parts keep the original order of their images. n is clamped to [0, N].
func SplitValidation(d *Dataset, n int, seed uint64) (train, val *Dataset) {
	n = min(max(n, 0), d.N)
	perm := permutation(newRand(seed, streamSplit), d.N)
	vIdx := slices.Clone(perm[:n])
	tIdx := slices.Clone(perm[n:])
	slices.Sort(vIdx)
	slices.Sort(tIdx)
	return d.subset(d.Name+"-train", tIdx), d.subset(d.Name+"-val", vIdx)
}

// SubsetPerClass keeps perClass images of each class (all of a class that has fewer), chosen by
// seed, in their original order; for label-scarce experiments.
func SubsetPerClass(d *Dataset, perClass int, seed uint64) *Dataset {
	perm := permutation(newRand(seed, streamSubset), d.N)
	taken := make([]int, len(d.Classes))
	var idx []int
	for _, i := range perm {
		if y := d.Labels[i]; taken[y] < perClass {
			taken[y]++
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	return d.subset(fmt.Sprintf("%s-%dpc", d.Name, perClass), idx)
}

// Convert makes d look like (c, h, w) so it can serve as OOD data for a dataset of another shape.
// RGB→gray uses ITU-R 601 luma in PIL's fixed-point form, gray→RGB replicates the channel, and
// resizing is PIL-style antialiased bilinear: a triangle filter widened by the scale factor when
// shrinking (so it averages areas) and plain half-pixel bilinear when enlarging.
func Convert(d *Dataset, c, h, w int) (*Dataset, error) {
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("convert %s: %d channels requested, want 1 or 3", d.Name, c)
	}
	if d.C != 1 && d.C != 3 {
		return nil, fmt.Errorf("convert %s: source has %d channels, want 1 or 3", d.Name, d.C)
	}
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("convert %s: bad target size %dx%d", d.Name, h, w)
	}
	cur := d
	if d.C == 3 && c == 1 {
		cur = toGray(cur)
	}
	if cur.H != h || cur.W != w {
		cur = resize(cur, h, w)
	}
	if cur.C == 1 && c == 3 {
		cur = toRGB(cur)
	}
	if cur == d {
		cur = d.subset(d.Name, identity(d.N))
	}
	cur.Name = fmt.Sprintf("%s@%dx%dx%d", d.Name, c, h, w)
	return cur, nil
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

func like(d *Dataset, c, h, w int) *Dataset {
	return &Dataset{Name: d.Name, N: d.N, C: c, H: h, W: w, Classes: d.Classes,
		Labels: slices.Clone(d.Labels), Images: make([]uint8, d.N*c*h*w)}
}

func toGray(d *Dataset) *Dataset {
	out := like(d, 1, d.H, d.W)
	p := d.H * d.W
	for i := range d.N {
		src, dst := d.Image(i), out.Image(i)
		for k := range p {
			r, g, b := uint32(src[k]), uint32(src[p+k]), uint32(src[2*p+k])
			dst[k] = uint8((r*19595 + g*38470 + b*7471 + 0x8000) >> 16)
		}
	}
	return out
}

func toRGB(d *Dataset) *Dataset {
	out := like(d, 3, d.H, d.W)
	p := d.H * d.W
	for i := range d.N {
		src, dst := d.Image(i), out.Image(i)
		copy(dst[:p], src)
		copy(dst[p:2*p], src)
		copy(dst[2*p:], src)
	}
	return out
}

// filterTaps are the contributions of the input pixels start..start+len(w)-1 to one output pixel.
type filterTaps struct {
	start int
	w     []float64
}

func triangleTaps(in, out int) []filterTaps {
	scale := float64(in) / float64(out)
	support := max(scale, 1)
	taps := make([]filterTaps, out)
	for i := range taps {
		center := (float64(i) + 0.5) * scale
		lo := max(int(math.Floor(center-support)), 0)
		hi := min(int(math.Ceil(center+support)), in)
		var ws []float64
		sum := 0.0
		for x := lo; x < hi; x++ {
			v := 1 - math.Abs((float64(x)+0.5-center)/support)
			if v < 0 {
				v = 0
			}
			ws = append(ws, v)
			sum += v
		}
		for k := range ws {
			ws[k] /= sum
		}
		taps[i] = filterTaps{lo, ws}
	}
	return taps
}

func resize(d *Dataset, h, w int) *Dataset {
	out := like(d, d.C, h, w)
	tx, ty := triangleTaps(d.W, w), triangleTaps(d.H, h)
	tmp := make([]float64, d.H*w)
	for i := range d.N {
		src, dst := d.Image(i), out.Image(i)
		for c := range d.C {
			plane := src[c*d.H*d.W : (c+1)*d.H*d.W]
			for y := range d.H {
				row := plane[y*d.W : (y+1)*d.W]
				for x, t := range tx {
					s := 0.0
					for k, wt := range t.w {
						s += wt * float64(row[t.start+k])
					}
					tmp[y*w+x] = s
				}
			}
			op := dst[c*h*w : (c+1)*h*w]
			for y, t := range ty {
				for x := range w {
					s := 0.0
					for k, wt := range t.w {
						s += wt * tmp[(t.start+k)*w+x]
					}
					op[y*w+x] = uint8(min(max(math.Round(s), 0), 255))
				}
			}
		}
	}
	return out
}

// Interp builds the paper's "Interp" OOD set: each image is the pixel average of two different
// random images of d, rounded half up ((a+b+1)/2); it keeps the first image's label, which OOD
// scoring ignores. JEM averages in [-1, 1] space, which differs from this by at most half a grey
// level.
func Interp(d *Dataset, n int, seed uint64) *Dataset {
	if d.N == 0 {
		n = 0
	}
	n = max(n, 0)
	out := &Dataset{Name: d.Name + "-interp", N: n, C: d.C, H: d.H, W: d.W, Classes: d.Classes,
		Images: make([]uint8, n*d.ImageSize()), Labels: make([]int64, n)}
	r := newRand(seed, streamInterp)
	for k := range n {
		i := r.IntN(d.N)
		j := i
		if d.N > 1 {
			j = (i + 1 + r.IntN(d.N-1)) % d.N
		}
		a, b, dst := d.Image(i), d.Image(j), out.Image(k)
		for p := range dst {
			dst[p] = uint8((uint16(a[p]) + uint16(b[p]) + 1) >> 1)
		}
		out.Labels[k] = d.Labels[i]
	}
	return out
}

func noiseDataset(name string, n, c, h, w int) *Dataset {
	n = max(n, 0)
	return &Dataset{Name: name, N: n, C: c, H: h, W: w, Classes: []string{"noise"},
		Images: make([]uint8, n*max(c*h*w, 0)), Labels: make([]int64, n)}
}

// UniformNoise makes n images of i.i.d. uniform bytes, i.e. uniform noise over [-1, 1] after
// scaling (JEM's uniform OOD set). All labels are 0 of the single class "noise".
func UniformNoise(n, c, h, w int, seed uint64) *Dataset {
	d := noiseDataset("uniform", n, c, h, w)
	r := newRand(seed, streamUniform)
	for i := 0; i < len(d.Images); i += 8 {
		v := r.Uint64()
		for k := i; k < min(i+8, len(d.Images)); k++ {
			d.Images[k] = uint8(v)
			v >>= 8
		}
	}
	return d
}

// GaussianNoise makes n images whose pixels, in the [-1, 1] space the model sees, are N(0, 1)
// clipped to [-1, 1] (so about a third of them saturate), quantised to bytes. This is the usual
// "Gaussian noise" OOD set of the OOD-detection literature expressed in the model's input range.
func GaussianNoise(n, c, h, w int, seed uint64) *Dataset {
	d := noiseDataset("gaussian", n, c, h, w)
	r := newRand(seed, streamGauss)
	for i := range d.Images {
		v := min(max(r.NormFloat64(), -1), 1)
		d.Images[i] = uint8(math.Round((v + 1) * 127.5))
	}
	return d
}
