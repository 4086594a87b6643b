package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// ResizedCrop is torchvision's RandomResizedCrop back to the image's own size: a box of area
// fraction in Scale and aspect ratio (w/h) in Ratio, log-uniform, is tried 10 times; the first
// box that fits is taken at a uniform position, else the centre crop closest to Ratio. The box is
// resized bilinearly (half-pixel centres, align_corners=False). A zero value is off.
type ResizedCrop struct {
	Scale [2]float64 // area fraction, 0 < lo <= hi <= 1; SimCLR/SupCon use 0.2..1 on CIFAR
	Ratio [2]float64 // aspect w/h, 0 < lo <= hi; 3/4..4/3
}

func (c ResizedCrop) on() bool { return c != ResizedCrop{} }

// Jitter is torchvision's ColorJitter wrapped in RandomApply(p = Prob): factors drawn uniformly
// from [max(0, 1-B), 1+B] (brightness, contrast, saturation) and [-Hue, Hue], applied in a random
// order. Brightness scales pixels, contrast blends with the mean grey level, saturation with the
// greyscale image, hue rotates H in HSV; every step clamps to [0, 1]. On 1-channel images only
// brightness and contrast act (torchvision returns grey images unchanged from saturation and hue).
type Jitter struct {
	Brightness, Contrast, Saturation, Hue float64
	Prob                                  float64 // probability that the jitter is applied at all
}

func (j Jitter) on() bool {
	return j.Prob > 0 && (j.Brightness > 0 || j.Contrast > 0 || j.Saturation > 0 || j.Hue > 0)
}

// ContrastiveAugment is SimCLR's and SupCon's CIFAR view: random resized crop (0.2-1, 3/4-4/3),
// horizontal flip (not for digits), colour jitter 0.4/0.4/0.4/0.1 with probability 0.8 and
// greyscale with probability 0.2; no pad-crop and no noise.
func ContrastiveAugment(digits bool) Augment {
	return Augment{
		Flip:        !digits,
		ResizedCrop: ResizedCrop{Scale: [2]float64{0.2, 1}, Ratio: [2]float64{3.0 / 4, 4.0 / 3}},
		Jitter:      Jitter{Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1, Prob: 0.8},
		Gray:        0.2,
	}
}

// Validate names the first bad setting, prefixed by what (e.g. "view 1").
func (a Augment) Validate(what string) error {
	bad := func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }
	prob := func(p float64) bool { return bad(p) || p < 0 || p > 1 }
	switch {
	case a.Crop < 0:
		return fmt.Errorf("%s: crop padding %d, want >= 0", what, a.Crop)
	case !(a.Noise >= 0) || a.Noise > 1e6: // also rejects NaN
		return fmt.Errorf("%s: noise σ %g, want >= 0", what, a.Noise)
	case prob(a.Gray):
		return fmt.Errorf("%s: greyscale probability %g, want in [0, 1]", what, a.Gray)
	}
	if rc := a.ResizedCrop; rc.on() {
		s, r := rc.Scale, rc.Ratio
		if bad(s[0]) || bad(s[1]) || !(s[0] > 0 && s[0] <= s[1] && s[1] <= 1) {
			return fmt.Errorf("%s: resized-crop scale %g..%g, want 0 < lo <= hi <= 1", what, s[0], s[1])
		}
		if bad(r[0]) || bad(r[1]) || !(r[0] > 0 && r[0] <= r[1]) {
			return fmt.Errorf("%s: resized-crop ratio %g..%g, want 0 < lo <= hi", what, r[0], r[1])
		}
	}
	j := a.Jitter
	for _, f := range []struct {
		name string
		v    float64
	}{{"brightness", j.Brightness}, {"contrast", j.Contrast}, {"saturation", j.Saturation}} {
		if bad(f.v) || f.v < 0 {
			return fmt.Errorf("%s: jitter %s %g, want >= 0", what, f.name, f.v)
		}
	}
	if bad(j.Hue) || j.Hue < 0 || j.Hue > 0.5 {
		return fmt.Errorf("%s: jitter hue %g, want in [0, 0.5]", what, j.Hue)
	}
	if prob(j.Prob) {
		return fmt.Errorf("%s: jitter probability %g, want in [0, 1]", what, j.Prob)
	}
	return nil
}

