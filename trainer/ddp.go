package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/hdge-torch/hdge-torch/internal/atomicfile"
	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
	c10d "github.com/hdge-torch/hdge-torch/torch/dist"
)

// Group is what data-parallel training needs of a process group (a *c10d.Group). Every rank
// calls the same collectives in the same order, so each method is called by the loop at the same
// point of every step on every rank.
type Group interface {
	Rank() int
	WorldSize() int
	AllReduce(ts []*torch.Tensor, op c10d.ReduceOp) error
	AllGather(s *torch.Scope, t *torch.Tensor) (*torch.Tensor, error)
	Broadcast(ts []*torch.Tensor, root int) error
}

// parallel is the loop's side of DistributedDataParallel: nil in one process, where every method
// is a no-op, so the loop calls them unconditionally.
type parallel struct {
	g       Group
	params  []*torch.Tensor // the optimised tensors, whose gradients are averaged
	buffers []*torch.Tensor // batch-norm statistics, rank 0's broadcast each step
	dev     torch.Device    // where the model lives: NCCL reduces only CUDA tensors
	err     error           // the first failure of Gather, which cannot return one
	// The stop flag rides on the gradient all-reduce (one extra element in its last bucket)
	// instead of a collective of its own: each collective is a point where both ranks wait for
	// the slower one, and the step's jitter is paid once per such point.
	wantStop, stopAll bool
}

func newParallel(g Group, dev torch.Device, params, buffers []*torch.Tensor) *parallel {
	if g == nil || g.WorldSize() <= 1 {
		return nil
	}
	// Grouped by dtype (running statistics, then the int64 counters), so that the per-step
	// broadcast packs them into two buckets instead of alternating between dtypes layer by layer.
	slices.SortStableFunc(buffers, func(a, b *torch.Tensor) int { return int(a.DType()) - int(b.DType()) })
	return &parallel{g: g, dev: dev, params: params, buffers: buffers}
}

func (p *parallel) rank() int {
	if p == nil {
		return 0
	}
	return p.g.Rank()
}

func (p *parallel) world() int {
	if p == nil {
		return 1
	}
	return p.g.WorldSize()
}

// leader is the rank that writes: logs, metrics, TensorBoard, checkpoints, validation.
func (p *parallel) leader() bool { return p.rank() == 0 }

// syncState makes every rank start from rank 0's parameters and buffers, as DDP's constructor
// does; after a resume every rank has read the same checkpoint, and this makes sure of it. The
// objective's state (HDGE's queue) is not sent: it starts from the run's seed, the same on every
// rank, and then only changes by gathered, identical updates.
func (p *parallel) syncState() error {
	if p == nil {
		return nil
	}
	ts := append(append([]*torch.Tensor(nil), p.params...), p.buffers...)
	if err := p.g.Broadcast(ts, 0); err != nil {
		return p.wrap("broadcasting rank 0's parameters", err)
	}
	return nil
}

// syncBuffers is DDP's broadcast_buffers=True: before each forward pass every rank takes rank 0's
// batch-norm statistics (each rank updates its own during the pass, from its own slice).
func (p *parallel) syncBuffers() error {
	if p == nil || len(p.buffers) == 0 {
		return nil
	}
	if err := p.g.Broadcast(p.buffers, 0); err != nil {
		return p.wrap("broadcasting rank 0's buffers", err)
	}
	return nil
}

// averageGrads is the hook between backward and the optimiser step: every gradient becomes the
// mean over the ranks, in buckets. Parameters without a gradient are skipped; every rank runs the
// same graph, so they skip the same ones. The same all-reduce carries the ranks' wish to stop
// (setStop before the step, stopped after it).
func (p *parallel) averageGrads(s *torch.Scope) error {
	if p == nil {
		return nil
	}
	grads := make([]*torch.Tensor, 0, len(p.params)+1)
	for _, t := range p.params {
		if g := s.Grad(t); g != nil {
			grads = append(grads, g)
		}
	}
	v := 0.0
	if p.wantStop {
		v = 1
	}
	var flag *torch.Tensor
	if len(grads) > 0 {
		// In the gradients' dtype, so that it joins their last bucket.
		flag = s.Full([]int64{1}, v, grads[len(grads)-1].DType(), p.dev)
		grads = append(grads, flag)
	}
	if err := s.Err(); err != nil {
		return err
	}
	if err := p.g.AllReduce(grads, c10d.Mean); err != nil {
		return p.wrap("averaging gradients", err)
	}
	if flag != nil {
		x, err := flag.Item()
		if err != nil {
			return err
		}
		p.stopAll = x > 0
	} else {
		stop, err := p.anyStop(p.wantStop)
		if err != nil {
			return err
		}
		p.stopAll = stop
	}
	return nil
}

// setStop records this rank's wish to stop, for the next gradient all-reduce to carry.
func (p *parallel) setStop(local bool) {
	if p != nil {
		p.wantStop = local
	}
}

// stopped says whether some rank wished to stop as of the last step's all-reduce: every rank
// gets the same answer after the same step.
func (p *parallel) stopped() bool { return p != nil && p.stopAll }

// gather is Step.Gather: t of every rank, in rank order. A failure is kept for the loop (the
// step goes on with t alone and is then discarded with the error).
func (p *parallel) gather() func(s *torch.Scope, t *torch.Tensor) *torch.Tensor {
	if p == nil {
		return nil
	}
	return func(s *torch.Scope, t *torch.Tensor) *torch.Tensor {
		out, err := p.g.AllGather(s, t)
		if err != nil {
			if p.err == nil {
				p.err = p.wrap("gathering the objective's tensors", err)
			}
			return t
		}
		return out
	}
}

