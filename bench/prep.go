package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/eval/npy"
)

// datasets is where the benchmark's inputs are: the official files, or tiny copies of them
// (quick mode) written into the work folder in the same layouts.
type datasets struct {
	train map[string]DataSpec // by name: fashion-mnist, cifar10
	eval  []DataSpec          // in-distribution test set first, then the OOD sets
	shape map[string][]int    // C, H, W by name
}

func checkDir(dir, what, flag string) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s not found at %s (set %s)", what, dir, flag)
	}
	return nil
}

// prepare locates (full) or writes (quick) the training sets and writes the evaluation sets as
// .npy files: the first perSet Fashion-MNIST test images, and as OOD sets the first perSet MNIST
// test images, Interp (pixel averages of two Fashion-MNIST test images) and uniform noise.
func prepare(o Options, su suite, work string) (*datasets, error) {
	fashion, cifar, mnist := o.FashionDir, filepath.Join(o.SharedData, "cifar-10-batches-bin"), filepath.Join(o.SharedData, "mnist")
	if err := checkDir(fashion, "Fashion-MNIST", "--fashion-dir"); err != nil {
		return nil, err
	}
	if err := checkDir(cifar, "CIFAR-10", "--shared-data or HDGE_SHARED_DATA"); err != nil {
		return nil, err
	}
	if err := checkDir(mnist, "MNIST", "--shared-data or HDGE_SHARED_DATA"); err != nil {
		return nil, err
	}
	ds := &datasets{
		train: map[string]DataSpec{
			"fashion-mnist": {Name: "fashion-mnist", Format: "idx", Dir: fashion, Split: "train"},
			"cifar10":       {Name: "cifar10", Format: "cifar10", Dir: cifar, Split: "train"},
		},
		shape: map[string][]int{"fashion-mnist": {1, 28, 28}, "cifar10": {3, 32, 32}},
	}
	dir := filepath.Join(work, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if su.TinyImages > 0 {
		for _, name := range []string{"fashion-mnist", "cifar10"} {
			spec, err := writeTiny(ds.train[name], filepath.Join(dir, name+"-tiny"), su.TinyImages)
			if err != nil {
				return nil, err
			}
			ds.train[name] = spec
		}
	}
	test, err := data.Source{}.Load("idx:"+fashion, data.Test)
	if err != nil {
		return nil, err
	}
	mn, err := data.Source{}.Load("idx:"+mnist, data.Test)
	if err != nil {
		return nil, err
	}
	n := min(su.Eval.PerSet, test.N, mn.N)
	sets := []*data.Dataset{
		head(test, n, "fashion-mnist-test"),
		head(mn, n, "mnist"),
		data.Interp(test, n, 3),
		data.UniformNoise(n, test.C, test.H, test.W, 4),
	}
	sets[2].Name, sets[3].Name = "interp", "uniform"
	for _, d := range sets {
		spec := DataSpec{Name: d.Name, Format: "npy", Images: filepath.Join(dir, d.Name+"-images.npy"),
			Labels: filepath.Join(dir, d.Name+"-labels.npy")}
		if err := npy.WriteUint8(spec.Images, d.Images, d.N, d.C, d.H, d.W); err != nil {
			return nil, err
		}
		labels := d.Labels
		if d != sets[0] {
			labels = make([]int64, d.N) // OOD labels are not used, and must be valid classes
		}
		if err := npy.WriteInt64(spec.Labels, labels, d.N); err != nil {
			return nil, err
		}
		ds.eval = append(ds.eval, spec)
	}
	return ds, nil
}

// head keeps the first n images of d.
func head(d *data.Dataset, n int, name string) *data.Dataset {
	s := d.ImageSize()
	return &data.Dataset{Name: name, Images: d.Images[:n*s], Labels: d.Labels[:n], N: n, C: d.C, H: d.H, W: d.W, Classes: d.Classes}
}

// writeTiny copies the first n training images of a set into dir in its official layout, so both
// sides read it exactly as they read the full set.
func writeTiny(spec DataSpec, dir string, n int) (DataSpec, error) {
	goSpec, err := spec.goSpec()
	if err != nil {
		return spec, err
	}
	d, err := data.Source{}.Load(goSpec, data.Train)
	if err != nil {
		return spec, err
	}
	n = min(n, d.N)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return spec, err
	}
	switch spec.Format {
	case "idx":
		if err := writeIDX(dir, "train", head(d, n, d.Name)); err != nil {
			return spec, err
		}
		// The reader wants both splits present; the tiny test split is never read.
		if err := writeIDX(dir, "t10k", head(d, min(n, 16), d.Name)); err != nil {
			return spec, err
		}
	case "cifar10":
		per := n / 5
		for i := range 5 {
			part := &data.Dataset{Images: d.Images[i*per*d.ImageSize() : (i+1)*per*d.ImageSize()],
				Labels: d.Labels[i*per : (i+1)*per], N: per, C: d.C, H: d.H, W: d.W}
			if err := writeCIFAR(filepath.Join(dir, fmt.Sprintf("data_batch_%d.bin", i+1)), part); err != nil {
				return spec, err
			}
		}
		if err := writeCIFAR(filepath.Join(dir, "test_batch.bin"), head(d, min(per, 16), d.Name)); err != nil {
			return spec, err
		}
	default:
		return spec, fmt.Errorf("no tiny copy for format %q", spec.Format)
	}
	spec.Dir = dir
	return spec, nil
}

func writeIDX(dir, prefix string, d *data.Dataset) error {
	img := make([]byte, 0, 16+len(d.Images))
	img = binary.BigEndian.AppendUint32(img, 0x803)
	for _, v := range []int{d.N, d.H, d.W} {
		img = binary.BigEndian.AppendUint32(img, uint32(v))
	}
	img = append(img, d.Images...)
	lab := binary.BigEndian.AppendUint32(nil, 0x801)
	lab = binary.BigEndian.AppendUint32(lab, uint32(d.N))
	for _, y := range d.Labels {
		lab = append(lab, byte(y))
	}
	if err := os.WriteFile(filepath.Join(dir, prefix+"-images-idx3-ubyte"), img, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, prefix+"-labels-idx1-ubyte"), lab, 0o644)
}

func writeCIFAR(path string, d *data.Dataset) error {
	s := d.ImageSize()
	b := make([]byte, 0, d.N*(s+1))
	for i := range d.N {
		b = append(b, byte(d.Labels[i]))
		b = append(b, d.Images[i*s:(i+1)*s]...)
	}
	return os.WriteFile(path, b, 0o644)
}
