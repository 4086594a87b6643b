package data

import (
	"context"
	"path/filepath"
	"testing"
)

// benchPipeline measures what the trainer sees: batches taken off the channel and recycled, with
// JEM's training augmentation, 2 workers.
func benchPipeline(b *testing.B, d *Dataset) {
	l := NewLoader(d, LoaderConfig{BatchSize: 64, Workers: 2, Shuffle: true, DropLast: true, Seed: 1,
		Augment: Augment{Crop: 4, Flip: true, Noise: 0.03}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Start(ctx, Position{})
	imgs := 0
	for b.Loop() {
		bt := <-ch
		imgs += len(bt.Y)
		l.Recycle(bt)
	}
	b.ReportMetric(float64(imgs)/b.Elapsed().Seconds(), "img/s")
}

func BenchmarkPipelineFashionMNIST(b *testing.B) {
	d, err := Source{Dirs: []string{filepath.Dir(fashionDir(b))}}.Load("fashion-mnist", Train)
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, d)
}

func BenchmarkPipelineCIFAR10(b *testing.B) {
	d, err := Source{Dirs: []string{sharedData(b)}}.Load("cifar10", Train)
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, d)
}
