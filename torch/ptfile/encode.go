package ptfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sort"
	"strconv"
)

// Pickle opcodes used by the writer (protocol 2, the one torch.save uses).
const (
	opProto      = 0x80
	opStop       = '.'
	opMark       = '('
	opEmptyDict  = '}'
	opEmptyList  = ']'
	opEmptyTuple = ')'
	opSetItems   = 'u'
	opAppends    = 'e'
	opTuple      = 't'
	opTuple1     = 0x85
	opTuple2     = 0x86
	opTuple3     = 0x87
	opBinUnicode = 'X'
	opBinInt     = 'J'
	opBinInt1    = 'K'
	opBinInt2    = 'M'
	opLong1      = 0x8a
	opBinFloat   = 'G'
	opNone       = 'N'
	opNewTrue    = 0x88
	opNewFalse   = 0x89
	opGlobal     = 'c'
	opReduce     = 'R'
	opBinPersID  = 'Q'
	opBinPut     = 'q'
	opLongBinPut = 'r'
	opBinGet     = 'h'
	opLongBinGet = 'j'
)

// Encode writes v in torch.save's zip format to w; see Write for the values v may hold.
func Encode(w io.Writer, v any) error {
	return encode(w, v, "archive")
}

type storageRec struct {
	key  string
	data []byte
}

type pickler struct {
	buf      bytes.Buffer
	memo     map[string]int // globals already written, by "module\nname"
	nextMemo int
	storages []storageRec
	byTensor map[*Tensor]string
	depth    int
}

func encode(w io.Writer, v any, archive string) error {
	p := &pickler{memo: map[string]int{}, byTensor: map[*Tensor]string{}}
	p.buf.Write([]byte{opProto, 2})
	if err := p.value(v); err != nil {
		return err
	}
	p.buf.WriteByte(opStop)

	cw := &countWriter{w: w}
	zw := zip.NewWriter(cw)
	records := []storageRec{{archive + "/data.pkl", p.buf.Bytes()}}
	// torch 2.x reads byteorder when present; 1.x ignores records it does not ask for.
	records = append(records, storageRec{archive + "/byteorder", []byte("little")})
	for _, s := range p.storages {
		records = append(records, storageRec{archive + "/data/" + s.key, s.data})
	}
	records = append(records, storageRec{archive + "/version", []byte("3\n")})
	for _, r := range records {
		if err := writeRecord(zw, cw, r.key, r.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeRecord stores data uncompressed with its first byte on a 64-byte boundary, padding the
// local header's extra field exactly as PyTorch's writer does ("FB" block of 'Z's), so the
// storages can be memory-mapped by readers that rely on it.
func writeRecord(zw *zip.Writer, cw *countWriter, name string, data []byte) error {
	if err := zw.Flush(); err != nil {
		return err
	}
	start := cw.n + 30 + int64(len(name)) + 4
	pad := 0
	if m := start % 64; m != 0 {
		pad = int(64 - m)
	}
	extra := make([]byte, 4+pad)
	extra[0], extra[1] = 'F', 'B'
	binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
	for i := 4; i < len(extra); i++ {
		extra[i] = 'Z'
	}
	fh := &zip.FileHeader{
		Name:               name,
		Method:             zip.Store,
		CRC32:              crc32.ChecksumIEEE(data),
		CompressedSize64:   uint64(len(data)),
		UncompressedSize64: uint64(len(data)),
		Extra:              extra,
	}
	fw, err := zw.CreateRaw(fh)
	if err != nil {
		return err
	}
	_, err = fw.Write(data)
	return err
}

func (p *pickler) global(module, name string) {
	key := module + "\n" + name
	if idx, ok := p.memo[key]; ok {
		p.get(idx)
		return
	}
	p.buf.WriteByte(opGlobal)
	p.buf.WriteString(key + "\n")
	p.put(key)
}

func (p *pickler) put(key string) {
	idx := p.nextMemo
	p.nextMemo++
	p.memo[key] = idx
	if idx < 256 {
		p.buf.Write([]byte{opBinPut, byte(idx)})
		return
	}
	p.buf.WriteByte(opLongBinPut)
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(idx)))
}

func (p *pickler) get(idx int) {
	if idx < 256 {
		p.buf.Write([]byte{opBinGet, byte(idx)})
		return
	}
	p.buf.WriteByte(opLongBinGet)
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(idx)))
}

