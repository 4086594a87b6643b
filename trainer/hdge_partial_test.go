package trainer

import (
	"fmt"
	"math"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// TestChunkedNegatives checks that the per-chunk logsumexps give the per-class logsumexp of the
// whole negatives table after updates that straddle chunks and wrap around, for queue sizes the
// chunk divides and ones it does not.
func TestChunkedNegatives(t *testing.T) {
	for _, k := range []int{1, 10, 16, 65} {
		t.Run(fmt.Sprintf("K%d", k), func(t *testing.T) {
			s := torch.NewScope()
			defer s.Close()
			const classes = 3
			obj, err := newHDGE(hdgeConfig{HDGESettings: HDGESettings{QueueSize: k, Temperature: 0.1, Contrast: "official", NormLogits: true}, Alpha: 0.5, Classes: classes}, nil, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			check := func(when string) {
				t.Helper()
				got, err1 := s.LogSumExp(obj.partial, []int{1}, false).Float64s()
				want, err2 := s.LogSumExp(obj.table, []int{1}, false).Float64s()
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				for c := range want {
					if math.Abs(got[c]-want[c]) > 1e-6*math.Abs(want[c]) {
						t.Fatalf("%s: class %d: chunked logsumexp %v, whole table %v", when, c, got[c], want[c])
					}
				}
			}
			check("initial queue")
			for i, batch := range []int{4, 7, 13, 30, 2} {
				x := s.MulScalar(s.Randn(nil, []int64{int64(batch), classes}, torch.Float32, torch.CPU), 5)
				if err := obj.Update(x); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("update %d (batch %d)", i, batch))
			}
			q := s.Randn(nil, []int64{classes, int64(k)}, torch.Float32, torch.CPU)
			if err := obj.LoadState(map[string]*torch.Tensor{"queue": q, "queue_ptr": s.FromInt64([]int64{0})}); err != nil {
				t.Fatal(err)
			}
			check("loaded queue")
		})
	}
}
