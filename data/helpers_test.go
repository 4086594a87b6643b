package data

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sharedData is the folder of real datasets: $HDGE_SHARED_DATA, else ../shared/data next to the
// repository root.
func sharedData(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("HDGE_SHARED_DATA")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		dir = filepath.Join(root, "..", "shared", "data")
	}
	if !dirExists(dir) {
		t.Skipf("shared datasets not present at %s (set HDGE_SHARED_DATA)", dir)
	}
	return dir
}

func fashionDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(DebianDatasets, "fashion-mnist")
	if !dirExists(dir) {
		t.Skipf("Fashion-MNIST not installed at %s (apt-get install dataset-fashion-mnist)", dir)
	}
	return dir
}

// meanStd returns per-channel mean and standard deviation of pixels scaled to [0, 1].
func meanStd(d *Dataset) (mean, std []float64) {
	mean, std = make([]float64, d.C), make([]float64, d.C)
	p := d.H * d.W
	for c := range d.C {
		var s, s2 float64
		for i := range d.N {
			for _, v := range d.Image(i)[c*p : (c+1)*p] {
				f := float64(v)
				s += f
				s2 += f * f
			}
		}
		n := float64(d.N * p)
		m := s / n
		mean[c] = m / 255
		std[c] = sqrt(s2/n-m*m) / 255
	}
	return mean, std
}
