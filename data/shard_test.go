package data

import (
	"slices"
	"strings"
	"testing"
)

// N ranks' shards of every global batch, concatenated in rank order, are exactly the batch one
// process with the global batch gets: the same images, labels and augmented pixels, bit for bit.
func TestShardsMakeTheGlobalBatch(t *testing.T) {
	d := synthetic(203, 3, 8, 8, 10, 11)
	global := LoaderConfig{BatchSize: 24, Shuffle: true, DropLast: true, Epochs: 2, Seed: 5, Augment: fullAug, Workers: 2}
	want := collect(t, NewLoader(d, global), Position{}, -1)
	for _, n := range []int{2, 3} {
		shards := make([][]Batch, n)
		for r := range n {
			cfg := global
			cfg.Shard = Shard{Rank: r, Count: n}
			shards[r] = collect(t, NewLoader(d, cfg), Position{}, -1)
			if len(shards[r]) != len(want) {
				t.Fatalf("%d ranks: rank %d got %d batches, want %d", n, r, len(shards[r]), len(want))
			}
		}
		for i, w := range want {
			var u Batch
			u.Epoch, u.Index = w.Epoch, w.Index
			for r := range n {
				b := shards[r][i]
				if b.Epoch != w.Epoch || b.Index != w.Index || len(b.Y) != global.BatchSize/n {
					t.Fatalf("%d ranks: rank %d batch %d is (%d,%d) with %d images", n, r, i, b.Epoch, b.Index, len(b.Y))
				}
				u.X = append(u.X, b.X...)
				u.Y = append(u.Y, b.Y...)
				u.Indices = append(u.Indices, b.Indices...)
			}
			sameBatch(t, "union of shards vs the global batch", w, u)
		}
		// Different ranks do hold different images.
		if slices.Equal(shards[0][0].Indices, shards[1][0].Indices) {
			t.Fatalf("%d ranks: ranks 0 and 1 got the same images", n)
		}
	}
}

func TestShardBadConfig(t *testing.T) {
	d := synthetic(40, 1, 4, 4, 2, 12)
	for _, tc := range []struct {
		cfg  LoaderConfig
		want string
	}{
		{LoaderConfig{BatchSize: 10, DropLast: true, Shard: Shard{Rank: 0, Count: 3}}, "does not split into 3"},
		{LoaderConfig{BatchSize: 10, DropLast: true, Shard: Shard{Rank: 2, Count: 2}}, "shard rank 2 outside [0, 2)"},
		{LoaderConfig{BatchSize: 10, Shard: Shard{Rank: 0, Count: 2}}, "needs drop-last"},
	} {
		err := NewLoader(d, tc.cfg).Err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
