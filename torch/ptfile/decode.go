package ptfile

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxPickle bounds data.pkl: it holds only structure, never tensor data, so anything larger is a
// corrupt or hostile file.
const maxPickle = 1 << 30

// Decode reads torch.save's zip format from r (size bytes long); see Read for what it returns.
func Decode(r io.ReaderAt, size int64) (any, error) {
	var head [16]byte
	n, _ := r.ReadAt(head[:], 0)
	if n >= 2 && head[0] == 0x80 && head[1] == 0x02 {
		return nil, errors.New("legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a newer torch.save")
	}
	if n < 4 || !bytes.Equal(head[:4], []byte("PK\x03\x04")) {
		if n == 0 {
			return nil, errors.New("file is empty, not a torch.save zip archive")
		}
		return nil, errors.New("not a torch.save zip archive (no zip signature)")
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not a readable zip archive (truncated?): %w", err)
	}
	prefix, err := findPrefix(zr)
	if err != nil {
		return nil, err
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	pkl, err := readRecord(files[prefix+"data.pkl"], maxPickle)
	if err != nil {
		return nil, fmt.Errorf("%sdata.pkl: %w", prefix, err)
	}
	if bo, ok := files[prefix+"byteorder"]; ok {
		b, err := readRecord(bo, 16)
		if err != nil {
			return nil, fmt.Errorf("%sbyteorder: %w", prefix, err)
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("%sbyteorder is %q; only little-endian files are supported", prefix, s)
		}
	}
	cache := map[string][]byte{}
	u := &unpickler{
		data:     pkl,
		memo:     map[int]any{},
		storages: map[string]*storageRef{},
		loader: func(key string, need int64, dtype string) ([]byte, error) {
			if b, ok := cache[key]; ok && int64(len(b)) >= need {
				return b, nil
			}
			name := prefix + "data/" + key
			f, ok := files[name]
			if !ok {
				return nil, fmt.Errorf("storage record %s is missing", name)
			}
			if f.UncompressedSize64 < uint64(need) {
				return nil, fmt.Errorf("storage %s holds %d bytes, but its %s storage needs %d (truncated?)",
					name, f.UncompressedSize64, dtype, need)
			}
			b, err := readRecord(f, need)
			if err != nil {
				return nil, fmt.Errorf("storage %s: %w", name, err)
			}
			if int64(len(b)) < need {
				return nil, fmt.Errorf("storage %s holds %d bytes, but its %s storage needs %d (truncated?)",
					name, len(b), dtype, need)
			}
			cache[key] = b
			return b, nil
		},
	}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	c := converter{active: map[any]bool{}, done: map[any]any{}}
	return c.toGo(v, 0)
}

// findPrefix locates "<archive>/data.pkl"; torch.save names the top folder after the file, so
// any name is accepted, and torch's own rule (the first record's folder) breaks ties.
func findPrefix(zr *zip.Reader) (string, error) {
	var cands []string
	for _, f := range zr.File {
		dir, ok := strings.CutSuffix(f.Name, "data.pkl")
		if ok && strings.Count(dir, "/") == 1 && strings.HasSuffix(dir, "/") {
			cands = append(cands, dir)
		}
	}
	switch len(cands) {
	case 0:
		return "", errors.New("zip archive has no <archive>/data.pkl record; not a torch.save file")
	case 1:
		return cands[0], nil
	}
	if len(zr.File) > 0 {
		first := zr.File[0].Name
		for _, c := range cands {
			if strings.HasPrefix(first, c) {
				return c, nil
			}
		}
	}
	return cands[0], nil
}

func readRecord(f *zip.File, limit int64) ([]byte, error) {
	if f == nil {
		return nil, errors.New("record missing")
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// ReadAll grows with the data actually present, so a header that lies about sizes cannot
	// force a large allocation.
	b, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, fmt.Errorf("reading record: %w (truncated file?)", err)
	}
	if int64(len(b)) == limit && limit == maxPickle {
		return nil, fmt.Errorf("record larger than %d bytes", limit)
	}
	return b, nil
}

// converter turns the unpickler's internal values into the public ones, refusing cycles
// (Python can pickle a list that contains itself; Go values here cannot hold one).
type converter struct {
	active map[any]bool
	done   map[any]any
	nodes  int
}

type tupleID struct {
	first *any
	n     int
}

// maxNodes is a backstop on the values one file may expand to; sharing is converted once, so only
// a pickle this large by itself reaches it.
const maxNodes = 50_000_000

func (c *converter) toGo(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errTooDeep
	}
	c.nodes++
	if c.nodes > maxNodes {
		return nil, fmt.Errorf("pickle expands to more than %d values", maxNodes)
	}
	switch v.(type) {
	case *pyList, *pySet, *OrderedDict:
		if g, ok := c.done[v]; ok {
			return g, nil
		}
	}
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte, *Tensor:
		return x, nil
	case pyTuple:
		if len(x) == 0 {
			return []any{}, nil
		}
		// Every tuple the unpickler builds owns a fresh backing array, so its first element's
		// address identifies it; converting each shared tuple once keeps a doubling DAG linear.
		id := tupleID{&x[0], len(x)}
		if g, ok := c.done[id]; ok {
			return g, nil
		}
		out, err := c.items(x, depth)
		c.done[id] = out
		return out, err
	case *pyList:
		if c.active[x] {
			return nil, errors.New("pickle holds a list that contains itself")
		}
		c.active[x] = true
		defer delete(c.active, x)
		out, err := c.items(x.items, depth)
		c.done[x] = out
		return out, err
	case *pySet:
		if c.active[x] {
			return nil, errors.New("pickle holds a set that contains itself")
		}
		c.active[x] = true
		defer delete(c.active, x)
		out, err := c.items(x.items, depth)
		c.done[x] = out
		return out, err
	case *OrderedDict:
		if c.active[x] {
			return nil, errors.New("pickle holds a dict that contains itself")
		}
		c.active[x] = true
		defer delete(c.active, x)
		out := &OrderedDict{Keys: append([]string(nil), x.Keys...), Values: make(map[string]any, len(x.Keys))}
		for _, k := range x.Keys {
			g, err := c.toGo(x.Values[k], depth+1)
			if err != nil {
				return nil, err
			}
			out.Values[k] = g
		}
		c.done[x] = out
		return out, nil
	case *storageRef:
		return nil, fmt.Errorf("bare storage %s outside a tensor is not supported", x.key)
	case pyGlobal:
		return nil, fmt.Errorf("bare reference to %s.%s is not a value", x.module, x.name)
	}
	return nil, fmt.Errorf("unexpected value of type %s", typeName(v))
}

func (c *converter) items(in []any, depth int) ([]any, error) {
	out := make([]any, len(in))
	for i, it := range in {
		g, err := c.toGo(it, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = g
	}
	return out, nil
}