// colour reports whether a needs the float pipeline (anything beyond pad-crop, flip and noise).
func (a Augment) colour() bool { return a.ResizedCrop.on() || a.Jitter.on() || a.Gray > 0 }

// box is a crop region: top row, left column, height, width.
type box struct{ top, left, h, w int }

// sampleBox is RandomResizedCrop.get_params for an h×w image. Python's round is half-to-even.
func sampleBox(r *rand.Rand, h, w int, c ResizedCrop) box {
	area := float64(h * w)
	lr0, lr1 := math.Log(c.Ratio[0]), math.Log(c.Ratio[1])
	for range 10 {
		target := area * (c.Scale[0] + r.Float64()*(c.Scale[1]-c.Scale[0]))
		aspect := math.Exp(lr0 + r.Float64()*(lr1-lr0))
		bw := int(math.RoundToEven(math.Sqrt(target * aspect)))
		bh := int(math.RoundToEven(math.Sqrt(target / aspect)))
		if bw > 0 && bw <= w && bh > 0 && bh <= h {
			return box{top: r.IntN(h - bh + 1), left: r.IntN(w - bw + 1), h: bh, w: bw}
		}
	}
	in := float64(w) / float64(h)
	bw, bh := w, h
	if in < c.Ratio[0] {
		bh = int(math.RoundToEven(float64(bw) / c.Ratio[0]))
	} else if in > c.Ratio[1] {
		bw = int(math.RoundToEven(float64(bh) * c.Ratio[1]))
	}
	return box{top: (h - bh) / 2, left: (w - bw) / 2, h: bh, w: bw}
}

// linearTaps are the two source indices and the weight of the second for each output position of
// a 1-d bilinear resize from n to out samples, as torch's interpolate(align_corners=False).
func linearTaps(n, out int, i0, i1 []int, lam []float32) {
	scale := float64(n) / float64(out)
	for d := range out {
		src := max(scale*(float64(d)+0.5)-0.5, 0)
		x0 := min(int(src), n-1)
		x1 := min(x0+1, n-1)
		i0[d], i1[d], lam[d] = x0, x1, float32(src-float64(x0))
	}
}

// resizeBox writes the box of src (C planes of h×w) resized to h×w into dst.
func (w *worker) resizeBox(dst, src []float32, c, h, wd int, b box) {
	linearTaps(b.h, h, w.y0, w.y1, w.ly)
	linearTaps(b.w, wd, w.x0, w.x1, w.lx)
	hw := h * wd
	for ch := range c {
		plane := src[ch*hw : (ch+1)*hw]
		out := dst[ch*hw : (ch+1)*hw]
		for y := range h {
			r0 := plane[(b.top+w.y0[y])*wd+b.left:]
			r1 := plane[(b.top+w.y1[y])*wd+b.left:]
			ly := w.ly[y]
			o := out[y*wd : (y+1)*wd]
			for x := range wd {
				x0, x1, lx := w.x0[x], w.x1[x], w.lx[x]
				top := r0[x0] + lx*(r0[x1]-r0[x0])
				bot := r1[x0] + lx*(r1[x1]-r1[x0])
				o[x] = top + ly*(bot-top)
			}
		}
	}
}

func flipRows(img []float32, w int) {
	for y := 0; y < len(img); y += w {
		row := img[y : y+w]
		for i, j := 0, w-1; i < j; i, j = i+1, j-1 {
			row[i], row[j] = row[j], row[i]
		}
	}
}

// Luma weights of ITU-R 601-2, as torchvision's rgb_to_grayscale.
const (
	lumaR = 0.2989
	lumaG = 0.587
	lumaB = 0.114
)

func clamp01(v float32) float32 { return min(max(v, 0), 1) }

// brightness is torchvision's adjust_brightness: blend with black.
func brightness(img []float32, f float32) {
	for i, v := range img {
		img[i] = clamp01(f * v)
	}
}

// contrast is adjust_contrast: blend with the mean of the greyscale image.
func contrast(img []float32, c, hw int, f float32) {
	var sum float64
	if c == 3 {
		for k := range hw {
			sum += float64(lumaR*img[k] + lumaG*img[hw+k] + lumaB*img[2*hw+k])
		}
	} else {
		for _, v := range img {
			sum += float64(v)
		}
	}
	mean := float32(sum / float64(hw))
	add := (1 - f) * mean
	for i, v := range img {
		img[i] = clamp01(f*v + add)
	}
}

