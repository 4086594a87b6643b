package sampler

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/torch"
)

// Names of the buffer's tensors in a checkpoint (under the objective's own key).
const (
	TensorSamples = "replay_buffer"         // [size, C, H, W] float32, JEM's replay_buffer
	TensorClasses = "replay_buffer_classes" // int64 scalar: 0 unconditional, else the class count
)

// ReplayBuffer holds JEM's persistent SGLD chains. Unconditional buffers draw any slot;
// class-conditional ones (--sgld-cond) keep class c's chains in the contiguous block
// [c·size/C, (c+1)·size/C), so a draw for label y only continues chains of y.
type ReplayBuffer struct {
	x       *torch.Tensor // owned by the store passed to NewReplayBuffer
	size    int
	classes int
	shape   []int64 // one sample's shape
}

// NewReplayBuffer makes a buffer of size chains of the per-sample shape, initialised U(-1, 1)
// from g, owned by store (it lives as long as the run). classes is 0 for an unconditional buffer,
// else the class count, which must divide size.
func NewReplayBuffer(store *torch.Scope, g *torch.Generator, size int, shape []int64, classes int, dev torch.Device) (*ReplayBuffer, error) {
	if size <= 0 {
		return nil, fmt.Errorf("--buffer-size must be positive, got %d", size)
	}
	if classes < 0 || classes == 1 {
		return nil, fmt.Errorf("sampler: a class-conditional buffer needs at least 2 classes, got %d", classes)
	}
	if classes > 0 && size%classes != 0 {
		return nil, fmt.Errorf("--buffer-size %d must be a multiple of the %d classes with --sgld-cond", size, classes)
	}
	if g == nil {
		return nil, fmt.Errorf("sampler: the replay buffer needs the run's generator, got nil")
	}
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("sampler: sample shape %v has a non-positive size", shape)
		}
	}
	c := store.Child()
	c.SetGradEnabled(false)
	x := c.Zeros(append([]int64{int64(size)}, shape...), torch.Float32, dev)
	// Filled a block of chains at a time: the whole buffer's noise through Rand·2 − 1 would leave
	// two more buffer-sized temporaries in the C heap (three times the buffer resident). The
	// generator fills elements in order, so the values are those of one draw of the whole buffer.
	for start := 0; start < size && c.Err() == nil; start += noiseBlock {
		n := min(noiseBlock, size-start)
		bc := c.Child()
		bc.CopyInto(bc.Narrow(x, 0, int64(start), int64(n)), uniformNoise(bc, g, append([]int64{int64(n)}, shape...), dev))
		c.Merge(bc)
	}
	store.Merge(c, x)
	if err := store.Err(); err != nil {
		return nil, fmt.Errorf("replay buffer: %w", err)
	}
	return &ReplayBuffer{x: x, size: size, classes: classes, shape: append([]int64(nil), shape...)}, nil
}

// noiseBlock is how many chains' starting noise is drawn at once.
const noiseBlock = 512

// Size is the number of chains.
func (b *ReplayBuffer) Size() int { return b.size }

// Classes is 0 for an unconditional buffer, else the class count.
func (b *ReplayBuffer) Classes() int { return b.classes }

// Samples is the buffer itself, [size, ...] (writing into it writes the chains).
func (b *ReplayBuffer) Samples() *torch.Tensor { return b.x }

// Bytes is the buffer's memory: 10000 CIFAR-sized chains take 123 MB.
func (b *ReplayBuffer) Bytes() int64 {
	n := int64(b.size) * 4
	for _, d := range b.shape {
		n *= d
	}
	return n
}

// Draw is JEM's sample_p_0: n starting points and the slots they came from. For a conditional
// buffer, y (int64 [n]) picks the class blocks; nil y draws labels uniformly first, as JEM's
// sample_q does. Each start is replaced by fresh U(-1, 1) noise with probability reinit
// (--reinit-freq). Random numbers are drawn from g in JEM's order: labels, slots, noise, coin flips.
// x0, idx and the labels are owned by s; y is returned as given when not nil.
func (b *ReplayBuffer) Draw(s *torch.Scope, g *torch.Generator, n int, y *torch.Tensor, reinit float64) (x0, idx, labels *torch.Tensor, err error) {
	if n <= 0 {
		return nil, nil, nil, fmt.Errorf("sampler: batch of %d chains: must be positive", n)
	}
	if !(reinit >= 0 && reinit <= 1) {
		return nil, nil, nil, fmt.Errorf("--reinit-freq must be in [0, 1], got %g", reinit)
	}
	if g == nil {
		return nil, nil, nil, fmt.Errorf("sampler: Draw needs the run's generator, got nil")
	}
	if y != nil && b.classes == 0 {
		return nil, nil, nil, fmt.Errorf("sampler: labels given to an unconditional replay buffer")
	}
	dev := b.x.Device()
	c := s.Child()
	c.SetGradEnabled(false)
	if b.classes > 0 {
		if y == nil {
			y = c.RandInt(g, 0, int64(b.classes), []int64{int64(n)}, dev)
			labels = y
		}
		per := int64(b.size / b.classes)
		idx = c.Add(c.MulScalar(y, float64(per)), c.RandInt(g, 0, per, []int64{int64(n)}, dev))
	} else {
		idx = c.RandInt(g, 0, int64(b.size), []int64{int64(n)}, dev)
	}
	buffered := c.IndexSelect(b.x, 0, idx)
	noise := uniformNoise(c, g, append([]int64{int64(n)}, b.shape...), dev)
	coins, cerr := c.Rand(g, []int64{int64(n)}, torch.Float64, dev).Float64s()
	if cerr != nil && c.Err() == nil {
		s.Merge(c)
		return nil, nil, nil, cerr
	}
	fresh := make([]bool, len(coins))
	for i, u := range coins {
		fresh[i] = u < reinit
	}
	bshape := make([]int64, 1+len(b.shape))
	bshape[0] = int64(n)
	for i := range b.shape {
		bshape[i+1] = 1
	}
	mask := c.To(c.FromBool(fresh, bshape...), dev)
	x0 = c.Where(mask, noise, buffered)
	if labels == nil {
		labels = y
		s.Merge(c, x0, idx)
	} else {
		s.Merge(c, x0, idx, labels)
	}
	if err := s.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("replay buffer draw: %w", err)
	}
	return x0, idx, labels, nil
}

