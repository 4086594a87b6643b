package data

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// MATLAB level 5 MAT-file element types (MAT-File Format, table 1-1).
const (
	miINT8       = 1
	miUINT8      = 2
	miINT16      = 3
	miUINT16     = 4
	miINT32      = 5
	miUINT32     = 6
	miSINGLE     = 7
	miDOUBLE     = 9
	miINT64      = 12
	miUINT64     = 13
	miMATRIX     = 14
	miCOMPRESSED = 15
)

// Array classes that hold plain numbers; the others (cell, struct, char, sparse...) are skipped.
const (
	mxDOUBLE = 6
	mxUINT64 = 15
)

// matArray is one numeric variable: its MATLAB dimensions and its real part as stored. MATLAB
// may store a double array with a narrower element type, so the element type is kept apart from
// the class and converted on use.
type matArray struct {
	dims  []int
	etype uint32
	raw   []byte
	order binary.ByteOrder
}

func (a *matArray) count() int {
	n := 1
	for _, d := range a.dims {
		n *= d
	}
	return n
}

func elemSize(t uint32) int {
	switch t {
	case miINT8, miUINT8:
		return 1
	case miINT16, miUINT16:
		return 2
	case miINT32, miUINT32, miSINGLE:
		return 4
	case miDOUBLE, miINT64, miUINT64:
		return 8
	}
	return 0
}

// value returns element i as float64, which represents every integer SVHN can hold exactly.
func (a *matArray) value(i int) float64 {
	b := a.raw
	switch a.etype {
	case miINT8:
		return float64(int8(b[i]))
	case miUINT8:
		return float64(b[i])
	case miINT16:
		return float64(int16(a.order.Uint16(b[2*i:])))
	case miUINT16:
		return float64(a.order.Uint16(b[2*i:]))
	case miINT32:
		return float64(int32(a.order.Uint32(b[4*i:])))
	case miUINT32:
		return float64(a.order.Uint32(b[4*i:]))
	case miSINGLE:
		return float64(math.Float32frombits(a.order.Uint32(b[4*i:])))
	case miDOUBLE:
		return math.Float64frombits(a.order.Uint64(b[8*i:]))
	case miINT64:
		return float64(int64(a.order.Uint64(b[8*i:])))
	case miUINT64:
		return float64(a.order.Uint64(b[8*i:]))
	}
	return math.NaN()
}

type matParser struct {
	name  string
	order binary.ByteOrder
	vars  map[string]*matArray
}

// parseMAT reads the numeric variables of a MATLAB level-5 MAT-file (the format of scipy.io.savemat
// and of MATLAB's -v6 and -v7 options, compressed or not). v7.3 files are HDF5 and are rejected.
func parseMAT(name string, b []byte) (map[string]*matArray, error) {
	if len(b) < 128 {
		return nil, fmt.Errorf("%s: truncated MAT-file header (%d bytes, need 128)", name, len(b))
	}
	if bytes.HasPrefix(b, []byte("\x89HDF")) || bytes.Contains(b[:116], []byte("MATLAB 7.3")) {
		return nil, fmt.Errorf("%s: MATLAB v7.3 (HDF5) MAT-file; save it with -v7 or scipy.io.savemat", name)
	}
	p := &matParser{name: name, vars: map[string]*matArray{}}
	switch string(b[126:128]) {
	case "IM":
		p.order = binary.LittleEndian
	case "MI":
		p.order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: not a MATLAB 5 MAT-file (endian indicator %q, want \"IM\" or \"MI\")", name, b[126:128])
	}
	if v := p.order.Uint16(b[124:]); v != 0x0100 {
		return nil, fmt.Errorf("%s: MAT-file version %#04x, want 0x0100", name, v)
	}
	rest := b[128:]
	for len(rest) > 0 {
		if len(rest) < 8 {
			return nil, fmt.Errorf("%s: %d trailing bytes after the last MAT element (truncated?)", name, len(rest))
		}
		typ, n, data, next, err := p.element(rest)
		if err != nil {
			return nil, err
		}
		switch typ {
		case miMATRIX:
			if err := p.matrix(data); err != nil {
				return nil, err
			}
		case miCOMPRESSED:
			if err := p.compressed(data); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s: unexpected top-level MAT element type %d (%d bytes)", name, typ, n)
		}
		rest = next
	}
	return p.vars, nil
}

