package torch

/*
#include "hdge_torch.h"
*/
import "C"

import (
	"fmt"
	"strconv"
)

// AdamConfig holds torch.optim.Adam's hyper-parameters. Every field is used as given (a zero Eps
// is a zero eps); DefaultAdamConfig has PyTorch's defaults.
type AdamConfig struct{ LR, Beta1, Beta2, Eps, WeightDecay float64 }

// DefaultAdamConfig is torch.optim.Adam's defaults with the given learning rate.
func DefaultAdamConfig(lr float64) AdamConfig {
	return AdamConfig{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// optimBase is what Adam and SGD share: the parameters, the scope that owns the optimizer state,
// a reusable handle array, and a sticky error from construction.
type optimBase struct {
	params  []*Tensor
	store   *Scope
	step    int64 // Step calls that succeeded
	handles []C.hdge_tensor
	err     error
}

func newOptimBase(op string, params []*Tensor) optimBase {
	b := optimBase{params: params, store: NewScope()}
	for i, p := range params {
		if !p.live() {
			b.err = &Error{Op: op, Msg: "parameter " + strconv.Itoa(i) + " is nil or freed"}
		}
	}
	return b
}

// stateLike makes one zero tensor per parameter in the optimizer's store.
func (b *optimBase) stateLike() []*Tensor {
	out := make([]*Tensor, len(b.params))
	if b.err != nil {
		return out
	}
	for i, p := range b.params {
		out[i] = b.store.ZerosLike(p)
	}
	if err := b.store.Err(); err != nil {
		b.err = err
	}
	return out
}

// collect fills b.handles with params followed by each group of state tensors.
func (b *optimBase) collect(op string, groups ...[]*Tensor) error {
	if b.err != nil {
		return b.err
	}
	b.handles = b.handles[:0]
	for i, p := range b.params {
		if !p.live() {
			return &Error{Op: op, Msg: "parameter " + strconv.Itoa(i) + " was freed"}
		}
		b.handles = append(b.handles, p.h)
	}
	for _, g := range groups {
		for _, t := range g {
			if t == nil {
				b.handles = append(b.handles, nil)
			} else {
				b.handles = append(b.handles, t.h)
			}
		}
	}
	return nil
}

// handleAt is a pointer into b.handles for C (nil when there are no parameters).
func (b *optimBase) handleAt(i int) *C.hdge_tensor {
	if i >= len(b.handles) {
		return nil
	}
	return &b.handles[i]
}

// StepCount is the number of completed Step calls.
func (b *optimBase) StepCount() int64 { return b.step }

// Close frees the optimizer state. It is idempotent.
func (b *optimBase) Close() { b.store.Close() }

// scalarState keeps a small tensor named key in the store up to date with v, for State().
func (b *optimBase) scalarState(cache map[string]*Tensor, key string, v float64, dt DType) *Tensor {
	t, ok := cache[key]
	if !ok {
		t = b.store.Full(nil, v, dt, CPU)
		cache[key] = t
		return t
	}
	b.store.FillInPlace(t, v)
	return t
}

// loadInto copies src into dst after checking the shapes match exactly (CopyInto would broadcast).
func loadInto(op, key string, dst, src *Tensor) error {
	if !src.live() {
		return &Error{Op: op, Msg: "state " + key + " is missing"}
	}
	ds, ss := dst.Shape(), src.Shape()
	if fmt.Sprint(ds) != fmt.Sprint(ss) {
		return &Error{Op: op, Msg: fmt.Sprintf("state %s has shape %v, parameter needs %v", key, ss, ds)}
	}
	if e := C.hdge_copy_(dst.h, src.h); e != nil {
		return takeError(op+" "+key, e)
	}
	return nil
}

func scalarOf(op, key string, m map[string]*Tensor) (float64, error) {
	t, ok := m[key]
	if !ok || !t.live() {
		return 0, &Error{Op: op, Msg: "state " + key + " is missing"}
	}
	v, err := t.Item()
	if err != nil {
		return 0, fmt.Errorf("%s: state %s: %w", op, key, err)
	}
	return v, nil
}

// Adam is torch.optim.Adam (amsgrad=False) over a fixed list of parameters. Each Step is one C call
// over all parameters; parameters without a gradient are skipped, as PyTorch does.
type Adam struct {
	optimBase
	cfg      AdamConfig
	expAvg   []*Tensor
	expAvgSq []*Tensor
	steps    []int64 // per parameter, as PyTorch's state[p]["step"]
	scalars  map[string]*Tensor
}

// NewAdam creates the optimizer and its zeroed state. A problem with params is reported by Step.
func NewAdam(params []*Tensor, c AdamConfig) *Adam {
	o := &Adam{optimBase: newOptimBase("NewAdam", params), cfg: c, steps: make([]int64, len(params)),
		scalars: map[string]*Tensor{}}
	o.expAvg = o.stateLike()
	o.expAvgSq = o.stateLike()
	return o
}

// Step applies one update from the parameters' current gradients.
func (o *Adam) Step() error {
	if err := o.collect("Adam.Step", o.expAvg, o.expAvgSq); err != nil {
		return err
	}
	n := len(o.params)
	if n == 0 {
		o.step++
		return nil
	}
	c := o.cfg
	if e := C.hdge_adam_step(o.handleAt(0), o.handleAt(n), o.handleAt(2*n), (*C.int64_t)(&o.steps[0]), C.int(n),
		C.double(c.LR), C.double(c.Beta1), C.double(c.Beta2), C.double(c.Eps), C.double(c.WeightDecay)); e != nil {
		return takeError("Adam.Step", e)
	}
	o.step++
	return nil
}

// SetLR changes the learning rate for later steps (schedules call it between steps).
func (o *Adam) SetLR(lr float64) { o.cfg.LR = lr }

// LR is the current learning rate.
func (o *Adam) LR() float64 { return o.cfg.LR }

// State is the optimizer state under PyTorch-like names: "state.<i>.exp_avg",
// "state.<i>.exp_avg_sq", "state.<i>.step" (float32 scalar, per parameter as in PyTorch) and
// "step" (int64 scalar, completed Step calls). The tensors belong to the optimizer; Save them
// as they are.
func (o *Adam) State() map[string]*Tensor {
	m := make(map[string]*Tensor, 3*len(o.params)+1)
	for i := range o.params {
		p := "state." + strconv.Itoa(i) + "."
		m[p+"exp_avg"] = o.expAvg[i]
		m[p+"exp_avg_sq"] = o.expAvgSq[i]
		m[p+"step"] = o.scalarState(o.scalars, p+"step", float64(o.steps[i]), Float32)
	}
	m["step"] = o.scalarState(o.scalars, "step", float64(o.step), Int64)
	return m
}

// LoadState restores a State map (tensors may live in any scope or on any device).
func (o *Adam) LoadState(m map[string]*Tensor) error {
	if o.err != nil {
		return o.err
	}
	const op = "Adam.LoadState"
	steps := make([]int64, len(o.params))
	for i := range o.params {
		p := "state." + strconv.Itoa(i) + "."
		if err := loadInto(op, p+"exp_avg", o.expAvg[i], m[p+"exp_avg"]); err != nil {
			return err
		}
		if err := loadInto(op, p+"exp_avg_sq", o.expAvgSq[i], m[p+"exp_avg_sq"]); err != nil {
			return err
		}
		v, err := scalarOf(op, p+"step", m)
		if err != nil {
			return err
		}
		steps[i] = int64(v)
	}
	v, err := scalarOf(op, "step", m)
	if err != nil {
		return err
	}
	copy(o.steps, steps)
	o.step = int64(v)
	return nil
}

// SGDConfig holds torch.optim.SGD's hyper-parameters.
type SGDConfig struct {
	LR, Momentum, Dampening, WeightDecay float64
	Nesterov                             bool
}

// SGD is torch.optim.SGD over a fixed list of parameters, one C call per Step.
type SGD struct {
	optimBase
	cfg     SGDConfig
	buf     []*Tensor // momentum buffers (nil entries when Momentum is 0)
	hasBuf  []uint8   // PyTorch's first step copies the gradient into the buffer
	scalars map[string]*Tensor
}

// NewSGD creates the optimizer; momentum buffers are allocated when Momentum is non-zero.
func NewSGD(params []*Tensor, c SGDConfig) *SGD {
	o := &SGD{optimBase: newOptimBase("NewSGD", params), cfg: c, buf: make([]*Tensor, len(params)),
		hasBuf: make([]uint8, len(params)), scalars: map[string]*Tensor{}}
	if o.err == nil && c.Nesterov && (c.Momentum <= 0 || c.Dampening != 0) {
		o.err = &Error{Op: "NewSGD", Msg: "Nesterov momentum requires a momentum and zero dampening"}
	}
	if c.Momentum != 0 {
		o.buf = o.stateLike()
	}
	return o
}

// Step applies one update from the parameters' current gradients.
func (o *SGD) Step() error {
	if err := o.collect("SGD.Step", o.buf); err != nil {
		return err
	}
	n := len(o.params)
	if n == 0 {
		o.step++
		return nil
	}
	c := o.cfg
	if e := C.hdge_sgd_step(o.handleAt(0), o.handleAt(n), (*C.uint8_t)(&o.hasBuf[0]), C.int(n), C.double(c.LR),
		C.double(c.Momentum), C.double(c.Dampening), C.double(c.WeightDecay), cbool(c.Nesterov)); e != nil {
		return takeError("SGD.Step", e)
	}
	o.step++
	return nil
}

// SetLR changes the learning rate for later steps.
func (o *SGD) SetLR(lr float64) { o.cfg.LR = lr }

// LR is the current learning rate.
func (o *SGD) LR() float64 { return o.cfg.LR }

// State is "state.<i>.momentum_buffer" for every parameter that has one, plus "step" (int64
// scalar, completed Step calls).
func (o *SGD) State() map[string]*Tensor {
	m := make(map[string]*Tensor, len(o.params)+1)
	for i := range o.params {
		if o.buf[i] != nil && o.hasBuf[i] != 0 {
			m["state."+strconv.Itoa(i)+".momentum_buffer"] = o.buf[i]
		}
	}
	m["step"] = o.scalarState(o.scalars, "step", float64(o.step), Int64)
	return m
}

// LoadState restores a State map. A parameter without a momentum_buffer entry starts afresh, as a
// PyTorch parameter that never had a gradient.
func (o *SGD) LoadState(m map[string]*Tensor) error {
	if o.err != nil {
		return o.err
	}
	const op = "SGD.LoadState"
	has := make([]uint8, len(o.params))
	for i := range o.params {
		key := "state." + strconv.Itoa(i) + ".momentum_buffer"
		src, ok := m[key]
		if !ok {
			continue
		}
		if o.buf[i] == nil {
			return &Error{Op: op, Msg: "state " + key + " given but momentum is 0"}
		}
		if err := loadInto(op, key, o.buf[i], src); err != nil {
			return err
		}
		has[i] = 1
	}
	v, err := scalarOf(op, "step", m)
	if err != nil {
		return err
	}
	copy(o.hasBuf, has)
	o.step = int64(v)
	return nil
}
