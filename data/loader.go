package data

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// Augment is one view's input pipeline. The steps run in this order: pad-crop, random resized
// crop, flip, colour jitter, greyscale (all on pixels in [0, 1]), scaling to [-1, 1], noise. With
// only Crop, Flip and Noise set it is JEM/HDGE's pipeline, computed on bytes as before.
type Augment struct {
	Crop  int     // reflect-pad by Crop pixels, then crop back to H×W at a random offset; 0 = off
	Flip  bool    // random horizontal flip with probability 1/2
	Noise float64 // σ of additive Gaussian noise in [-1, 1] space; JEM uses 0.03 at train and test time

	ResizedCrop ResizedCrop // torchvision's RandomResizedCrop; zero = off
	Jitter      Jitter      // torchvision's RandomApply(ColorJitter); zero = off
	// Gray is the probability of RandomGrayscale: ITU-R 601-2 luma repeated over the 3 channels.
	// A no-op on 1-channel images.
	Gray float64
}

// DefaultAugment is JEM's training augmentation: pad 4 + crop, flips except for digits, σ = 0.03.
func DefaultAugment(digits bool) Augment {
	return Augment{Crop: 4, Flip: !digits, Noise: 0.03}
}

// Batch is a ready model input: X is B×C×H×W float32, Y the labels, Indices the dataset rows.
// (Epoch, Index) is its place in the stream. Views holds every view of the same images (as many
// as LoaderConfig.Views), each B×C×H×W; Views[0] is X.
type Batch struct {
	X []float32
	// Views holds every augmented view when the loader makes more than one (Views[0] is X).
	Views   [][]float32
	Y       []int64
	Indices []int
	Epoch   int
	Index   int
}

// LoaderConfig configures a Loader. Workers and Prefetch do not change the batches, only how fast
// they come. Epochs > 0 closes the stream after epoch Epochs-1; 0 streams until cancelled.
type LoaderConfig struct {
	BatchSize int
	Workers   int // goroutines building batches; <= 0 means 1
	Prefetch  int // ready batches buffered ahead of the consumer; <= 0 means 2 per worker
	Shuffle   bool
	DropLast  bool
	Epochs    int
	Seed      uint64
	Augment   Augment
	// Views is the number of independently augmented views of each image (contrastive methods
	// use 2); <= 0 means 1. View v draws from its own stream of (seed, epoch, batch, v); view 0's
	// is the single-view stream, so one view gives the same batches as before views existed.
	Views int
	// ViewAugment, when set, holds one Augment per view and replaces Augment.
	ViewAugment []Augment
	// Shard makes the stream one rank's share of data-parallel training: BatchSize is then the
	// global batch (every rank's together), and each batch holds only this rank's slice of it.
	Shard Shard
}

// Shard is rank Rank's place among Count data-parallel ranks. Rank r's batch (epoch, index) is
// images [r*B/Count, (r+1)*B/Count) of the global batch (epoch, index) of B = BatchSize, with the
// augmentation those images have in the global batch: Count ranks together see exactly what one
// process with the global batch sees. Count 0 or 1 is the whole batch.
type Shard struct {
	Rank, Count int
}

// Position is where a stream stands: the next batch to be produced. It is all a checkpoint needs
// to resume the exact batch sequence, because every batch is a function of (seed, epoch, index).
type Position struct {
	Epoch int `json:"epoch"`
	Batch int `json:"batch"`
}

// Loader turns a Dataset into a deterministic stream of batches.
type Loader struct {
	d    *Dataset
	cfg  LoaderConfig
	bpe  int
	augs []Augment // one per view
	err  error     // configuration error, fixed at construction
	lut  [256]float32
	pool sync.Pool

	mu       sync.Mutex
	startErr error // the last Start's bad position, cleared by a good one
}