// WriteBack stores x (the chains' new states, [n, ...]) into the slots idx from Draw, in place.
// When a slot was drawn twice, the later sample wins.
func (b *ReplayBuffer) WriteBack(s *torch.Scope, idx, x *torch.Tensor) error {
	slots, err := idx.Int64s()
	if err != nil {
		return fmt.Errorf("replay buffer write-back: %w", err)
	}
	if x.Size(0) != int64(len(slots)) {
		return fmt.Errorf("replay buffer write-back: %d samples for %d slots", x.Size(0), len(slots))
	}
	c := s.Child()
	c.SetGradEnabled(false)
	for i, j := range slots {
		if j < 0 || j >= int64(b.size) {
			s.Merge(c)
			return fmt.Errorf("replay buffer write-back: slot %d outside [0, %d)", j, b.size)
		}
		c.CopyInto(c.Narrow(b.x, 0, j, 1), c.Narrow(x, 0, int64(i), 1))
	}
	s.Merge(c)
	if err := s.Err(); err != nil {
		return fmt.Errorf("replay buffer write-back: %w", err)
	}
	return nil
}

// Sample is one persistent SGLD draw, JEM's sample_q: Draw n chains, run cfg's SGLD on e, write
// the results back and return them (detached, owned by s) with their labels (nil when
// unconditional).
func (b *ReplayBuffer) Sample(s *torch.Scope, g *torch.Generator, e Energy, n int, y *torch.Tensor, reinit float64, cfg Config) (x, labels *torch.Tensor, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	x0, idx, labels, err := b.Draw(s, g, n, y, reinit)
	if err != nil {
		return nil, nil, err
	}
	defer x0.Free()
	defer idx.Free()
	x, err = SGLD(s, g, e, x0, labels, cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := b.WriteBack(s, idx, x); err != nil {
		return nil, nil, err
	}
	return x, labels, nil
}

// Tensors is the buffer's checkpoint state. With the run's generator state it is all a resumed run
// needs to continue the same chains; the tensors alias the buffer (save them, do not free them).
func (b *ReplayBuffer) Tensors(s *torch.Scope) map[string]*torch.Tensor {
	return map[string]*torch.Tensor{
		TensorSamples: b.x,
		TensorClasses: s.FromInt64([]int64{int64(b.classes)}),
	}
}

// LoadTensors restores a checkpoint's buffer into b, which must have been made with the same size,
// sample shape and layout; the first difference is reported.
func (b *ReplayBuffer) LoadTensors(named map[string]*torch.Tensor) error {
	x, ok := named[TensorSamples]
	if !ok {
		return fmt.Errorf("replay buffer: checkpoint has no %s", TensorSamples)
	}
	want := append([]int64{int64(b.size)}, b.shape...)
	if got := x.Shape(); fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("replay buffer: checkpoint's %s has shape %v, this run's buffer is %v (--buffer-size and the image shape must match)", TensorSamples, got, want)
	}
	if x.DType() != torch.Float32 {
		return fmt.Errorf("replay buffer: checkpoint's %s is %v, want float32", TensorSamples, x.DType())
	}
	if ct, ok := named[TensorClasses]; ok {
		v, err := ct.Int64s()
		if err != nil || len(v) != 1 {
			return fmt.Errorf("replay buffer: checkpoint's %s is not one integer", TensorClasses)
		}
		if int(v[0]) != b.classes {
			return fmt.Errorf("replay buffer: checkpoint's buffer has class layout %d, this run's %d (0 is unconditional; --sgld-cond must match)", v[0], b.classes)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	s.CopyInto(b.x, x)
	if err := s.Err(); err != nil {
		return fmt.Errorf("replay buffer: %w", err)
	}
	return nil
}
