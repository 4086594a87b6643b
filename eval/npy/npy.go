package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
)

// Array is an n-dimensional array in C (row-major) order. Data is []float32, []float64, []int64,
// []uint8 or []bool to match DType ("float32", "float64", "int64", "uint8", "bool"); a 0-d array
// has an empty Shape and one element.
type Array struct {
	DType string
	Shape []int
	Data  any
}

var magic = []byte("\x93NUMPY")

// WriteFloat32 writes data with the given shape (1-D when no shape is given) to path atomically.
func WriteFloat32(path string, data []float32, shape ...int) error {
	return write(path, "<f4", len(data), shape, func(w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, data)
	})
}

// WriteFloat64 is WriteFloat32 for float64 data.
func WriteFloat64(path string, data []float64, shape ...int) error {
	return write(path, "<f8", len(data), shape, func(w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, data)
	})
}

// WriteInt64 is WriteFloat32 for int64 data.
func WriteInt64(path string, data []int64, shape ...int) error {
	return write(path, "<i8", len(data), shape, func(w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, data)
	})
}

// WriteUint8 is WriteFloat32 for uint8 data.
func WriteUint8(path string, data []uint8, shape ...int) error {
	return write(path, "|u1", len(data), shape, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteBool is WriteFloat32 for bool data.
func WriteBool(path string, data []bool, shape ...int) error {
	return write(path, "|b1", len(data), shape, func(w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, data)
	})
}

// header renders the header exactly as numpy.save does, so the data starts on a 64-byte boundary.
func header(descr string, shape []int) []byte {
	var dims []string
	for _, s := range shape {
		dims = append(dims, strconv.Itoa(s))
	}
	tuple := "(" + strings.Join(dims, ", ") + ")"
	if len(shape) == 1 {
		tuple = "(" + dims[0] + ",)"
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, tuple)
	// numpy leaves room for the first axis to grow to 21 digits in place, then pads to 64
	// bytes (a whole extra block when already aligned); matching it makes the files identical.
	if len(shape) > 0 {
		h += strings.Repeat(" ", max(0, 21-len(dims[0])))
	}
	total := len(magic) + 2 + 2 + len(h) + 1
	pad := 64 - total%64
	h += strings.Repeat(" ", pad) + "\n"
	out := append([]byte(nil), magic...)
	out = append(out, 1, 0)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(h)))
	return append(out, h...)
}

func write(path, descr string, n int, shape []int, body func(io.Writer) error) (err error) {
	if len(shape) == 0 {
		shape = []int{n}
	}
	numel := 1
	for _, s := range shape {
		if s < 0 {
			return fmt.Errorf("npy: write %s: negative dimension in shape %v", path, shape)
		}
		numel *= s
	}
	if numel != n {
		return fmt.Errorf("npy: write %s: shape %v holds %d elements, data has %d", path, shape, numel, n)
	}
	h := header(descr, shape)
	if len(h) > math.MaxUint16 {
		return fmt.Errorf("npy: write %s: shape %v too long for format 1.0", path, shape)
	}
	if err := atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(h); err != nil {
			return err
		}
		return body(w)
	}); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	return nil
}

// Read loads a .npy file of a supported dtype in C order. Big-endian files are converted.
func Read(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("npy: read %s: %w", path, err)
	}
	a, err := decode(bufio.NewReader(f), st.Size())
	if err != nil {
		return nil, fmt.Errorf("npy: read %s: %w", path, err)
	}
	return a, nil
}

// Header is a parsed .npy header.
type Header struct {
	Descr        string
	FortranOrder bool
	Shape        []int
}

// ParseHeader reads the magic, version and header dict from the start of a .npy stream and
// returns it with the number of bytes consumed.
func ParseHeader(r io.Reader) (Header, int, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return Header{}, 0, errors.New("file too short for a .npy header")
	}
	if !bytes.Equal(pre[:6], magic) {
		return Header{}, 0, errors.New("not a .npy file (bad magic)")
	}
	var hlen int
	n := 8
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, 0, errors.New("truncated header length")
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
		n += 2
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, 0, errors.New("truncated header length")
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
		n += 4
	default:
		return Header{}, 0, fmt.Errorf("unsupported .npy format version %d.%d", pre[6], pre[7])
	}
	if hlen > 1<<20 {
		return Header{}, 0, fmt.Errorf("header length %d is implausibly large", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, 0, fmt.Errorf("truncated header: wanted %d bytes", hlen)
	}
	h, err := parseDict(string(hb))
	if err != nil {
		return Header{}, 0, fmt.Errorf("bad header %q: %w", strings.TrimSpace(string(hb)), err)
	}
	return h, n + hlen, nil
}

