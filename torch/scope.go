package torch

/*
#include "hdge_torch.h"
*/
import "C"

import "strconv"

// Scope owns tensors and frees them all on Close: a per-step arena, or, kept open, the store for
// parameters, buffers and optimizer state. Errors are sticky: after the first failure every op of
// the scope returns nil and does nothing, and Err reports that failure. A Scope is not safe for
// concurrent use.
type Scope struct {
	ts     []*Tensor // owned tensors; freed ones leave a nil slot until the next compaction
	n      int       // live tensors in ts
	err    error
	noGrad bool
	closed bool
	prec   Precision
	cache  *castCache // converted parameter copies; owned by the scope that set the precision
	// Scratch for arguments passed to C, so that ops do not allocate for them. Neither holds Go
	// pointers, which is what lets cgo pass them.
	dims    [8]int64
	handles []C.hdge_tensor
}

// NewScope returns an empty scope with grad recording on.
func NewScope() *Scope { return &Scope{} }

// Close frees every tensor the scope still owns. It is idempotent; Err keeps its value.
func (s *Scope) Close() {
	if s.closed {
		return
	}
	s.closed = true
	if s.cache != nil && s.cache.owner == s {
		s.cache.m = nil // its tensors are among s's own, freed below
	}
	s.cache = nil
	hs := make([]C.hdge_tensor, 0, s.n)
	for _, t := range s.ts {
		if t != nil && t.h != nil {
			hs = append(hs, t.h)
			t.h = nil
			t.s = nil
		}
	}
	if len(hs) > 0 {
		C.hdge_tensor_free_many(&hs[0], C.int64_t(len(hs)))
	}
	s.ts = nil
	s.n = 0
}

// Err is the scope's first error, or nil.
func (s *Scope) Err() error { return s.err }

// SetGradEnabled turns autograd recording on or off for every later op of this scope. It is applied
// inside each C call, so it does not depend on which OS thread the goroutine runs on.
func (s *Scope) SetGradEnabled(on bool) { s.noGrad = !on }

// Len is the number of tensors the scope currently owns.
func (s *Scope) Len() int { return s.n }

// Adopt moves ownership of t into s from whatever scope owns it and returns t. Use it to keep a
// result of a per-step scope (a queue entry, an updated buffer) beyond that step.
func (s *Scope) Adopt(t *Tensor) *Tensor {
	if t == nil || s.err != nil {
		return t
	}
	if s.closed {
		s.fail("Adopt", "scope is closed")
		return t
	}
	if t.h == nil {
		s.fail("Adopt", "tensor was freed")
		return t
	}
	if t.s == s {
		return t
	}
	if t.s != nil {
		t.s.drop(t)
	}
	s.add(t)
	return t
}

// Child returns a scope for the intermediate results of a computation inside s: it records
// autograd as s does, computes in s's precision sharing s's cache of converted parameters, and
// starts with s's error. End it with s.Merge.
func (s *Scope) Child() *Scope {
	return &Scope{noGrad: s.noGrad, err: s.err, prec: s.prec, cache: s.cache}
}

// Merge ends a child scope: s adopts the results named in keep, takes the child's first error if
// s has none, and the child's other tensors are freed. Autograd holds on to what a backward pass
// still needs, and frees it during that pass as PyTorch does, instead of the Go handles keeping
// every activation alive until the step's scope closes.
func (s *Scope) Merge(c *Scope, keep ...*Tensor) {
	if c.err != nil && s.err == nil {
		s.err = c.err
	}
	if s.err == nil {
		for _, t := range keep {
			if t != nil && t.s == c {
				s.Adopt(t)
			}
		}
	}
	c.Close()
}

func (s *Scope) grad() C.int {
	if s.noGrad {
		return 0
	}
	return 1
}

// add records t (whose handle is set) as owned by s.
func (s *Scope) add(t *Tensor) *Tensor {
	t.s = s
	t.idx = len(s.ts)
	s.ts = append(s.ts, t)
	s.n++
	return t
}

// drop forgets t without freeing its handle.
func (s *Scope) drop(t *Tensor) {
	if t.idx < len(s.ts) && s.ts[t.idx] == t {
		s.ts[t.idx] = nil
		s.n--
	}
	t.s = nil
	// Long-lived scopes that free or hand over many tensors would otherwise grow without bound.
	if len(s.ts) >= 64 && s.n < len(s.ts)/4 {
		j := 0
		for _, u := range s.ts {
			if u != nil {
				u.idx = j
				s.ts[j] = u
				j++
			}
		}
		clear(s.ts[j:])
		s.ts = s.ts[:j]
	}
}

// Fail records err as the scope's sticky error unless it already has one: for code that computes
// in a scope and meets a failure of its own (a sampler's, a shape check) mid-way, so the caller
// sees it at its next Err like a libtorch error.
func (s *Scope) Fail(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

func (s *Scope) fail(op, msg string) {
	if s.err == nil {
		s.err = &Error{Op: op, Msg: msg}
	}
}

func (s *Scope) failC(op string, e *C.hdge_error) {
	err := takeError(op, e)
	if s.err == nil {
		s.err = err
	}
}

// ready reports whether an op may run: no earlier error, an open scope, no nil input (an earlier
// failure, already reported) and no freed input (a new error).
func (s *Scope) ready(op string, ts ...*Tensor) bool {
	if s.err != nil {
		return false
	}
	if s.closed {
		s.fail(op, "scope is closed")
		return false
	}
	for i, t := range ts {
		if t == nil {
			return false
		}
		if t.h == nil {
			s.fail(op, "input "+strconv.Itoa(i)+" was freed")
			return false
		}
	}
	return true
}

// ready1 is ready for the common single-input case without the variadic slice.
func (s *Scope) ready1(op string, a *Tensor) bool {
	if s.err == nil && !s.closed && a != nil && a.h != nil {
		return true
	}
	return s.ready(op, a)
}

// ready2 is ready for two inputs.
func (s *Scope) ready2(op string, a, b *Tensor) bool {
	if s.err == nil && !s.closed && a != nil && a.h != nil && b != nil && b.h != nil {
		return true
	}
	return s.ready(op, a, b)
}

// dimsArg copies ints into the scope's scratch (or a new slice when long) for passing to C.
func (s *Scope) dimsArg(d []int) []int64 {
	var v []int64
	if len(d) <= len(s.dims) {
		v = s.dims[:len(d)]
	} else {
		v = make([]int64, len(d))
	}
	for i, x := range d {
		v[i] = int64(x)
	}
	return v
}

// handlesArg collects tensor handles into the scope's scratch; ok is false when a tensor is nil
// or freed (and the scope records why for freed ones).
func (s *Scope) handlesArg(op string, ts []*Tensor) (hs []C.hdge_tensor, ok bool) {
	if !s.ready(op, ts...) {
		return nil, false
	}
	s.handles = s.handles[:0]
	for _, t := range ts {
		s.handles = append(s.handles, t.h)
	}
	return s.handles, true
}