// element splits one tagged element off b. Compressed elements are not padded; all others are
// padded to 8 bytes, and small ones pack their size into the tag.
func (p *matParser) element(b []byte) (typ uint32, n int, data, rest []byte, err error) {
	if len(b) < 8 {
		return 0, 0, nil, nil, fmt.Errorf("%s: truncated MAT element tag", p.name)
	}
	typ = p.order.Uint32(b)
	if typ>>16 != 0 {
		n = int(typ >> 16)
		typ &= 0xffff
		if n > 4 {
			return 0, 0, nil, nil, fmt.Errorf("%s: small MAT element claims %d bytes (at most 4)", p.name, n)
		}
		return typ, n, b[4 : 4+n], b[8:], nil
	}
	n64 := uint64(p.order.Uint32(b[4:]))
	if n64 > uint64(len(b)-8) {
		return 0, 0, nil, nil, fmt.Errorf("%s: truncated MAT element: type %d claims %d bytes, %d remain", p.name, typ, n64, len(b)-8)
	}
	n = int(n64)
	data = b[8 : 8+n]
	end := 8 + n
	if typ != miCOMPRESSED {
		end = 8 + (n+7)/8*8
	}
	if end > len(b) {
		end = len(b) // the last element of a file may omit its padding
	}
	return typ, n, data, b[end:], nil
}

func (p *matParser) compressed(data []byte) error {
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: compressed MAT element: %w", p.name, err)
	}
	defer zr.Close()
	var tag [8]byte
	if _, err := io.ReadFull(zr, tag[:]); err != nil {
		return fmt.Errorf("%s: compressed MAT element: reading tag: %w", p.name, err)
	}
	typ := p.order.Uint32(tag[:])
	n := int64(p.order.Uint32(tag[4:]))
	if typ != miMATRIX {
		return fmt.Errorf("%s: compressed MAT element holds type %d, want a matrix (14)", p.name, typ)
	}
	// ReadAll over a limit grows with the data actually present, so a lying size cannot make us
	// allocate gigabytes up front.
	body, err := io.ReadAll(io.LimitReader(zr, n))
	if err != nil {
		return fmt.Errorf("%s: compressed MAT element: %w", p.name, err)
	}
	if int64(len(body)) != n {
		return fmt.Errorf("%s: compressed MAT element truncated: %d of %d bytes", p.name, len(body), n)
	}
	return p.matrix(body)
}