type dtype struct {
	name  string
	size  int
	order binary.ByteOrder
}

func parseDescr(d string) (dtype, error) {
	if len(d) < 2 {
		return dtype{}, fmt.Errorf("unsupported dtype %q", d)
	}
	var order binary.ByteOrder
	switch d[0] {
	case '<', '|', '=':
		order = binary.LittleEndian
	case '>':
		order = binary.BigEndian
	default:
		return dtype{}, fmt.Errorf("unsupported dtype %q", d)
	}
	switch d[1:] {
	case "f4":
		return dtype{"float32", 4, order}, nil
	case "f8":
		return dtype{"float64", 8, order}, nil
	case "i8":
		return dtype{"int64", 8, order}, nil
	case "u1":
		return dtype{"uint8", 1, order}, nil
	case "b1":
		return dtype{"bool", 1, order}, nil
	}
	return dtype{}, fmt.Errorf("unsupported dtype %q (want float32, float64, int64, uint8 or bool)", d)
}

func decode(r io.Reader, size int64) (*Array, error) {
	h, n, err := ParseHeader(r)
	if err != nil {
		return nil, err
	}
	if h.FortranOrder {
		return nil, errors.New("fortran_order True is not supported; save a C-ordered array (np.ascontiguousarray)")
	}
	dt, err := parseDescr(h.Descr)
	if err != nil {
		return nil, err
	}
	numel := int64(1)
	for _, s := range h.Shape {
		if s < 0 {
			return nil, fmt.Errorf("negative dimension in shape %v", h.Shape)
		}
		if s != 0 && numel > math.MaxInt64/int64(s)/int64(dt.size) {
			return nil, fmt.Errorf("shape %v overflows", h.Shape)
		}
		numel *= int64(s)
	}
	want := numel * int64(dt.size)
	if have := size - int64(n); have != want {
		if have < want {
			return nil, fmt.Errorf("truncated: shape %v of %s needs %d data bytes, file has %d", h.Shape, dt.name, want, have)
		}
		return nil, fmt.Errorf("%d trailing bytes after the %s data of shape %v", have-want, dt.name, h.Shape)
	}
	raw := make([]byte, want)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("truncated data: %w", err)
	}
	a := &Array{DType: dt.name, Shape: h.Shape}
	switch dt.name {
	case "float32":
		out := make([]float32, numel)
		for i := range out {
			out[i] = math.Float32frombits(dt.order.Uint32(raw[4*i:]))
		}
		a.Data = out
	case "float64":
		out := make([]float64, numel)
		for i := range out {
			out[i] = math.Float64frombits(dt.order.Uint64(raw[8*i:]))
		}
		a.Data = out
	case "int64":
		out := make([]int64, numel)
		for i := range out {
			out[i] = int64(dt.order.Uint64(raw[8*i:]))
		}
		a.Data = out
	case "uint8":
		a.Data = raw
	case "bool":
		out := make([]bool, numel)
		for i, b := range raw {
			out[i] = b != 0
		}
		a.Data = out
	}
	return a, nil
}

// Float32s returns float32 data, or uint8 data widened.
func (a *Array) Float32s() ([]float32, error) {
	switch d := a.Data.(type) {
	case []float32:
		return d, nil
	case []uint8:
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = float32(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("npy: %s array is not float32", a.DType)
}

// Float64s returns float64 data, or float32, uint8 or int64 data converted; int64 values beyond
// 2^53 are refused rather than rounded.
func (a *Array) Float64s() ([]float64, error) {
	switch d := a.Data.(type) {
	case []float64:
		return d, nil
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out, nil
	case []uint8:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out, nil
	case []int64:
		out := make([]float64, len(d))
		for i, v := range d {
			if v > 1<<53 || v < -(1<<53) {
				return nil, fmt.Errorf("npy: int64 value %d at %d is not exact as float64", v, i)
			}
			out[i] = float64(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("npy: %s array is not numeric", a.DType)
}

// Int64s returns int64 data, or uint8 and bool data widened (labels are often saved as uint8).
func (a *Array) Int64s() ([]int64, error) {
	switch d := a.Data.(type) {
	case []int64:
		return d, nil
	case []uint8:
		out := make([]int64, len(d))
		for i, v := range d {
			out[i] = int64(v)
		}
		return out, nil
	case []bool:
		out := make([]int64, len(d))
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("npy: %s array is not an integer array", a.DType)
}