// saturation is adjust_saturation: blend with the greyscale image (3 channels only).
func saturation(img []float32, hw int, f float32) {
	r, g, b := img[:hw], img[hw:2*hw], img[2*hw:3*hw]
	for k := range hw {
		l := (1 - f) * (lumaR*r[k] + lumaG*g[k] + lumaB*b[k])
		r[k] = clamp01(f*r[k] + l)
		g[k] = clamp01(f*g[k] + l)
		b[k] = clamp01(f*b[k] + l)
	}
}

// hue is adjust_hue: RGB to HSV, H shifted by f (mod 1), back to RGB (3 channels only).
func hue(img []float32, hw int, f float32) {
	r, g, b := img[:hw], img[hw:2*hw], img[2*hw:3*hw]
	for k := range hw {
		r[k], g[k], b[k] = shiftHue(r[k], g[k], b[k], f)
	}
}

func shiftHue(r, g, b, f float32) (float32, float32, float32) {
	maxc := max(r, g, b)
	minc := min(r, g, b)
	if maxc == minc {
		return r, g, b // grey: no hue, and s = 0 maps back to (v, v, v)
	}
	cr := maxc - minc
	s := cr / maxc
	rc, gc, bc := (maxc-r)/cr, (maxc-g)/cr, (maxc-b)/cr
	var h float32
	switch {
	case maxc == r:
		h = bc - gc
	case maxc == g:
		h = 2 + rc - bc
	default:
		h = 4 + gc - rc
	}
	// h/6 + 1 lies in (5/6, 11/6] and f in [-0.5, 0.5], so one subtraction or addition each is
	// Python's fmod(h/6 + 1, 1) and (h + f) % 1, without math.Mod's cost per pixel.
	h = h/6 + 1
	if h >= 1 {
		h--
	}
	h += f
	if h < 0 {
		h++
	} else if h >= 1 {
		h--
	}
	v := maxc
	h6 := h * 6
	i := float32(int(h6))
	fr := h6 - i
	p := clamp01(v * (1 - s))
	q := clamp01(v * (1 - s*fr))
	t := clamp01(v * (1 - s*(1-fr)))
	switch int(i) % 6 {
	case 0:
		return v, t, p
	case 1:
		return q, v, p
	case 2:
		return p, v, t
	case 3:
		return p, q, v
	case 4:
		return t, p, v
	default:
		return v, p, q
	}
}

// grayscale replaces each channel of a 3-channel image by its luma.
func grayscale(img []float32, hw int) {
	r, g, b := img[:hw], img[hw:2*hw], img[2*hw:3*hw]
	for k := range hw {
		l := lumaR*r[k] + lumaG*g[k] + lumaB*b[k]
		r[k], g[k], b[k] = l, l, l
	}
}

// jitterFactor draws uniformly from [max(0, 1-s), 1+s].
func jitterFactor(r *rand.Rand, s float64) float32 {
	lo := max(0, 1-s)
	return float32(lo + r.Float64()*(1+s-lo))
}

// colourJitter applies a's jitter to img (values in [0, 1]) in a random order of the four steps.
func colourJitter(r *rand.Rand, img []float32, c, hw int, j Jitter) {
	order := [4]int{0, 1, 2, 3}
	for i := 3; i > 0; i-- {
		k := r.IntN(i + 1)
		order[i], order[k] = order[k], order[i]
	}
	// All factors are drawn whatever the order and channel count, so the stream's length does not
	// depend on the image.
	fb, fc, fs := jitterFactor(r, j.Brightness), jitterFactor(r, j.Contrast), jitterFactor(r, j.Saturation)
	fh := float32(-j.Hue + r.Float64()*2*j.Hue)
	for _, op := range order {
		switch {
		case op == 0 && j.Brightness > 0:
			brightness(img, fb)
		case op == 1 && j.Contrast > 0:
			contrast(img, c, hw, fc)
		case op == 2 && j.Saturation > 0 && c == 3:
			saturation(img, hw, fs)
		case op == 3 && j.Hue > 0 && c == 3:
			hue(img, hw, fh)
		}
	}
}