func (p *matParser) matrix(b []byte) error {
	if len(b) == 0 {
		return nil // an empty matrix has no subelements
	}
	typ, n, flags, rest, err := p.element(b)
	if err != nil {
		return err
	}
	if typ != miUINT32 || n != 8 {
		return fmt.Errorf("%s: MAT array flags: type %d size %d, want uint32 × 2", p.name, typ, n)
	}
	class := p.order.Uint32(flags) & 0xff
	complexFlag := p.order.Uint32(flags)&0x0800 != 0
	typ, n, dimb, rest, err := p.element(rest)
	if err != nil {
		return err
	}
	if typ != miINT32 || n%4 != 0 || n < 8 {
		return fmt.Errorf("%s: MAT dimensions: type %d size %d, want at least two int32", p.name, typ, n)
	}
	dims := make([]int, n/4)
	total := uint64(1)
	for i := range dims {
		v := int32(p.order.Uint32(dimb[4*i:]))
		if v < 0 {
			return fmt.Errorf("%s: MAT dimension %d is negative (%d)", p.name, i, v)
		}
		dims[i] = int(v)
		total *= uint64(v)
		if total > 1<<40 {
			return fmt.Errorf("%s: MAT dimensions %v are implausibly large", p.name, dims[:i+1])
		}
	}
	typ, _, nameb, rest, err := p.element(rest)
	if err != nil {
		return err
	}
	if typ != miINT8 {
		return fmt.Errorf("%s: MAT array name has type %d, want int8", p.name, typ)
	}
	varName := string(nameb)
	if class < mxDOUBLE || class > mxUINT64 {
		return nil // cells, structs, chars, sparse: not needed here
	}
	if complexFlag {
		return fmt.Errorf("%s: variable %q is complex, want real numbers", p.name, varName)
	}
	typ, n, raw, _, err := p.element(rest)
	if err != nil {
		return err
	}
	size := elemSize(typ)
	if size == 0 {
		return fmt.Errorf("%s: variable %q has data of unsupported element type %d", p.name, varName, typ)
	}
	if uint64(n) != total*uint64(size) {
		return fmt.Errorf("%s: variable %q: dimensions %v need %d bytes of type %d, element has %d", p.name, varName, dims, total*uint64(size), typ, n)
	}
	p.vars[varName] = &matArray{dims: dims, etype: typ, raw: raw, order: p.order}
	return nil
}

// ParseSVHN decodes an SVHN cropped-digits file: X is H×W×C×N uint8 in MATLAB's column-major order
// and y holds N labels 1..10, where 10 stands for the digit 0.
func ParseSVHN(name string, b []byte) (*Dataset, error) {
	vars, err := parseMAT(name, b)
	if err != nil {
		return nil, err
	}
	x, y := vars["X"], vars["y"]
	if x == nil || y == nil {
		return nil, fmt.Errorf("%s: SVHN file needs numeric variables X and y (found %d variables)", name, len(vars))
	}
	dims := x.dims
	if len(dims) == 3 {
		dims = append(dims, 1) // MATLAB drops a trailing singleton dimension
	}
	if len(dims) != 4 || (dims[2] != 1 && dims[2] != 3) || dims[0] == 0 || dims[1] == 0 {
		return nil, fmt.Errorf("%s: X has dimensions %v, want H×W×C×N with C 1 or 3", name, x.dims)
	}
	h, w, c, n := dims[0], dims[1], dims[2], dims[3]
	if len(y.dims) != 2 || (y.dims[0] != 1 && y.dims[1] != 1) || y.count() != n {
		return nil, fmt.Errorf("%s: y has dimensions %v, want %d×1 to match X's %d images", name, y.dims, n, n)
	}
	d := &Dataset{Name: "svhn", N: n, C: c, H: h, W: w, Classes: numberedClasses(10),
		Images: make([]uint8, x.count()), Labels: make([]int64, n)}
	for i := range n {
		v := y.value(i)
		if v != math.Trunc(v) || v < 1 || v > 10 {
			return nil, fmt.Errorf("%s: label y(%d) = %v out of range 1..10", name, i+1, v)
		}
		d.Labels[i] = int64(v) % 10
	}
	plane := h * w
	fast := x.etype == miUINT8
	for img := range n {
		for ch := range c {
			src := (img*c + ch) * plane
			dst := d.Images[src : src+plane]
			for col := range w {
				for row := range h {
					k := src + col*h + row
					var v uint8
					if fast {
						v = x.raw[k]
					} else {
						f := x.value(k)
						if f != math.Trunc(f) || f < 0 || f > 255 {
							return nil, fmt.Errorf("%s: pixel X(%d) = %v is not a byte value", name, k+1, f)
						}
						v = uint8(f)
					}
					dst[row*w+col] = v
				}
			}
		}
	}
	return d, d.Validate()
}

// ReadSVHN reads an SVHN .mat file.
func ReadSVHN(path string) (*Dataset, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSVHN(path, b)
}
