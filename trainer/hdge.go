package trainer

import (
	"fmt"
	"math"

	"github.com/hdge-torch/hdge-torch/internal/settings"
	"github.com/hdge-torch/hdge-torch/torch"
)

// HDGESettings are the settings of HDGE's contrastive estimate of log q(x|y), shared by hdge,
// hdge-inbatch and the objectives built on them.
type HDGESettings struct {
	QueueSize   int     `json:"queue_size"`
	Temperature float64 `json:"temperature"`
	Contrast    string  `json:"contrast"`
	NormLogits  bool    `json:"norm_logits"`
}

const groupHDGE = "objective: hdge, hdge-inbatch"

func init() {
	registerSettings(
		settings.Int("queue-size", groupHDGE, learnt, 65536, "K, past logits kept as negatives (any batch size works)",
			func(c *Config) *int { return &c.QueueSize }, settings.AtLeast(1)),
		settings.Float("temperature", groupHDGE, learnt, 0.1, "tau of the contrastive term",
			func(c *Config) *float64 { return &c.Temperature }, settings.Positive),
		settings.String("contrast", groupHDGE, learnt, "official", "form of log q(x|y): official (the released code) or eq13 (the paper)",
			func(c *Config) *string { return &c.Contrast }, settings.OneOf("official", "eq13")),
		settings.Bool("norm-logits", groupHDGE, learnt, true, "L2-normalise logits before contrasting (--norm-logits=false is the paper's ablation)",
			func(c *Config) *bool { return &c.NormLogits }),
	)
	RegisterObjective(ObjectiveInfo{
		Name:  "hdge",
		Usage: "alpha·CE + (1-alpha)·(-log q(x|y)) against a queue of K past logits",
		New: func(env Env) (Objective, error) {
			return newHDGE(hdgeConfigOf(env.Config, env.Classes), env.Gen, env.Dev)
		},
	})
}

// hdgeConfig is what HDGE's term needs of a run's settings.
type hdgeConfig struct {
	HDGESettings
	Alpha, LabelSmoothing float64
	Classes               int
}

func hdgeConfigOf(c Config, classes int) hdgeConfig {
	return hdgeConfig{HDGESettings: c.HDGESettings, Alpha: c.Alpha, LabelSmoothing: c.LabelSmoothing, Classes: classes}
}

// hybridConfig is the part of Config that hybrid reads.
func (c hdgeConfig) hybrid() Config { return Config{Alpha: c.Alpha, LabelSmoothing: c.LabelSmoothing} }

// hdgeObjective is α·CE + (1-α)·(-log q(x|y)) with log q(x|y) contrasted against a MoCo-style
// queue of K past logits.
//
// The released code builds l_neg = logsumexp_c(einsum("bc,ck->bck", dist, buf)), a B×C×K tensor
// (1.6 GiB for C=100, B=64, K=65536). Because dist depends only on the label y, l_neg[b,k]
// depends only on (y_b, k): it is T[y_b, k] for a C×K table T. And since the loss is a
// cross-entropy over [l_pos, l_neg]/τ with target 0, only logsumexp_k T[y,k]/τ is needed per
// class: N[c] = logsumexp_k T[c,k]/τ. T's column k depends only on queue column k, so T is kept
// beside the queue and only the B columns that the queue replaces are recomputed each step, with
// the same value and gradient as the einsum (the negatives are constants; only l_pos carries
// gradient, as in the released code).
//
// Nor is the whole C×K table reduced every step: its K columns are cut into chunks of about √K,
// each chunk's per-class logsumexp is kept (C × K/chunk), and an update recomputes only the chunks
// it touched. The per-class value is then a logsumexp over the chunks, the same value up to
// float32 rounding, so a step costs O(C·(B + √K)) instead of O(B·C·K) (README, "The HDGE term without the B×C×K tensor").
type hdgeObjective struct {
	cfg     hdgeConfig
	on, off float64
	store   *torch.Scope
	queue   *torch.Tensor // C×K raw logits, as the released code stores them
	table   *torch.Tensor // C×K: T[c,k]/τ
	chunk   int64         // columns per chunk of partial
	partial *torch.Tensor // C×⌈K/chunk⌉: logsumexp of each chunk of table's columns
	ptr     int64
}