// NewLoader checks cfg against d; a bad configuration is reported by Err and yields no batches.
func NewLoader(d *Dataset, cfg LoaderConfig) *Loader {
	l := &Loader{d: d, cfg: cfg}
	if l.cfg.Workers <= 0 {
		l.cfg.Workers = 1
	}
	if l.cfg.Prefetch <= 0 {
		l.cfg.Prefetch = 2 * l.cfg.Workers
	}
	if l.cfg.Views <= 0 {
		l.cfg.Views = 1
	}
	switch {
	case d == nil:
		l.err = errors.New("loader: nil dataset")
		return l
	case cfg.BatchSize <= 0:
		l.err = fmt.Errorf("loader %s: batch size %d, want > 0", d.Name, cfg.BatchSize)
	case cfg.Epochs < 0:
		l.err = fmt.Errorf("loader %s: epochs %d, want >= 0", d.Name, cfg.Epochs)
	case len(cfg.ViewAugment) > 0 && len(cfg.ViewAugment) != l.cfg.Views:
		l.err = fmt.Errorf("loader %s: %d view augmentations for %d views", d.Name, len(cfg.ViewAugment), l.cfg.Views)
	case cfg.Shard.Count > 1 && (cfg.Shard.Rank < 0 || cfg.Shard.Rank >= cfg.Shard.Count):
		l.err = fmt.Errorf("loader %s: shard rank %d outside [0, %d)", d.Name, cfg.Shard.Rank, cfg.Shard.Count)
	case cfg.Shard.Count > 1 && cfg.BatchSize%cfg.Shard.Count != 0:
		l.err = fmt.Errorf("loader %s: global batch %d does not split into %d equal shards", d.Name, cfg.BatchSize, cfg.Shard.Count)
	case cfg.Shard.Count > 1 && !cfg.DropLast:
		// A short last batch would give the ranks unequal shares, and averaged gradients unequal weights.
		l.err = fmt.Errorf("loader %s: sharding over %d ranks needs drop-last", d.Name, cfg.Shard.Count)
	case cfg.Shard.Count < 0:
		l.err = fmt.Errorf("loader %s: shard count %d, want >= 0", d.Name, cfg.Shard.Count)
	default:
		l.err = d.Validate()
	}
	if l.err != nil {
		return l
	}
	l.augs = make([]Augment, l.cfg.Views)
	for v := range l.augs {
		a, what := cfg.Augment, fmt.Sprintf("loader %s: augment", d.Name)
		if len(cfg.ViewAugment) > 0 {
			a, what = cfg.ViewAugment[v], fmt.Sprintf("loader %s: view %d augment", d.Name, v)
		}
		if l.err = a.Validate(what); l.err != nil {
			return l
		}
		if (a.Jitter.on() || a.Gray > 0) && d.C != 1 && d.C != 3 {
			l.err = fmt.Errorf("%s: colour jitter and greyscale need 1 or 3 channels, %s has %d", what, d.Name, d.C)
			return l
		}
		l.augs[v] = a
	}
	if cfg.DropLast {
		l.bpe = d.N / cfg.BatchSize
	} else {
		l.bpe = (d.N + cfg.BatchSize - 1) / cfg.BatchSize
	}
	if l.bpe == 0 {
		l.err = fmt.Errorf("loader %s: %d images make no batch of %d (drop-last %v)", d.Name, d.N, cfg.BatchSize, cfg.DropLast)
	}
	for v := range l.lut {
		l.lut[v] = float32(v)/(255*PixelStd) - PixelMean/PixelStd
	}
	size := l.shardBatch() * d.ImageSize()
	l.pool.New = func() any { s := make([]float32, size); return &s }
	return l
}

// shardBatch is the number of images in each of this loader's full batches.
func (l *Loader) shardBatch() int {
	if l.cfg.Shard.Count > 1 {
		return l.cfg.BatchSize / l.cfg.Shard.Count
	}
	return l.cfg.BatchSize
}

