package ptfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// The unpickler is written for torch.save files: it knows the handful of globals those files
// reference and refuses every other one, so a file can never make it run arbitrary code or build
// an object it cannot represent.

type pyList struct{ items []any }
type pySet struct{ items []any }
type pyTuple []any
type pyGlobal struct{ module, name string }
type markObj struct{}

// storageRef is what persistent_load returns: a typed view of one data/<key> record.
type storageRef struct {
	dtype dtypeInfo
	key   string
	numel int64
}

// storageLoader returns the first need bytes of record data/<key>, or an error when the record is
// missing or shorter.
type storageLoader func(key string, need int64, dtype string) ([]byte, error)

type unpickler struct {
	data     []byte
	pos      int
	stack    []any
	marks    []int
	memo     map[int]any
	loader   storageLoader
	storages map[string]*storageRef
}

type pickleError struct {
	pos int
	msg string
}

func (e *pickleError) Error() string { return fmt.Sprintf("data.pkl offset %d: %s", e.pos, e.msg) }

func (u *unpickler) errf(format string, args ...any) error {
	return &pickleError{u.pos, fmt.Sprintf(format, args...)}
}

var errTruncated = errors.New("pickle ends early")

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errf("%v: wanted %d more bytes, %d left", errTruncated, n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.errf("%v: unterminated line", errTruncated)
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) u8() (int, error) {
	b, err := u.read(1)
	if err != nil {
		return 0, err
	}
	return int(b[0]), nil
}

func (u *unpickler) u16() (int, error) {
	b, err := u.read(2)
	if err != nil {
		return 0, err
	}
	return int(binary.LittleEndian.Uint16(b)), nil
}

