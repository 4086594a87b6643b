package data

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const cifarPixels = 3 * 32 * 32

var cifar10Classes = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

var cifar100Classes = strings.Fields(`apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm`)

// ParseCIFAR parses a CIFAR "binary version" file: fixed records of labelBytes label bytes (1 for
// CIFAR-10; 2 for CIFAR-100, coarse then fine, of which the last is used) followed by 3072 pixel
// bytes already in CHW order. Labels must be below numClasses.
func ParseCIFAR(name string, b []byte, labelBytes, numClasses int) (pix []uint8, labels []int64, err error) {
	if labelBytes != 1 && labelBytes != 2 {
		return nil, nil, fmt.Errorf("%s: CIFAR records have 1 or 2 label bytes, not %d", name, labelBytes)
	}
	rec := labelBytes + cifarPixels
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%s: empty CIFAR file", name)
	}
	if len(b)%rec != 0 {
		return nil, nil, fmt.Errorf("%s: size %d is not a multiple of the %d-byte CIFAR record (truncated or wrong format)", name, len(b), rec)
	}
	n := len(b) / rec
	pix = make([]uint8, n*cifarPixels)
	labels = make([]int64, n)
	for i := range n {
		r := b[i*rec : (i+1)*rec]
		y := int(r[labelBytes-1])
		if y >= numClasses {
			return nil, nil, fmt.Errorf("%s: label %d of record %d out of range [0, %d)", name, y, i, numClasses)
		}
		if labelBytes == 2 && int(r[0]) >= 20 {
			return nil, nil, fmt.Errorf("%s: coarse label %d of record %d out of range [0, 20)", name, r[0], i)
		}
		labels[i] = int64(y)
		copy(pix[i*cifarPixels:], r[labelBytes:])
	}
	return pix, labels, nil
}

// ReadCIFAR reads the listed binary files of one CIFAR variant (10 or 100) into one dataset.
func ReadCIFAR(files []string, variant int, classes []string) (*Dataset, error) {
	labelBytes := 1
	if variant == 100 {
		labelBytes = 2
	} else if variant != 10 {
		return nil, fmt.Errorf("CIFAR variant %d: want 10 or 100", variant)
	}
	d := &Dataset{C: 3, H: 32, W: 32, Classes: classes}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pix, labels, err := ParseCIFAR(f, b, labelBytes, variant)
		if err != nil {
			return nil, err
		}
		d.Images = append(d.Images, pix...)
		d.Labels = append(d.Labels, labels...)
	}
	d.N = len(d.Labels)
	return d, d.Validate()
}

// loadCIFARDir reads a split from a folder in the official layout (cifar-10-batches-bin or
// cifar-100-binary).
func loadCIFARDir(dir string, variant int, split Split) (*Dataset, error) {
	if !dirExists(dir) {
		return nil, fmt.Errorf("CIFAR-%d directory %s: %w", variant, dir, fs.ErrNotExist)
	}
	var names []string
	var metaFile string
	var classes []string
	switch variant {
	case 10:
		metaFile, classes = "batches.meta.txt", cifar10Classes
		switch split {
		case Train:
			names = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
		case Test:
			names = []string{"test_batch.bin"}
		}
	case 100:
		metaFile, classes = "fine_label_names.txt", cifar100Classes
		switch split {
		case Train:
			names = []string{"train.bin"}
		case Test:
			names = []string{"test.bin"}
		}
	}
	if names == nil {
		return nil, fmt.Errorf("unknown split %q (want train or test)", split)
	}
	files := make([]string, len(names))
	for i, n := range names {
		files[i] = filepath.Join(dir, n)
		if !fileExists(files[i]) {
			return nil, fmt.Errorf("CIFAR-%d %s split: missing file %s: %w", variant, split, files[i], fs.ErrNotExist)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, metaFile)); err == nil {
		names := strings.Fields(string(b))
		if len(names) != variant {
			return nil, fmt.Errorf("%s: %d class names, want %d", filepath.Join(dir, metaFile), len(names), variant)
		}
		classes = names
	}
	d, err := ReadCIFAR(files, variant, classes)
	if err != nil {
		return nil, err
	}
	d.Name = fmt.Sprintf("cifar%d", variant)
	return d, nil
}