// takeErr returns (and clears) the error Gather kept.
func (p *parallel) takeErr() error {
	if p == nil {
		return nil
	}
	err := p.err
	p.err = nil
	return err
}

// anyStop all-reduces this rank's wish to stop, once per step, so that every rank stops at the
// same step when Ctrl-C reaches some of them earlier than others.
func (p *parallel) anyStop(local bool) (bool, error) {
	if p == nil {
		return local, nil
	}
	s := torch.NewScope()
	defer s.Close()
	v := 0.0
	if local {
		v = 1
	}
	flag := s.Full([]int64{1}, v, torch.Float32, p.dev)
	if err := s.Err(); err != nil {
		return false, err
	}
	if err := p.g.AllReduce([]*torch.Tensor{flag}, c10d.Sum); err != nil {
		return false, p.wrap("agreeing on the stop flag", err)
	}
	x, err := flag.Item()
	if err != nil {
		return false, err
	}
	return x > 0, nil
}

// logStats reports what the collectives cost per step, waiting for the slower rank included: the
// share of a data-parallel step that is not computing.
func (p *parallel) logStats(log *zap.Logger, steps int) {
	if p == nil || steps <= 0 {
		return
	}
	sg, ok := p.g.(interface{ Stats() c10d.Stats })
	if !ok {
		return
	}
	st := sg.Stats()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(steps) }
	log.Info("collectives per step", zap.Float64("all_reduce_ms", ms(st.AllReduceTime)),
		zap.Float64("all_gather_ms", ms(st.AllGatherTime)), zap.Float64("broadcast_ms", ms(st.BroadcastTime)),
		zap.Int("gradient_buckets", st.LastBuckets))
}

// wrap names the lost ranks in the message, which is what a user reads first.
func (p *parallel) wrap(what string, err error) error {
	var lost *c10d.LostRankError
	if errors.As(err, &lost) {
		return fmt.Errorf("rank %d: %s: lost rank(s) %v (the process died or stopped answering): %w", p.rank(), what, lost.Ranks, err)
	}
	return fmt.Errorf("rank %d: %s: %w", p.rank(), what, err)
}

// buffersOf are the model's batch-norm statistics and counters.
func buffersOf(m interface{ StateDict() []nn.Param }) []*torch.Tensor {
	var out []*torch.Tensor
	for _, p := range m.StateDict() {
		if p.Buffer {
			out = append(out, p.T)
		}
	}
	return out
}

// withWorld is the run's configuration as config.json and checkpoints record it, with the number
// of processes it was trained by (a single process reads it as a plain Config).
func withWorld(cfg Config, world int) ([]byte, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	// Appended, so config.json keeps the fields in Config's order.
	return append(b[:len(b)-1], fmt.Sprintf(`,"world_size":%d}`, world)...), nil
}

func writeRawJSON(path string, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	return atomicfile.WriteFile(path, out.Bytes())
}

// worldOf is the world size recorded in a configuration; 1 when it has none (one process).
func worldOf(raw []byte) int {
	var v struct {
		World int `json:"world_size"`
	}
	if json.Unmarshal(raw, &v) != nil || v.World < 1 {
		return 1
	}
	return v.World
}

// checkWorld refuses to resume with another number of processes: the global batch, which fixes
// the order of the images and the gradient's average, would change.
func checkWorld(path string, old Config, oldWorld int, cfg Config, world int) error {
	if oldWorld == world {
		return nil
	}
	return fmt.Errorf("--resume %s: the run was trained by %d process(es) × --batch-size %d = global batch %d; this resume has %d process(es) × %d = global batch %d: resume with the same number of processes (--nproc-per-node / --nnodes, or torchrun's WORLD_SIZE %d)",
		path, oldWorld, old.BatchSize, oldWorld*old.BatchSize, world, cfg.BatchSize, world*cfg.BatchSize, oldWorld)
}

// checkReplicas compares what every rank must hold identically at the end of a run: a
// fingerprint (sum and sum of squares) of each parameter and the objective's whole state (HDGE's
// global queue, which is small). Identical steps on identical averaged gradients leave them equal
// bit for bit; a divergence would otherwise only show as a worse model, so it is an error naming
// the tensor.
func (p *parallel) checkReplicas(obj Objective) error {
	if p == nil {
		return nil
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	var names []string
	var parts []*torch.Tensor
	for i, t := range p.params {
		flat := s.Flatten(s.ToDType(t, torch.Float32), 0, -1)
		parts = append(parts, s.Sum(flat, nil, true), s.Sum(s.Square(flat), nil, true))
		names = append(names, fmt.Sprintf("parameter %d (sum)", i), fmt.Sprintf("parameter %d (sum of squares)", i))
	}
	state := obj.State(s)
	for _, k := range slices.Sorted(maps.Keys(state)) {
		flat := s.Flatten(s.ToDType(state[k], torch.Float32), 0, -1)
		parts = append(parts, flat)
		for j := int64(0); j < flat.Numel(); j++ {
			names = append(names, fmt.Sprintf("objective state %s[%d]", k, j))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	all := s.Cat(parts, 0)
	if err := s.Err(); err != nil {
		return err
	}
	got, err := p.g.AllGather(s, all)
	if err != nil {
		return p.wrap("comparing the ranks' replicas", err)
	}
	v, err := got.Float32s()
	if err != nil {
		return err
	}
	n := len(names)
	for r := 1; r < p.world(); r++ {
		for i := 0; i < n; i++ {
			if math.Float32bits(v[r*n+i]) != math.Float32bits(v[i]) {
				return fmt.Errorf("rank %d: the replicas diverged: %s is %v on rank %d and %v on rank 0", p.rank(), names[i], v[r*n+i], r, v[i])
			}
		}
	}
	return nil
}
