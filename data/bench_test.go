package data

import (
	"context"
	"path/filepath"
	"testing"
)

// benchPipeline measures what the trainer sees: batches taken off the channel and recycled, with
// JEM's training augmentation, 2 workers.
func benchPipeline(b *testing.B, d *Dataset) {
	benchLoader(b, LoaderConfig{BatchSize: 64, Workers: 2, Shuffle: true, DropLast: true, Seed: 1,
		Augment: Augment{Crop: 4, Flip: true, Noise: 0.03}})(d)
}

// Step times of one training step at batch 64 on one core (the CPU defaults' wrn-10-2 on
// Fashion-MNIST, wrn-16-4 on CIFAR-10), measured with trainer's BenchmarkTrainStep; the data
// wait a loader costs is at most its time per batch on one core, reported as a share of these.
const (
	stepFashionMS = 250.0
	stepCIFARMS   = 1500.0
)

func benchLoader(b *testing.B, cfg LoaderConfig) func(d *Dataset) {
	return func(d *Dataset) {
		l := NewLoader(d, cfg)
		if err := l.Err(); err != nil {
			b.Fatal(err)
		}
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
		if cfg.Workers == 1 {
			ms := b.Elapsed().Seconds() * 1000 / float64(b.N)
			b.ReportMetric(ms, "ms/batch")
			step := stepFashionMS
			if d.C == 3 {
				step = stepCIFARMS
			}
			b.ReportMetric(100*ms/step, "%step")
		}
	}
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

// BenchmarkTwoViews is the contrastive pipeline (two views, every augmentation, batch 64) built by
// one worker, so ms/batch is one core's work per batch and %step its share of a training step.
// Plain is JEM's single view on one worker, for comparison in the same run.
func BenchmarkTwoViews(b *testing.B) {
	for _, ds := range []struct {
		name string
		load func() (*Dataset, error)
	}{
		{"CIFAR10", func() (*Dataset, error) { return Source{Dirs: []string{sharedData(b)}}.Load("cifar10", Train) }},
		{"FashionMNIST", func() (*Dataset, error) {
			return Source{Dirs: []string{filepath.Dir(fashionDir(b))}}.Load("fashion-mnist", Train)
		}},
	} {
		d, err := ds.load()
		if err != nil {
			b.Fatal(err)
		}
		base := LoaderConfig{BatchSize: 64, Workers: 1, Shuffle: true, DropLast: true, Seed: 1}
		plain := base
		plain.Augment = DefaultAugment(d.C == 1)
		two := base
		two.Views = 2
		two.Augment = ContrastiveAugment(false)
		two.Augment.Noise = 0.03
		b.Run(ds.name+"/plain", func(b *testing.B) { benchLoader(b, plain)(d) })
		b.Run(ds.name+"/two-views", func(b *testing.B) { benchLoader(b, two)(d) })
	}
}
