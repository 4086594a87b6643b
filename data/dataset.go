package data

import (
	"fmt"
	"strconv"
)

// Dataset holds a whole split in memory as uint8 pixels; 60,000 CIFAR images take 180 MB, which
// is cheaper than decoding on every epoch.
type Dataset struct {
	Name    string
	Images  []uint8 // N*C*H*W, CHW per image
	Labels  []int64
	N       int
	C, H, W int
	Classes []string
}

// Split names a dataset split.
type Split string

const (
	Train Split = "train"
	Test  Split = "test"
)

// ImageSize is the number of bytes of one image (C*H*W).
func (d *Dataset) ImageSize() int { return d.C * d.H * d.W }

// Image returns image i (CHW) as a slice into d.Images; callers must not modify it.
func (d *Dataset) Image(i int) []uint8 {
	s := d.ImageSize()
	return d.Images[i*s : (i+1)*s : (i+1)*s]
}

// NumClasses is len(d.Classes).
func (d *Dataset) NumClasses() int { return len(d.Classes) }

// Validate checks that the fields agree with each other; readers call it before returning so
// the rest of the package can index without checks.
func (d *Dataset) Validate() error {
	if d.N < 0 || d.C <= 0 || d.H <= 0 || d.W <= 0 {
		return fmt.Errorf("dataset %q: bad shape N=%d C=%d H=%d W=%d", d.Name, d.N, d.C, d.H, d.W)
	}
	if len(d.Images) != d.N*d.ImageSize() {
		return fmt.Errorf("dataset %q: %d pixel bytes, want N*C*H*W = %d", d.Name, len(d.Images), d.N*d.ImageSize())
	}
	if len(d.Labels) != d.N {
		return fmt.Errorf("dataset %q: %d labels for %d images", d.Name, len(d.Labels), d.N)
	}
	k := int64(len(d.Classes))
	for i, y := range d.Labels {
		if y < 0 || y >= k {
			return fmt.Errorf("dataset %q: label %d of image %d out of range [0, %d)", d.Name, y, i, k)
		}
	}
	return nil
}

// subset copies the listed images into a new dataset.
func (d *Dataset) subset(name string, idx []int) *Dataset {
	s := d.ImageSize()
	out := &Dataset{Name: name, N: len(idx), C: d.C, H: d.H, W: d.W, Classes: d.Classes,
		Images: make([]uint8, len(idx)*s), Labels: make([]int64, len(idx))}
	for j, i := range idx {
		copy(out.Images[j*s:(j+1)*s], d.Image(i))
		out.Labels[j] = d.Labels[i]
	}
	return out
}

func numberedClasses(k int) []string {
	c := make([]string, k)
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}