func (u *unpickler) u32() (uint32, error) {
	b, err := u.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (u *unpickler) u64len() (int, error) {
	b, err := u.read(8)
	if err != nil {
		return 0, err
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(u.data)) {
		return 0, u.errf("%v: length %d exceeds the pickle", errTruncated, n)
	}
	return int(n), nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	floor := 0
	if len(u.marks) > 0 {
		floor = u.marks[len(u.marks)-1]
	}
	if len(u.stack)-floor < n {
		return nil, u.errf("stack underflow")
	}
	items := append([]any(nil), u.stack[len(u.stack)-n:]...)
	u.stack = u.stack[:len(u.stack)-n]
	return items, nil
}

func (u *unpickler) memoGet(i int) error {
	v, ok := u.memo[i]
	if !ok {
		return u.errf("memo key %d not defined", i)
	}
	u.push(v)
	return nil
}

func (u *unpickler) memoPut(i int) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) run() (any, error) {
	for {
		opPos := u.pos
		op, err := u.u8()
		if err != nil {
			return nil, err
		}
		switch op {
		case opStop:
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case opProto:
			if _, err := u.u8(); err != nil {
				return nil, err
			}
		case 0x95: // FRAME
			if _, err := u.read(8); err != nil {
				return nil, err
			}
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case '0': // POP
			if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
				u.marks = u.marks[:len(u.marks)-1]
			} else if _, err := u.pop(); err != nil {
				return nil, err
			}
		case '1': // POP_MARK
			if _, err := u.popMark(); err != nil {
				return nil, err
			}
		case '2': // DUP
			v, err := u.top()
			if err != nil {
				return nil, err
			}
			u.push(v)
		case opNone:
			u.push(nil)
		case opNewTrue:
			u.push(true)
		case opNewFalse:
			u.push(false)
		case opBinInt:
			v, err := u.u32()
			if err != nil {
				return nil, err
			}
			u.push(int64(int32(v)))
		case opBinInt1:
			v, err := u.u8()
			if err != nil {
				return nil, err
			}
			u.push(int64(v))
		case opBinInt2:
			v, err := u.u16()
			if err != nil {
				return nil, err
			}
			u.push(int64(v))
		case opLong1, 0x8b: // LONG1, LONG4
			var n int
			if op == opLong1 {
				n, err = u.u8()
			} else {
				var n32 uint32
				n32, err = u.u32()
				n = int(int32(n32))
			}
			if err != nil {
				return nil, err
			}
			b, err := u.read(n)
			if err != nil {
				return nil, err
			}
			v, err := decodeLong(b)
			if err != nil {
				return nil, u.errf("%v", err)
			}
			u.push(v)
		case 'I': // INT (text); "01"/"00" are protocol-0 booleans
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			switch s {
			case "01":
				u.push(true)
			case "00":
				u.push(false)
			default:
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return nil, u.errf("bad INT %q", s)
				}
				u.push(v)
			}
		case 'L': // LONG (text)
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			v, err := strconv.ParseInt(strings.TrimSuffix(s, "L"), 10, 64)
			if err != nil {
				return nil, u.errf("bad or too large LONG %q", s)
			}
			u.push(v)
		case 'F': // FLOAT (text)
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, u.errf("bad FLOAT %q", s)
			}
			u.push(v)
		case opBinFloat:
			b, err := u.read(8)
			if err != nil {
				return nil, err
			}
			u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
		case opBinUnicode, 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			var n int
			switch op {
			case opBinUnicode:
				var n32 uint32
				n32, err = u.u32()
				n = int(n32)
			case 0x8c:
				n, err = u.u8()
			default:
				n, err = u.u64len()
			}
			if err != nil {
				return nil, err
			}
			b, err := u.read(n)
			if err != nil {
				return nil, err
			}
			u.push(string(b))
		case 'V': // UNICODE (raw-unicode-escape text)
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			u.push(s)
		case 'S': // STRING (quoted repr)
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
				s = s[1 : len(s)-1]
			} else {
				return nil, u.errf("bad STRING %q", s)
			}
			u.push(s)
		case 'T', 'U': // BINSTRING, SHORT_BINSTRING: Python 2 str, read as text like encoding='latin1'
			var n int
			if op == 'T' {
				var n32 uint32
				n32, err = u.u32()
				n = int(int32(n32))
			} else {
				n, err = u.u8()
			}
			if err != nil {
				return nil, err
			}
			b, err := u.read(n)
			if err != nil {
				return nil, err
			}
			u.push(latin1(b))
		case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
			var n int
			switch op {
			case 'B':
				var n32 uint32
				n32, err = u.u32()
				n = int(n32)
			case 'C':
				n, err = u.u8()
			default:
				n, err = u.u64len()
			}
			if err != nil {
				return nil, err
			}
			b, err := u.read(n)
			if err != nil {
				return nil, err
			}
			u.push(append([]byte(nil), b...))
		case opEmptyTuple:
			u.push(pyTuple{})
		case opTuple:
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			u.push(pyTuple(items))
		case opTuple1, opTuple2, opTuple3:
			items, err := u.popN(int(op-opTuple1) + 1)
			if err != nil {
				return nil, err
			}
			u.push(pyTuple(items))
		case opEmptyList:
			u.push(&pyList{})
		case 'l': // LIST
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			u.push(&pyList{items})
		case 'a': // APPEND
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			if err := u.extend([]any{v}); err != nil {
				return nil, err
			}
		case opAppends, 0x90: // APPENDS, ADDITEMS
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			if err := u.extend(items); err != nil {
				return nil, err
			}
		case 0x8f: // EMPTY_SET
			u.push(&pySet{})
		case 0x91: // FROZENSET
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			u.push(&pySet{items})
		case opEmptyDict:
			u.push(NewOrderedDict())
		case 'd': // DICT
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			d := NewOrderedDict()
			if err := u.setItems(d, items); err != nil {
				return nil, err
			}
			u.push(d)
		case 's': // SETITEM
			kv, err := u.popN(2)
			if err != nil {
				return nil, err
			}
			if err := u.setItemsOnTop(kv); err != nil {
				return nil, err
			}
		case opSetItems:
			items, err := u.popMark()
			if err != nil {
				return nil, err
			}
			if err := u.setItemsOnTop(items); err != nil {
				return nil, err
			}
		case 'g': // GET
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(s)
			if err != nil {
				return nil, u.errf("bad GET %q", s)
			}
			if err := u.memoGet(i); err != nil {
				return nil, err
			}
		case opBinGet:
			i, err := u.u8()
			if err != nil {
				return nil, err
			}
			if err := u.memoGet(i); err != nil {
				return nil, err
			}
		case opLongBinGet:
			i, err := u.u32()
			if err != nil {
				return nil, err
			}
			if err := u.memoGet(int(i)); err != nil {
				return nil, err
			}
		case 'p': // PUT
			s, err := u.readLine()
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(s)
			if err != nil {
				return nil, u.errf("bad PUT %q", s)
			}
			if err := u.memoPut(i); err != nil {
				return nil, err
			}
		case opBinPut:
			i, err := u.u8()
			if err != nil {
				return nil, err
			}
			if err := u.memoPut(i); err != nil {
				return nil, err
			}
		case opLongBinPut:
			i, err := u.u32()
			if err != nil {
				return nil, err
			}
			if err := u.memoPut(int(i)); err != nil {
				return nil, err
			}
		case 0x94: // MEMOIZE
			if err := u.memoPut(len(u.memo)); err != nil {
				return nil, err
			}
		case opGlobal:
			mod, err := u.readLine()
			if err != nil {
				return nil, err
			}
			name, err := u.readLine()
			if err != nil {
				return nil, err
			}
			g, err := u.global(mod, name)
			if err != nil {
				return nil, err
			}
			u.push(g)
		case 0x93: // STACK_GLOBAL
			mn, err := u.popN(2)
			if err != nil {
				return nil, err
			}
			mod, ok1 := mn[0].(string)
			name, ok2 := mn[1].(string)
			if !ok1 || !ok2 {
				return nil, u.errf("STACK_GLOBAL needs two strings")
			}
			g, err := u.global(mod, name)
			if err != nil {
				return nil, err
			}
			u.push(g)
		case opReduce:
			fa, err := u.popN(2)
			if err != nil {
				return nil, err
			}
			args, ok := fa[1].(pyTuple)
			if !ok {
				return nil, u.errf("REDUCE arguments are %s, not a tuple", typeName(fa[1]))
			}
			v, err := u.call(fa[0], args)
			if err != nil {
				return nil, err
			}
			u.push(v)
		case 0x81: // NEWOBJ: cls.__new__(cls, *args)
			fa, err := u.popN(2)
			if err != nil {
				return nil, err
			}
			v, err := u.newObj(fa[0])
			if err != nil {
				return nil, err
			}
			u.push(v)
		case 0x92: // NEWOBJ_EX
			fa, err := u.popN(3)
			if err != nil {
				return nil, err
			}
			v, err := u.newObj(fa[0])
			if err != nil {
				return nil, err
			}
			u.push(v)
		case 'b': // BUILD: obj.__setstate__(state)
			st, err := u.pop()
			if err != nil {
				return nil, err
			}
			obj, err := u.top()
			if err != nil {
				return nil, err
			}
			if err := u.build(obj, st); err != nil {
				return nil, err
			}
		case opBinPersID, 'P':
			var pid any
			if op == 'P' {
				s, err := u.readLine()
				if err != nil {
					return nil, err
				}
				pid = s
			} else if pid, err = u.pop(); err != nil {
				return nil, err
			}
			v, err := u.persistentLoad(pid)
			if err != nil {
				return nil, err
			}
			u.push(v)
		case 0x98: // READONLY_BUFFER: no-op for our values
		default:
			u.pos = opPos
			return nil, u.errf("unsupported pickle opcode 0x%02x", op)
		}
	}
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func decodeLong(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
			v |= ^uint64(0) << (8 * len(b)) // sign-extend
		}
		return int64(v), nil
	}
	// Longer encodings may still fit when padded with sign bytes.
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	x := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if !x.IsInt64() {
		return 0, fmt.Errorf("integer %s does not fit in int64", x.String())
	}
	return x.Int64(), nil
}

