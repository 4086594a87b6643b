package data

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"path/filepath"
)

// IDX is LeCun's format: two zero bytes, a type code, the number of dimensions, then one
// big-endian uint32 per dimension and the data in row-major order.
const idxUint8 = 0x08

func parseIDXHeader(name string, b []byte, wantDims int) (dims []int, body []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%s: truncated IDX header (%d bytes)", name, len(b))
	}
	if b[0] != 0 || b[1] != 0 {
		return nil, nil, fmt.Errorf("%s: bad IDX magic number %#08x (first two bytes must be zero)", name, binary.BigEndian.Uint32(b))
	}
	if b[2] != idxUint8 {
		return nil, nil, fmt.Errorf("%s: IDX data type %#02x, only unsigned byte (0x08) is supported", name, b[2])
	}
	nd := int(b[3])
	if nd != wantDims {
		return nil, nil, fmt.Errorf("%s: IDX file has %d dimensions, want %d (magic %#08x)", name, nd, wantDims, binary.BigEndian.Uint32(b))
	}
	if len(b) < 4+4*nd {
		return nil, nil, fmt.Errorf("%s: truncated IDX header: %d dimension sizes need %d bytes, have %d", name, nd, 4+4*nd, len(b))
	}
	dims = make([]int, nd)
	total := uint64(1)
	for i := range dims {
		v := binary.BigEndian.Uint32(b[4+4*i:])
		dims[i] = int(v)
		total *= uint64(v)
		if total > 1<<40 {
			return nil, nil, fmt.Errorf("%s: IDX dimensions %v are implausibly large", name, dims[:i+1])
		}
	}
	body = b[4+4*nd:]
	if uint64(len(body)) != total {
		what := "truncated"
		if uint64(len(body)) > total {
			what = "trailing bytes in"
		}
		return nil, nil, fmt.Errorf("%s: %s IDX data: dimensions %v need %d bytes, file has %d", name, what, dims, total, len(body))
	}
	return dims, body, nil
}

// ParseIDXImages parses an idx3-ubyte image file (N×H×W); name is used in errors.
func ParseIDXImages(name string, b []byte) (n, h, w int, pix []uint8, err error) {
	dims, body, err := parseIDXHeader(name, b, 3)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if dims[1] == 0 || dims[2] == 0 {
		return 0, 0, 0, nil, fmt.Errorf("%s: empty IDX image size %d×%d", name, dims[1], dims[2])
	}
	return dims[0], dims[1], dims[2], body, nil
}

// ParseIDXLabels parses an idx1-ubyte label file.
func ParseIDXLabels(name string, b []byte) ([]int64, error) {
	_, body, err := parseIDXHeader(name, b, 1)
	if err != nil {
		return nil, err
	}
	labels := make([]int64, len(body))
	for i, v := range body {
		labels[i] = int64(v)
	}
	return labels, nil
}

// ReadIDX reads an image and a label file (raw or gzipped). classes fixes the class names; nil
// means "0".."K-1" with K one more than the largest label.
func ReadIDX(imagesPath, labelsPath string, classes []string) (*Dataset, error) {
	ib, err := readFileMaybeGzip(imagesPath)
	if err != nil {
		return nil, err
	}
	n, h, w, pix, err := ParseIDXImages(imagesPath, ib)
	if err != nil {
		return nil, err
	}
	lb, err := readFileMaybeGzip(labelsPath)
	if err != nil {
		return nil, err
	}
	labels, err := ParseIDXLabels(labelsPath, lb)
	if err != nil {
		return nil, err
	}
	return idxDataset(imagesPath, labelsPath, n, h, w, pix, labels, classes)
}

func idxDataset(imagesPath, labelsPath string, n, h, w int, pix []uint8, labels []int64, classes []string) (*Dataset, error) {
	if len(labels) != n {
		return nil, fmt.Errorf("%s has %d images but %s has %d labels", imagesPath, n, labelsPath, len(labels))
	}
	if classes == nil {
		k := int64(0)
		for _, y := range labels {
			k = max(k, y+1)
		}
		classes = numberedClasses(int(k))
	}
	for i, y := range labels {
		if y >= int64(len(classes)) {
			return nil, fmt.Errorf("%s: label %d of record %d out of range [0, %d)", labelsPath, y, i, len(classes))
		}
	}
	d := &Dataset{Name: filepath.Base(filepath.Dir(imagesPath)), Images: pix, Labels: labels, N: n, C: 1, H: h, W: w, Classes: classes}
	return d, d.Validate()
}

// idxFiles finds the image and label files of a split in dir: the official names (with or without
// .gz) first, then any single file matching the official pattern, as EMNIST and KMNIST prefix them.
func idxFiles(dir string, split Split) (images, labels string, err error) {
	if !dirExists(dir) {
		return "", "", fmt.Errorf("IDX directory %s: %w", dir, fs.ErrNotExist)
	}
	prefix := "train"
	if split == Test {
		prefix = "t10k"
	} else if split != Train {
		return "", "", fmt.Errorf("unknown split %q (want train or test)", split)
	}
	find := func(kind, nd string) (string, error) {
		base := prefix + "-" + kind + "-" + nd + "-ubyte"
		for _, cand := range []string{base + ".gz", base} {
			if p := filepath.Join(dir, cand); fileExists(p) {
				return p, nil
			}
		}
		pats := []string{"*" + prefix + "-" + kind + "*" + nd + "-ubyte*"}
		if split == Test {
			pats = append(pats, "*test-"+kind+"*"+nd+"-ubyte*")
		}
		var found []string
		for _, pat := range pats {
			m, _ := filepath.Glob(filepath.Join(dir, pat))
			found = append(found, m...)
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			return "", fmt.Errorf("missing IDX file %s (or %s.gz): %w", filepath.Join(dir, base), base, fs.ErrNotExist)
		default:
			return "", fmt.Errorf("%s: several files could be the %s %s: %v", dir, split, kind, found)
		}
	}
	if images, err = find("images", "idx3"); err != nil {
		return "", "", err
	}
	if labels, err = find("labels", "idx1"); err != nil {
		return "", "", err
	}
	return images, labels, nil
}
