package data

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"
)

func collect(t *testing.T, l *Loader, from Position, max int) []Batch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out []Batch
	for b := range l.Start(ctx, from) {
		out = append(out, b)
		if len(out) == max {
			cancel()
			break
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameBatch(t *testing.T, what string, a, b Batch) {
	t.Helper()
	if a.Epoch != b.Epoch || a.Index != b.Index || !slices.Equal(a.Y, b.Y) || !slices.Equal(a.Indices, b.Indices) || len(a.X) != len(b.X) {
		t.Fatalf("%s: batch (%d,%d) vs (%d,%d) differ in labels, indices or size", what, a.Epoch, a.Index, b.Epoch, b.Index)
	}
	for i := range a.X {
		if math.Float32bits(a.X[i]) != math.Float32bits(b.X[i]) {
			t.Fatalf("%s: batch (%d,%d) X[%d] = %v vs %v", what, a.Epoch, a.Index, i, a.X[i], b.X[i])
		}
	}
}

var fullAug = Augment{Crop: 4, Flip: true, Noise: 0.03}

func TestLoaderWorkersIdentical(t *testing.T) {
	d := synthetic(203, 3, 8, 8, 10, 1)
	cfg := LoaderConfig{BatchSize: 16, Shuffle: true, Epochs: 3, Seed: 9, Augment: fullAug}
	var runs [][]Batch
	for _, w := range []int{1, 4} {
		cfg.Workers = w
		runs = append(runs, collect(t, NewLoader(d, cfg), Position{}, -1))
	}
	if len(runs[0]) != 3*13 || len(runs[1]) != len(runs[0]) {
		t.Fatalf("got %d and %d batches, want 39", len(runs[0]), len(runs[1]))
	}
	l := NewLoader(d, cfg)
	for i := range runs[0] {
		sameBatch(t, "1 vs 4 workers", runs[0][i], runs[1][i])
		g, err := l.Get(runs[0][i].Epoch, runs[0][i].Index)
		if err != nil {
			t.Fatal(err)
		}
		sameBatch(t, "stream vs Get", runs[0][i], g)
	}
	// Another seed gives other batches.
	cfg.Seed = 10
	other := collect(t, NewLoader(d, cfg), Position{}, 1)
	if slices.Equal(other[0].Indices, runs[0][0].Indices) {
		t.Error("seed does not change the order")
	}
}

func TestLoaderResume(t *testing.T) {
	d := synthetic(100, 1, 6, 6, 10, 2)
	cfg := LoaderConfig{BatchSize: 7, Workers: 3, Shuffle: true, DropLast: true, Seed: 5, Augment: fullAug}
	l := NewLoader(d, cfg)
	if l.BatchesPerEpoch() != 14 {
		t.Fatalf("batches per epoch %d, want 14", l.BatchesPerEpoch())
	}
	all := collect(t, l, Position{}, 50)
	for _, k := range []int{0, 12, 13, 27, 40} {
		pos := l.After(all[k])
		blob, _ := json.Marshal(pos)
		var back Position
		if err := json.Unmarshal(blob, &back); err != nil {
			t.Fatal(err)
		}
		// A fresh loader, as after a restart.
		rest := collect(t, NewLoader(d, cfg), back, 50-k-1)
		for i, b := range rest {
			sameBatch(t, "resumed", all[k+1+i], b)
		}
	}
	if all[13].Index != 13 || all[14].Epoch != 1 || all[14].Index != 0 {
		t.Errorf("epoch boundary: (%d,%d) then (%d,%d)", all[13].Epoch, all[13].Index, all[14].Epoch, all[14].Index)
	}
}

func TestLoaderEpochs(t *testing.T) {
	d := synthetic(50, 1, 4, 4, 5, 3)
	l := NewLoader(d, LoaderConfig{BatchSize: 8, Workers: 2, Shuffle: true, Epochs: 2, Seed: 1})
	bs := collect(t, l, Position{}, -1)
	if len(bs) != 14 || len(bs[6].Y) != 2 {
		t.Fatalf("%d batches, last of epoch 0 has %d images; want 14 and 2", len(bs), len(bs[6].Y))
	}
	var e0, e1 []int
	for _, b := range bs {
		if b.Epoch == 0 {
			e0 = append(e0, b.Indices...)
		} else {
			e1 = append(e1, b.Indices...)
		}
	}
	if slices.Equal(e0, e1) {
		t.Error("two epochs in the same order")
	}
	for _, e := range [][]int{e0, e1} {
		s := slices.Clone(e)
		slices.Sort(s)
		if !slices.Equal(s, identity(50)) {
			t.Fatalf("epoch does not visit every image once: %v", s)
		}
	}
}

// TestLoaderEval is the evaluation set-up: in order, no augmentation, last batch kept; pixels
// scaled exactly as (v/255 - 0.5)/0.5.
func TestLoaderEval(t *testing.T) {
	d := synthetic(21, 3, 4, 4, 7, 4)
	l := NewLoader(d, LoaderConfig{BatchSize: 10, Workers: 2, Epochs: 1})
	bs := collect(t, l, Position{}, -1)
	if len(bs) != 3 || len(bs[2].Y) != 1 {
		t.Fatalf("%d batches", len(bs))
	}
	k := 0
	for _, b := range bs {
		for j, idx := range b.Indices {
			if idx != k || b.Y[j] != d.Labels[k] {
				t.Fatalf("image %d at position %d", idx, k)
			}
			for p, v := range d.Image(k) {
				want := (float32(v)/255 - 0.5) / 0.5
				if got := b.X[j*48+p]; math.Abs(float64(got-want)) > 1e-6 {
					t.Fatalf("image %d pixel %d: %v, want %v", k, p, got, want)
				}
			}
			k++
		}
	}
}

// TestAugmentCrop checks every augmented image is one of the 81×2 reflect-pad crops and flips of
// its source, and that offsets and flips vary.
func TestAugmentCrop(t *testing.T) {
	d := synthetic(64, 2, 9, 7, 4, 5)
	l := NewLoader(d, LoaderConfig{BatchSize: 64, Shuffle: true, Seed: 3, Augment: Augment{Crop: 4, Flip: true}})
	b, err := l.Get(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	lut := func(v uint8) float32 { return float32(v)/127.5 - 1 }
	type choice struct {
		ox, oy int
		flip   bool
	}
	seen := map[choice]bool{}
	for j, idx := range b.Indices {
		src := d.Image(idx)
		got := b.X[j*d.ImageSize() : (j+1)*d.ImageSize()]
		found := false
		for oy := 0; oy <= 8 && !found; oy++ {
			for ox := 0; ox <= 8 && !found; ox++ {
				for _, flip := range []bool{false, true} {
					ok := true
					for c := 0; c < d.C && ok; c++ {
						for y := 0; y < d.H && ok; y++ {
							for x := 0; x < d.W; x++ {
								sx := x
								if flip {
									sx = d.W - 1 - x
								}
								// torch reflect padding: index -1 maps to 1, n maps to n-2.
								ry, rx := y+oy-4, sx+ox-4
								for ry < 0 || ry >= d.H {
									if ry < 0 {
										ry = -ry
									} else {
										ry = 2*(d.H-1) - ry
									}
								}
								for rx < 0 || rx >= d.W {
									if rx < 0 {
										rx = -rx
									} else {
										rx = 2*(d.W-1) - rx
									}
								}
								if got[c*d.H*d.W+y*d.W+x] != lut(src[c*d.H*d.W+ry*d.W+rx]) {
									ok = false
									break
								}
							}
						}
					}
					if ok {
						found = true
						seen[choice{ox, oy, flip}] = true
						break
					}
				}
			}
		}
		if !found {
			t.Fatalf("image %d is no crop/flip of its source", j)
		}
	}
	if len(seen) < 30 {
		t.Errorf("only %d distinct crop choices in 64 images", len(seen))
	}
}

func TestAugmentNoise(t *testing.T) {
	d := &Dataset{Name: "flat", N: 32, C: 3, H: 16, W: 16, Classes: []string{"a"}, Labels: make([]int64, 32)}
	d.Images = make([]uint8, 32*768)
	l := NewLoader(d, LoaderConfig{BatchSize: 32, Augment: Augment{Noise: 0.03}})
	b, _ := l.Get(0, 0)
	var s, s2 float64
	for _, v := range b.X {
		e := float64(v + 1) // the clean value is -1
		s += e
		s2 += e * e
	}
	n := float64(len(b.X))
	if m, sd := s/n, math.Sqrt(s2/n-(s/n)*(s/n)); math.Abs(m) > 0.001 || math.Abs(sd-0.03) > 0.001 {
		t.Errorf("noise mean %v std %v, want 0 and 0.03", m, sd)
	}
}

func TestLoaderCancelNoLeak(t *testing.T) {
	d := synthetic(500, 3, 8, 8, 10, 6)
	base := runtime.NumGoroutine()
	for range 5 {
		l := NewLoader(d, LoaderConfig{BatchSize: 8, Workers: 4, Prefetch: 3, Shuffle: true, Augment: fullAug})
		ctx, cancel := context.WithCancel(context.Background())
		ch := l.Start(ctx, Position{})
		<-ch
		<-ch
		cancel() // the consumer walks away without draining
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines left, %d before", n, base)
	}
}

func TestLoaderBadConfig(t *testing.T) {
	d := synthetic(10, 1, 2, 2, 2, 7)
	for _, cfg := range []LoaderConfig{{BatchSize: 0}, {BatchSize: 11, DropLast: true}, {BatchSize: 2, Augment: Augment{Crop: -1}}, {BatchSize: 2, Augment: Augment{Noise: math.NaN()}}} {
		l := NewLoader(d, cfg)
		if l.Err() == nil {
			t.Errorf("%+v accepted", cfg)
		}
		if _, ok := <-l.Start(context.Background(), Position{}); ok {
			t.Errorf("%+v produced a batch", cfg)
		}
	}
	l := NewLoader(d, LoaderConfig{BatchSize: 2})
	if _, ok := <-l.Start(context.Background(), Position{Epoch: 0, Batch: 9}); ok || l.Err() == nil {
		t.Error("out-of-range start position accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, ok := <-l.Start(ctx, Position{Epoch: 1, Batch: 5}); !ok || l.Err() != nil {
		t.Errorf("a good start after a bad one: %v", l.Err())
	}
}

func TestRecycle(t *testing.T) {
	d := synthetic(40, 1, 4, 4, 2, 8)
	l := NewLoader(d, LoaderConfig{BatchSize: 8, Epochs: 2, Workers: 2, Augment: fullAug, Shuffle: true, Seed: 1})
	ref := collect(t, NewLoader(d, LoaderConfig{BatchSize: 8, Epochs: 2, Workers: 1, Augment: fullAug, Shuffle: true, Seed: 1}), Position{}, -1)
	i := 0
	for b := range l.Start(context.Background(), Position{}) {
		sameBatch(t, "with recycling", ref[i], b)
		l.Recycle(b)
		i++
	}
	if i != 10 {
		t.Fatalf("%d batches", i)
	}
}