func (u *unpickler) extend(items []any) error {
	top, err := u.top()
	if err != nil {
		return err
	}
	switch l := top.(type) {
	case *pyList:
		l.items = append(l.items, items...)
	case *pySet:
		l.items = append(l.items, items...)
	default:
		return u.errf("APPEND to %s", typeName(top))
	}
	return nil
}

func (u *unpickler) setItemsOnTop(items []any) error {
	top, err := u.top()
	if err != nil {
		return err
	}
	d, ok := top.(*OrderedDict)
	if !ok {
		return u.errf("SETITEM on %s", typeName(top))
	}
	return u.setItems(d, items)
}

func (u *unpickler) setItems(d *OrderedDict, items []any) error {
	if len(items)%2 != 0 {
		return u.errf("odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		k, err := dictKey(items[i])
		if err != nil {
			return u.errf("%v", err)
		}
		d.Set(k, items[i+1])
	}
	return nil
}

// dictKey turns a Python dict key into the string OrderedDict needs; integer keys (an optimizer
// state dict's parameter ids) become their decimal text.
func dictKey(k any) (string, error) {
	switch x := k.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		if x {
			return "True", nil
		}
		return "False", nil
	case nil:
		return "None", nil
	case []byte:
		return string(x), nil
	}
	return "", fmt.Errorf("dict key of type %s is not supported", typeName(k))
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case *pyList:
		return "list"
	case *pySet:
		return "set"
	case pyTuple:
		return "tuple"
	case *OrderedDict:
		return "dict"
	case string:
		return "str"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []byte:
		return "bytes"
	case *Tensor:
		return "tensor"
	case *storageRef:
		return "storage"
	case pyGlobal:
		g := v.(pyGlobal)
		return g.module + "." + g.name
	}
	return fmt.Sprintf("%T", v)
}