// Err reports a configuration error, or a bad start position given to Start.
func (l *Loader) Err() error {
	if l.err != nil {
		return l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.startErr
}

// BatchesPerEpoch is the number of batches in one epoch.
func (l *Loader) BatchesPerEpoch() int { return l.bpe }

// After is the position following b, for checkpoints taken after b was consumed.
func (l *Loader) After(b Batch) Position {
	if b.Index+1 >= l.bpe {
		return Position{Epoch: b.Epoch + 1}
	}
	return Position{Epoch: b.Epoch, Batch: b.Index + 1}
}

// Recycle hands b's pixel buffers back for reuse; b must not be used afterwards.
func (l *Loader) Recycle(b Batch) {
	views := b.Views
	if len(views) == 0 {
		views = [][]float32{b.X}
	}
	for _, v := range views {
		if cap(v) == l.shardBatch()*l.d.ImageSize() {
			x := v[:cap(v)]
			l.pool.Put(&x)
		}
	}
}

// Views is the number of views in each batch.
func (l *Loader) Views() int { return l.cfg.Views }

// Permutation is the image order of an epoch: a function of (seed, epoch) only.
func (l *Loader) Permutation(epoch int) []int {
	if !l.cfg.Shuffle {
		return identity(l.d.N)
	}
	return permutation(newRand(l.cfg.Seed, streamPerm, uint64(epoch)), l.d.N)
}

// Get builds batch (epoch, index) synchronously; the streamed batches are identical.
func (l *Loader) Get(epoch, index int) (Batch, error) {
	if l.err != nil {
		return Batch{}, l.err
	}
	if epoch < 0 || index < 0 || index >= l.bpe {
		return Batch{}, fmt.Errorf("loader %s: no batch (epoch %d, index %d); %d batches per epoch", l.d.Name, epoch, index, l.bpe)
	}
	w := l.newWorker()
	return w.batch(epoch, index, l.Permutation(epoch)), nil
}

// Start streams batches from position from, in order, built by cfg.Workers goroutines. The
// channel closes when cfg.Epochs are done or ctx is cancelled; cancelling always releases every
// goroutine, whether or not the consumer drains the channel.
func (l *Loader) Start(ctx context.Context, from Position) <-chan Batch {
	out := make(chan Batch, l.cfg.Prefetch)
	if l.err == nil && from.Batch == l.bpe {
		from = Position{Epoch: from.Epoch + 1}
	}
	if l.err == nil {
		var err error
		if from.Epoch < 0 || from.Batch < 0 || from.Batch > l.bpe {
			err = fmt.Errorf("loader %s: bad start position %+v (%d batches per epoch)", l.d.Name, from, l.bpe)
		}
		l.mu.Lock()
		l.startErr = err
		l.mu.Unlock()
	}
	if l.Err() != nil {
		close(out)
		return out
	}
	first := from.Epoch*l.bpe + from.Batch
	end := -1
	if l.cfg.Epochs > 0 {
		end = l.cfg.Epochs * l.bpe
	}
	nw := l.cfg.Workers
	// Worker k builds jobs k, k+nw, ...; reading the workers round-robin restores the global order
	// without a reorder buffer, and each worker's small channel bounds how far it runs ahead.
	lanes := make([]chan Batch, nw)
	perLane := max(1, l.cfg.Prefetch/nw)
	for k := range nw {
		lanes[k] = make(chan Batch, perLane)
		go func(k int, lane chan<- Batch) {
			defer close(lane)
			w := l.newWorker()
			permEpoch := -1
			var perm []int
			for job := first + k; end < 0 || job < end; job += nw {
				e, i := job/l.bpe, job%l.bpe
				if e != permEpoch {
					perm, permEpoch = l.Permutation(e), e
				}
				b := w.batch(e, i, perm)
				select {
				case lane <- b:
				case <-ctx.Done():
					return
				}
			}
		}(k, lanes[k])
	}
	go func() {
		defer close(out)
		for job := 0; ; job++ {
			var b Batch
			var ok bool
			select {
			case b, ok = <-lanes[job%nw]:
			case <-ctx.Done():
				return
			}
			if !ok {
				return
			}
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// worker holds the scratch space one goroutine reuses from batch to batch.
type worker struct {
	l          *Loader
	rows, cols []int
	// The float pipeline's two images and the bilinear taps of a resized crop.
	img, tmp       []float32
	y0, y1, x0, x1 []int
	ly, lx         []float32
}

func (l *Loader) newWorker() *worker {
	h, w := l.d.H, l.d.W
	return &worker{l: l, rows: make([]int, h), cols: make([]int, w),
		img: make([]float32, l.d.ImageSize()), tmp: make([]float32, l.d.ImageSize()),
		y0: make([]int, h), y1: make([]int, h), x0: make([]int, w), x1: make([]int, w),
		ly: make([]float32, h), lx: make([]float32, w)}
}

// reflect maps a coordinate of the padded image back into [0, n) as torch's "reflect" padding
// does (the edge pixel is not repeated).
func reflect(x, n int) int {
	if n == 1 {
		return 0
	}
	period := 2 * (n - 1)
	x %= period
	if x < 0 {
		x += period
	}
	if x >= n {
		x = period - x
	}
	return x
}

func (w *worker) batch(epoch, index int, perm []int) Batch {
	l, d, cfg := w.l, w.l.d, w.l.cfg
	start := index * cfg.BatchSize
	stop := min(start+cfg.BatchSize, d.N)
	global := perm[start:stop]
	// A shard is its slice of the global batch, augmented as in the global batch: every view of the
	// whole batch is made, then the slice is kept (the pipeline is far faster than a step).
	lo, hi := 0, len(global)
	if n := cfg.Shard.Count; n > 1 {
		lo, hi = len(global)*cfg.Shard.Rank/n, len(global)*(cfg.Shard.Rank+1)/n
	}
	bs := hi - lo
	size := d.ImageSize()
	b := Batch{Views: make([][]float32, cfg.Views), Y: make([]int64, bs), Indices: make([]int, bs), Epoch: epoch, Index: index}
	copy(b.Indices, global[lo:hi])
	for j, idx := range b.Indices {
		b.Y[j] = d.Labels[idx]
	}
	for v := range b.Views {
		xp := l.pool.Get().(*[]float32)
		dst := (*xp)[:bs*size]
		if bs == len(global) {
			w.view(dst, global, v, epoch, index)
		} else {
			all := make([]float32, len(global)*size)
			w.view(all, global, v, epoch, index)
			copy(dst, all[lo*size:hi*size])
		}
		b.Views[v] = dst
	}
	b.X = b.Views[0]
	return b
}

// viewRand is view v's stream for batch (epoch, index); view 0 keeps the single-view key.
func (l *Loader) viewRand(v, epoch, index int) *rand.Rand {
	if v == 0 {
		return newRand(l.cfg.Seed, streamAugment, uint64(epoch), uint64(index))
	}
	return newRand(l.cfg.Seed, streamAugment, uint64(epoch), uint64(index), uint64(v))
}

// view fills x with view v of the images idx. Each image draws, in order: pad-crop offsets, the
// flip, then (float pipeline) the resized-crop box, the jitter, the greyscale coin, then noise.
func (w *worker) view(x []float32, idx []int, v, epoch, index int) {
	l, d := w.l, w.l.d
	aug := l.augs[v]
	size := d.ImageSize()
	var r *rand.Rand
	if aug.Crop > 0 || aug.Flip || aug.Noise > 0 || aug.colour() {
		r = l.viewRand(v, epoch, index)
	}
	hw := d.H * d.W
	for j, idx := range idx {
		src := d.Image(idx)
		dst := x[j*size : (j+1)*size]
		ox, oy := aug.Crop, aug.Crop
		if aug.Crop > 0 {
			ox, oy = r.IntN(2*aug.Crop+1), r.IntN(2*aug.Crop+1)
		}
		flip := aug.Flip && r.Uint64()&1 == 1
		if aug.colour() {
			w.floatView(r, dst, src, aug, ox, oy, flip)
		} else if aug.Crop == 0 && !flip {
			lut := &l.lut
			for p, v := range src {
				dst[p] = lut[v]
			}
		} else {
			for y := range d.H {
				w.rows[y] = reflect(y+oy-aug.Crop, d.H) * d.W
			}
			for x := range d.W {
				sx := x
				if flip {
					sx = d.W - 1 - x
				}
				w.cols[x] = reflect(sx+ox-aug.Crop, d.W)
			}
			lut := &l.lut
			for c := range d.C {
				plane := src[c*hw : (c+1)*hw]
				out := dst[c*hw : (c+1)*hw]
				for y, ro := range w.rows {
					row := plane[ro : ro+d.W]
					o := out[y*d.W : (y+1)*d.W]
					for x, cx := range w.cols {
						o[x] = lut[row[cx]]
					}
				}
			}
		}
		if aug.Noise > 0 {
			addNoise(r, dst, aug.Noise)
		}
	}
}

// floatView is the pipeline with a resized crop or colour steps: pixels in [0, 1] as float32
// (torchvision's ToTensor before its tensor transforms), then scaled to [-1, 1] in dst.
func (w *worker) floatView(r *rand.Rand, dst []float32, src []uint8, aug Augment, ox, oy int, flip bool) {
	d := w.l.d
	hw := d.H * d.W
	img := w.img
	for y := range d.H {
		w.rows[y] = reflect(y+oy-aug.Crop, d.H) * d.W
	}
	for x := range d.W {
		w.cols[x] = reflect(x+ox-aug.Crop, d.W)
	}
	for c := range d.C {
		plane := src[c*hw : (c+1)*hw]
		out := img[c*hw : (c+1)*hw]
		for y, ro := range w.rows {
			o := out[y*d.W : (y+1)*d.W]
			for x, cx := range w.cols {
				o[x] = float32(plane[ro+cx]) / 255
			}
		}
	}
	if aug.ResizedCrop.on() {
		bx := sampleBox(r, d.H, d.W, aug.ResizedCrop)
		w.resizeBox(w.tmp, img, d.C, d.H, d.W, bx)
		w.img, w.tmp = w.tmp, w.img
		img = w.img
	}
	if flip {
		flipRows(img, d.W)
	}
	if aug.Jitter.on() && r.Float64() < aug.Jitter.Prob {
		colourJitter(r, img, d.C, hw, aug.Jitter)
	}
	if aug.Gray > 0 && r.Float64() < aug.Gray && d.C == 3 {
		grayscale(img, hw)
	}
	for i, v := range img {
		dst[i] = 2*v - 1
	}
}