func (p *pickler) str(s string) {
	p.buf.WriteByte(opBinUnicode)
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
	p.buf.WriteString(s)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.buf.Write([]byte{opBinInt1, byte(v)})
	case v >= 0 && v < 1<<16:
		p.buf.WriteByte(opBinInt2)
		p.buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(v)))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.buf.WriteByte(opBinInt)
		p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(int32(v))))
	default:
		// LONG1: minimal little-endian two's complement, as Python's pickle writes it.
		b := binary.LittleEndian.AppendUint64(nil, uint64(v))
		for len(b) > 1 {
			last, prev := b[len(b)-1], b[len(b)-2]
			if (last == 0 && prev&0x80 == 0) || (last == 0xff && prev&0x80 != 0) {
				b = b[:len(b)-1]
				continue
			}
			break
		}
		p.buf.Write([]byte{opLong1, byte(len(b))})
		p.buf.Write(b)
	}
}

func (p *pickler) float(v float64) {
	p.buf.WriteByte(opBinFloat)
	p.buf.Write(binary.BigEndian.AppendUint64(nil, math.Float64bits(v)))
}

func (p *pickler) ints(vs []int64) {
	switch len(vs) {
	case 0:
		p.buf.WriteByte(opEmptyTuple)
		return
	case 1, 2, 3:
		for _, v := range vs {
			p.int(v)
		}
		p.buf.WriteByte([]byte{opTuple1, opTuple2, opTuple3}[len(vs)-1])
		return
	}
	p.buf.WriteByte(opMark)
	for _, v := range vs {
		p.int(v)
	}
	p.buf.WriteByte(opTuple)
}

const maxDepth = 1000

var errTooDeep = errors.New("value nested deeper than 1000 levels (cyclic?)")

func (p *pickler) value(v any) error {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return errTooDeep
	}
	switch x := v.(type) {
	case nil:
		p.buf.WriteByte(opNone)
	case bool:
		if x {
			p.buf.WriteByte(opNewTrue)
		} else {
			p.buf.WriteByte(opNewFalse)
		}
	case int:
		p.int(int64(x))
	case int32:
		p.int(int64(x))
	case int64:
		p.int(x)
	case float32:
		p.float(float64(x))
	case float64:
		p.float(x)
	case string:
		p.str(x)
	case []byte:
		// Protocol 2 has no bytes opcode; Python's pickler spells bytes this way.
		r := make([]rune, len(x))
		for i, c := range x {
			r[i] = rune(c)
		}
		p.global("_codecs", "encode")
		p.str(string(r))
		p.str("latin1")
		p.buf.Write([]byte{opTuple2, opReduce})
	case []any:
		return p.list(len(x), func(i int) error { return p.value(x[i]) })
	case []int:
		return p.list(len(x), func(i int) error { p.int(int64(x[i])); return nil })
	case []int64:
		return p.list(len(x), func(i int) error { p.int(x[i]); return nil })
	case []float64:
		return p.list(len(x), func(i int) error { p.float(x[i]); return nil })
	case []string:
		return p.list(len(x), func(i int) error { p.str(x[i]); return nil })
	case *OrderedDict:
		if x == nil {
			p.buf.WriteByte(opNone)
			return nil
		}
		p.global("collections", "OrderedDict")
		p.buf.Write([]byte{opEmptyTuple, opReduce})
		for _, k := range x.Keys {
			if _, ok := x.Values[k]; !ok {
				return fmt.Errorf("OrderedDict key %q listed in Keys but missing from Values", k)
			}
		}
		if len(x.Keys) != len(x.Values) {
			return fmt.Errorf("OrderedDict has %d keys but %d values", len(x.Keys), len(x.Values))
		}
		return p.items(len(x.Keys), func(i int) error {
			p.str(x.Keys[i])
			if err := p.value(x.Values[x.Keys[i]]); err != nil {
				return fmt.Errorf("key %q: %w", x.Keys[i], err)
			}
			return nil
		})
	case map[string]any:
		p.buf.WriteByte(opEmptyDict)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return p.items(len(keys), func(i int) error {
			p.str(keys[i])
			if err := p.value(x[keys[i]]); err != nil {
				return fmt.Errorf("key %q: %w", keys[i], err)
			}
			return nil
		})
	case map[int]any:
		m := make(map[int64]any, len(x))
		for k, v := range x {
			m[int64(k)] = v
		}
		return p.intDict(m)
	case map[int64]any:
		return p.intDict(x)
	case *Tensor:
		if x == nil {
			p.buf.WriteByte(opNone)
			return nil
		}
		return p.tensor(x)
	default:
		return fmt.Errorf("cannot save a value of Go type %T", v)
	}
	return nil
}