// knownGlobals are the only names a torch.save pickle may reference here.
var knownGlobals = map[string]bool{
	"collections.OrderedDict":                    true,
	"builtins.dict":                              true,
	"builtins.set":                               true,
	"builtins.frozenset":                         true,
	"builtins.list":                              true,
	"builtins.tuple":                             true,
	"_codecs.encode":                             true,
	"torch.Size":                                 true,
	"torch.Tensor":                               true,
	"torch.nn.parameter.Parameter":               true,
	"torch._utils._rebuild_tensor":               true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
	"torch._utils._rebuild_from_type":            true,
	"torch._tensor._rebuild_from_type_v2":        true,
}

func (u *unpickler) global(mod, name string) (pyGlobal, error) {
	switch mod {
	case "__builtin__":
		mod = "builtins" // Python 2 pickles
	case "torch.tensor":
		mod = "torch._tensor" // the rename torch.load itself applies
	}
	if mod == "torch" && strings.HasSuffix(name, "Storage") {
		if _, ok := dtypeByStorage(name); ok {
			return pyGlobal{mod, name}, nil
		}
	}
	if !knownGlobals[mod+"."+name] {
		return pyGlobal{}, u.errf("unknown global %s.%s (not something torch.save writes for tensors and dicts)", mod, name)
	}
	return pyGlobal{mod, name}, nil
}

func (u *unpickler) newObj(cls any) (any, error) {
	g, ok := cls.(pyGlobal)
	if ok {
		switch g.module + "." + g.name {
		case "collections.OrderedDict", "builtins.dict":
			return NewOrderedDict(), nil
		case "builtins.set":
			return &pySet{}, nil
		}
	}
	return nil, u.errf("cannot create an object of class %s", typeName(cls))
}

func (u *unpickler) build(obj, state any) error {
	switch obj.(type) {
	case *Tensor:
		// Parameters and tensor subclasses carry Python attributes here; a tensor's data does
		// not depend on them.
		return nil
	case *OrderedDict:
		// State sets instance attributes (a state dict's _metadata), never items.
		return nil
	}
	return u.errf("cannot set state of %s", typeName(obj))
}