func newHDGE(c hdgeConfig, gen *torch.Generator, dev torch.Device) (*hdgeObjective, error) {
	o := &hdgeObjective{cfg: c, store: torch.NewScope()}
	o.store.SetGradEnabled(false)
	o.on, o.off = smoothWeights(c.LabelSmoothing, c.Classes)
	k := int64(c.QueueSize)
	shape := []int64{int64(c.Classes), k}
	o.queue = o.store.Randn(gen, shape, torch.Float32, dev)
	o.table = o.store.Zeros(shape, torch.Float32, dev)
	o.chunk = max(1, int64(math.Sqrt(float64(k))))
	o.partial = o.store.Zeros([]int64{int64(c.Classes), (k + o.chunk - 1) / o.chunk}, torch.Float32, dev)
	err := o.store.Err()
	if err == nil {
		err = o.refreshTable(0, int64(c.QueueSize))
	}
	if err != nil {
		o.store.Close()
		return nil, fmt.Errorf("hdge queue (%d×%d): %w", c.Classes, c.QueueSize, err)
	}
	return o, nil
}

func (o *hdgeObjective) normalize(s *torch.Scope, t *torch.Tensor, dim int) *torch.Tensor {
	if !o.cfg.NormLogits {
		return t
	}
	return s.Normalize(t, 2, dim, 1e-12)
}

// negTable computes T/τ for raw queue columns q (C×n).
func (o *hdgeObjective) negTable(s *torch.Scope, q *torch.Tensor) *torch.Tensor {
	buf := o.normalize(s, q, 0)
	var t *torch.Tensor
	if o.cfg.Contrast == "eq13" {
		// Σ_c dist_c·buf[c,k]: on·buf[y,k] + off·(Σ_c buf[c,k] - buf[y,k]).
		t = s.MulScalar(buf, o.on)
		if o.off != 0 {
			colSum := s.Sum(buf, []int{0}, true)
			t = s.Add(s.MulScalar(buf, o.on-o.off), s.MulScalar(colSum, o.off))
		}
	} else {
		// logsumexp over classes of dist ⊙ buf, for a label y: log(exp(on·buf[y,k]) +
		// Σ_{c≠y} exp(off·buf[c,k])), shifted by the column maximum for stability.
		a := s.MulScalar(buf, o.on)
		e := s.MulScalar(buf, o.off)
		am, _ := s.Max(a, 0, true)
		em, _ := s.Max(e, 0, true)
		m := s.Maximum(am, em)
		ee := s.Exp(s.Sub(e, m))
		rest := s.Sub(s.Sum(ee, []int{0}, true), ee)
		inner := s.Clamp(s.Add(s.Exp(s.Sub(a, m)), rest), 1e-30, math.Inf(1))
		t = s.Add(m, s.Log(inner))
	}
	return s.DivScalar(t, o.cfg.Temperature)
}

// refreshTable recomputes table columns [start, start+n) from the queue, and the chunks of
// partial that hold them.
func (o *hdgeObjective) refreshTable(start, n int64) error {
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	q := s.Narrow(o.queue, 1, start, n)
	s.CopyInto(s.Narrow(o.table, 1, start, n), o.negTable(s, q))
	o.refreshPartial(s, start, n)
	return s.Err()
}

// refreshPartial recomputes the chunks of partial that overlap table columns [start, start+n).
func (o *hdgeObjective) refreshPartial(s *torch.Scope, start, n int64) {
	k, c := int64(o.cfg.QueueSize), int64(o.cfg.Classes)
	first, end := start/o.chunk, (start+n+o.chunk-1)/o.chunk // chunks [first, end)
	full := min(end, k/o.chunk)                              // chunks before full are whole
	if full > first {
		cols := s.Narrow(o.table, 1, first*o.chunk, (full-first)*o.chunk)
		lse := s.LogSumExp(s.Reshape(cols, c, full-first, o.chunk), []int{2}, false)
		s.CopyInto(s.Narrow(o.partial, 1, first, full-first), lse)
	}
	if end > full { // the last chunk, shorter when chunk does not divide K
		from := max(first, full)
		cols := s.Narrow(o.table, 1, from*o.chunk, k-from*o.chunk)
		s.CopyInto(s.Narrow(o.partial, 1, from, 1), s.LogSumExp(cols, []int{1}, true))
	}
}

func (o *hdgeObjective) Loss(st *Step) (*torch.Tensor, []Term) {
	return hybrid(st, o.cfg.hybrid(), "gen", func() *torch.Tensor { return o.genLoss(st.S, st.Logits(), st.Y) })
}

// Parameters: HDGE trains nothing of its own.
func (o *hdgeObjective) Parameters() []*torch.Tensor { return nil }

// AfterStep enqueues the step's logits, gathered across processes in rank order, so that every
// process holds the same global queue.
func (o *hdgeObjective) AfterStep(st *Step) error {
	return o.Update(st.Gathered(st.S.Detach(st.Logits())))
}