func (p *pickler) intDict(x map[int64]any) error {
	p.buf.WriteByte(opEmptyDict)
	keys := make([]int64, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return p.items(len(keys), func(i int) error {
		p.int(keys[i])
		if err := p.value(x[keys[i]]); err != nil {
			return fmt.Errorf("key %d: %w", keys[i], err)
		}
		return nil
	})
}

// items writes n key/value pairs onto the dict on the stack, in SETITEMS batches of 1000 as
// Python's pickler does, so that no single MARK frame grows without bound.
func (p *pickler) items(n int, each func(i int) error) error {
	for start := 0; start < n; start += 1000 {
		p.buf.WriteByte(opMark)
		for i := start; i < n && i < start+1000; i++ {
			if err := each(i); err != nil {
				return err
			}
		}
		p.buf.WriteByte(opSetItems)
	}
	return nil
}

func (p *pickler) list(n int, each func(i int) error) error {
	p.buf.WriteByte(opEmptyList)
	for start := 0; start < n; start += 1000 {
		p.buf.WriteByte(opMark)
		for i := start; i < n && i < start+1000; i++ {
			if err := each(i); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		p.buf.WriteByte(opAppends)
	}
	return nil
}

// tensor writes torch._utils._rebuild_tensor_v2(storage, 0, shape, strides, False, OrderedDict()),
// the exact call torch.save records for a plain tensor.
func (p *pickler) tensor(t *Tensor) error {
	info, ok := dtypeByName(t.DType)
	if !ok {
		return fmt.Errorf("tensor dtype %q is not supported", t.DType)
	}
	numel := int64(1)
	for _, s := range t.Shape {
		if s < 0 {
			return fmt.Errorf("tensor shape %v has a negative size", t.Shape)
		}
		if s != 0 && numel > math.MaxInt64/s {
			return fmt.Errorf("tensor shape %v overflows", t.Shape)
		}
		numel *= s
	}
	if want := numel * int64(info.size); int64(len(t.Data)) != want {
		return fmt.Errorf("%s tensor of shape %v needs %d bytes of data, has %d", t.DType, t.Shape, want, len(t.Data))
	}
	key, seen := p.byTensor[t]
	if !seen {
		key = strconv.Itoa(len(p.storages))
		p.byTensor[t] = key
		p.storages = append(p.storages, storageRec{key, t.Data})
	}
	strides := make([]int64, len(t.Shape))
	acc := int64(1)
	for i := len(t.Shape) - 1; i >= 0; i-- {
		strides[i] = acc
		if t.Shape[i] > 1 {
			acc *= t.Shape[i]
		}
	}

	p.global("torch._utils", "_rebuild_tensor_v2")
	p.buf.WriteByte(opMark)
	// persistent id: ('storage', torch.<Type>Storage, key, 'cpu', numel)
	p.buf.WriteByte(opMark)
	p.str("storage")
	p.global("torch", info.storage)
	p.str(key)
	p.str("cpu")
	p.int(numel)
	p.buf.WriteByte(opTuple)
	p.buf.WriteByte(opBinPersID)
	p.int(0)
	p.ints(t.Shape)
	p.ints(strides)
	p.buf.WriteByte(opNewFalse)
	p.global("collections", "OrderedDict")
	p.buf.Write([]byte{opEmptyTuple, opReduce})
	p.buf.WriteByte(opTuple)
	p.buf.WriteByte(opReduce)
	return nil
}