func (u *unpickler) persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) == 0 {
		return nil, u.errf("persistent id %s is not a tuple", typeName(pid))
	}
	kind := asText(t[0])
	if kind != "storage" {
		return nil, u.errf("persistent id of kind %q is not supported", kind)
	}
	if len(t) != 5 {
		if len(t) == 6 {
			return nil, u.errf("legacy (pre-1.6) storage reference; only the zip format is supported")
		}
		return nil, u.errf("storage persistent id has %d fields, want 5", len(t))
	}
	g, ok := t[1].(pyGlobal)
	if !ok {
		return nil, u.errf("storage type is %s, not a storage class", typeName(t[1]))
	}
	info, ok := dtypeByStorage(g.name)
	if !ok || g.module != "torch" {
		return nil, u.errf("storage type %s.%s is not supported", g.module, g.name)
	}
	key := asText(t[2])
	if key == "" {
		return nil, u.errf("storage key is %s, not a string", typeName(t[2]))
	}
	numel, ok := t[4].(int64)
	if !ok || numel < 0 {
		return nil, u.errf("storage %s size is %v", key, t[4])
	}
	if s, ok := u.storages[key]; ok {
		if s.dtype.name != info.name {
			return nil, u.errf("storage %s used as both %s and %s", key, s.dtype.name, info.name)
		}
		if numel > s.numel {
			s.numel = numel
		}
		return s, nil
	}
	s := &storageRef{dtype: info, key: key, numel: numel}
	u.storages[key] = s
	return s, nil
}

func asText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func (u *unpickler) call(fn any, args pyTuple) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, u.errf("cannot call %s", typeName(fn))
	}
	name := g.module + "." + g.name
	switch name {
	case "collections.OrderedDict", "builtins.dict":
		d := NewOrderedDict()
		if len(args) == 0 {
			return d, nil
		}
		if len(args) != 1 {
			return nil, u.errf("%s takes one argument, got %d", name, len(args))
		}
		var pairs []any
		switch a := args[0].(type) {
		case *pyList:
			pairs = a.items
		case pyTuple:
			pairs = a
		case *OrderedDict:
			for _, k := range a.Keys {
				d.Set(k, a.Values[k])
			}
			return d, nil
		default:
			return nil, u.errf("%s argument is %s", name, typeName(args[0]))
		}
		for _, p := range pairs {
			kv, ok := p.(pyTuple)
			if !ok {
				if l, isList := p.(*pyList); isList {
					kv = l.items
				}
			}
			if len(kv) != 2 {
				return nil, u.errf("%s item is not a (key, value) pair", name)
			}
			if err := u.setItems(d, kv); err != nil {
				return nil, err
			}
		}
		return d, nil
	case "builtins.set", "builtins.frozenset", "builtins.list", "builtins.tuple", "torch.Size":
		var items []any
		if len(args) == 1 {
			switch a := args[0].(type) {
			case *pyList:
				items = a.items
			case pyTuple:
				items = a
			case *pySet:
				items = a.items
			default:
				return nil, u.errf("%s argument is %s", name, typeName(args[0]))
			}
		} else if len(args) > 1 {
			return nil, u.errf("%s takes one argument, got %d", name, len(args))
		}
		items = append([]any(nil), items...)
		if name == "builtins.list" {
			return &pyList{items}, nil
		}
		if name == "builtins.set" || name == "builtins.frozenset" {
			return &pySet{items}, nil
		}
		return pyTuple(items), nil
	case "_codecs.encode":
		// Protocol 2 spells bytes as _codecs.encode(text, 'latin1').
		if len(args) < 1 {
			return nil, u.errf("_codecs.encode needs an argument")
		}
		s, ok := args[0].(string)
		if !ok {
			return nil, u.errf("_codecs.encode argument is %s", typeName(args[0]))
		}
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, u.errf("_codecs.encode text is not latin-1")
			}
			b = append(b, byte(r))
		}
		return b, nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		if len(args) < 4 {
			return nil, u.errf("%s needs at least 4 arguments, got %d", name, len(args))
		}
		return u.rebuildTensor(args[0], args[1], args[2], args[3])
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 1 {
			return nil, u.errf("%s needs arguments", name)
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, u.errf("%s data is %s, not a tensor", name, typeName(args[0]))
		}
		return t, nil
	case "torch._tensor._rebuild_from_type_v2", "torch._utils._rebuild_from_type":
		if len(args) < 3 {
			return nil, u.errf("%s needs at least 3 arguments, got %d", name, len(args))
		}
		inner, ok := args[2].(pyTuple)
		if !ok {
			return nil, u.errf("%s arguments are %s", name, typeName(args[2]))
		}
		return u.call(args[0], inner)
	}
	return nil, u.errf("cannot call %s", name)
}