// genLoss is -log q(x|y) as the cross-entropy over [l_pos, l_neg_1..K]/τ with target 0.
func (o *hdgeObjective) genLoss(s *torch.Scope, logits, y *torch.Tensor) *torch.Tensor {
	p := o.normalize(s, logits, 1)
	d := dist(s, y, o.cfg.Classes, o.on, o.off)
	pos := s.DivScalar(positive(s, o.cfg.Contrast, d, p), o.cfg.Temperature) // B, with gradient
	// The table never requires grad, so the negatives are constants here as in the released code.
	negPerClass := s.LogSumExp(o.partial, []int{1}, false) // C: logsumexp_k T[c,k]/τ
	neg := s.IndexSelect(negPerClass, 0, y)                // B
	lse := s.LogSumExp(s.Stack([]*torch.Tensor{pos, neg}, 1), []int{1}, false)
	return s.Mean(s.Sub(lse, pos), nil, false)
}

// Update enqueues the batch's raw logits, replacing the oldest columns and wrapping around the
// end, so any batch size works (the released code requires K % B == 0).
func (o *hdgeObjective) Update(logits *torch.Tensor) error {
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	k := int64(o.cfg.QueueSize)
	cols := s.Transpose(s.Detach(logits), 0, 1) // C×B
	b := cols.Size(1)
	if b > k { // only the newest K fit
		cols = s.Narrow(cols, 1, b-k, k)
		b = k
	}
	for done := int64(0); done < b; {
		n := min(b-done, k-o.ptr)
		part := s.Narrow(cols, 1, done, n)
		s.CopyInto(s.Narrow(o.queue, 1, o.ptr, n), part)
		s.CopyInto(s.Narrow(o.table, 1, o.ptr, n), o.negTable(s, part))
		o.refreshPartial(s, o.ptr, n)
		o.ptr = (o.ptr + n) % k
		done += n
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("hdge queue update: %w", err)
	}
	return nil
}

// Tensors saves the queue and its pointer, and also the negatives table and its chunk sums
// although both derive from the queue: recomputing them all at once on resume rounds differently
// from the column-by-column updates of an uninterrupted run (vectorised and scalar tails of exp
// and logsumexp); saved, a resumed run starts from exactly the state the interrupted one had.
func (o *hdgeObjective) State(s *torch.Scope) map[string]*torch.Tensor {
	ptr := s.FromInt64([]int64{o.ptr})
	return map[string]*torch.Tensor{"queue": o.queue, "queue_ptr": ptr, "table": o.table, "partial": o.partial}
}

func (o *hdgeObjective) LoadState(m map[string]*torch.Tensor) error {
	q, ok := m["queue"]
	if !ok {
		return fmt.Errorf("checkpoint has no hdge queue (was it trained with another objective?)")
	}
	if err := sameShape("queue", o.queue.Shape(), q.Shape()); err != nil {
		return err
	}
	ptrT, ok := m["queue_ptr"]
	if !ok {
		return fmt.Errorf("checkpoint has a queue but no queue_ptr")
	}
	ptr, err := ptrT.Item()
	if err != nil {
		return fmt.Errorf("queue_ptr: %w", err)
	}
	if ptr < 0 || int64(ptr) >= int64(o.cfg.QueueSize) {
		return fmt.Errorf("queue_ptr %v out of range [0, %d)", ptr, o.cfg.QueueSize)
	}
	s := torch.NewScope()
	defer s.Close()
	s.SetGradEnabled(false)
	s.CopyInto(o.queue, q)
	if err := s.Err(); err != nil {
		return fmt.Errorf("loading queue: %w", err)
	}
	o.ptr = int64(ptr)
	table, okT := m["table"]
	partial, okP := m["partial"]
	if !okT || !okP || sameShape("table", o.table.Shape(), table.Shape()) != nil ||
		sameShape("partial", o.partial.Shape(), partial.Shape()) != nil {
		return o.refreshTable(0, int64(o.cfg.QueueSize)) // an older checkpoint: derive them
	}
	s.CopyInto(o.table, table)
	s.CopyInto(o.partial, partial)
	if err := s.Err(); err != nil {
		return fmt.Errorf("loading the negatives table: %w", err)
	}
	return nil
}

func (o *hdgeObjective) Close() { o.store.Close() }

func sameShape(name string, want, got []int64) error {
	if fmt.Sprint(want) != fmt.Sprint(got) {
		return fmt.Errorf("%s: checkpoint has shape %v, this run expects %v", name, got, want)
	}
	return nil
}