// maxMaterialize bounds the bytes a strided tensor may expand to beyond its storage (stride-0
// broadcasts), so that a corrupt file cannot demand an unbounded allocation.
const maxMaterialize = 1 << 30

func (u *unpickler) rebuildTensor(storage, offset, size, stride any) (*Tensor, error) {
	s, ok := storage.(*storageRef)
	if !ok {
		return nil, u.errf("tensor storage is %s", typeName(storage))
	}
	off, ok := offset.(int64)
	if !ok || off < 0 {
		return nil, u.errf("tensor storage offset is %v", offset)
	}
	shape, err := intTuple(size)
	if err != nil {
		return nil, u.errf("tensor size: %v", err)
	}
	strides, err := intTuple(stride)
	if err != nil {
		return nil, u.errf("tensor stride: %v", err)
	}
	if len(shape) != len(strides) {
		return nil, u.errf("tensor size %v and stride %v differ in length", shape, strides)
	}
	numel := int64(1)
	maxOff := off // last element's offset, when numel > 0
	contiguous := true
	expect := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] < 0 || strides[i] < 0 {
			return nil, u.errf("tensor size %v / stride %v has negative entries", shape, strides)
		}
		if shape[i] != 0 && numel > math.MaxInt64/shape[i] {
			return nil, u.errf("tensor size %v overflows", shape)
		}
		numel *= shape[i]
		if shape[i] > 1 {
			if strides[i] != expect {
				contiguous = false
			}
			expect *= shape[i]
			if strides[i] > (math.MaxInt64-maxOff)/(shape[i]-1) {
				return nil, u.errf("tensor stride %v overflows", strides)
			}
			maxOff += (shape[i] - 1) * strides[i]
		}
	}
	es := int64(s.dtype.size)
	t := &Tensor{DType: s.dtype.name, Shape: shape}
	if numel == 0 {
		t.Data = []byte{}
		return t, nil
	}
	if maxOff >= s.numel {
		return nil, u.errf("tensor of size %v (offset %d, stride %v) needs %d elements of storage %s, which holds %d",
			shape, off, strides, maxOff+1, s.key, s.numel)
	}
	if numel > math.MaxInt64/es || (numel > s.numel && numel*es > maxMaterialize) {
		return nil, u.errf("tensor of size %v is too large to materialise", shape)
	}
	raw, err := u.storageBytes(s)
	if err != nil {
		return nil, err
	}
	if contiguous {
		t.Data = append([]byte(nil), raw[off*es:(off+numel)*es]...)
		return t, nil
	}
	t.Data = make([]byte, numel*es)
	idx := make([]int64, len(shape))
	src := off
	for i := int64(0); i < numel; i++ {
		copy(t.Data[i*es:(i+1)*es], raw[src*es:(src+1)*es])
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			src += strides[d]
			if idx[d] < shape[d] {
				break
			}
			src -= idx[d] * strides[d]
			idx[d] = 0
		}
	}
	return t, nil
}

func (u *unpickler) storageBytes(s *storageRef) ([]byte, error) {
	es := int64(s.dtype.size)
	if s.numel > math.MaxInt64/es {
		return nil, fmt.Errorf("storage data/%s claims %d elements, too many", s.key, s.numel)
	}
	return u.loader(s.key, s.numel*es, s.dtype.name)
}

func intTuple(v any) ([]int64, error) {
	var items []any
	switch x := v.(type) {
	case pyTuple:
		items = x
	case *pyList:
		items = x.items
	default:
		return nil, fmt.Errorf("%s is not a tuple", typeName(v))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := it.(int64)
		if !ok {
			return nil, fmt.Errorf("entry %d is %s, not an int", i, typeName(it))
		}
		out[i] = n
	}
	return out, nil
}
