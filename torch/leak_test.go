package torch

import (
	"bufio"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// residentKB reads VmRSS from /proc/self/status (0 where there is no procfs).
func residentKB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb
		}
	}
	return 0
}

// TestNoLeaks trains a tiny conv net with Adam for 1000 steps, each step in its own scope, and
// checks every handle is freed and resident memory stays flat between step 100 and step 1000.
func TestNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 training steps")
	}
	base := LiveTensors()
	store := NewScope()
	g, err := NewGenerator(5, CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	convW := store.MulScalar(store.Randn(g, []int64{4, 1, 3, 3}, Float32, CPU), 0.3)
	convB := store.Zeros([]int64{4}, Float32, CPU)
	bnW, bnB := store.Ones([]int64{4}, Float32, CPU), store.Zeros([]int64{4}, Float32, CPU)
	runMean, runVar := store.Zeros([]int64{4}, Float32, CPU), store.Ones([]int64{4}, Float32, CPU)
	fcW := store.MulScalar(store.Randn(g, []int64{3, 64}, Float32, CPU), 0.1)
	fcB := store.Zeros([]int64{3}, Float32, CPU)
	params := []*Tensor{convW, convB, bnW, bnB, fcW, fcB}
	for _, p := range params {
		if err := p.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	opt := NewAdam(params, DefaultAdamConfig(1e-2))
	x := store.Zeros([]int64{8, 1, 8, 8}, Float32, CPU)
	host := make([]float32, 8*64)
	labels := store.FromInt64([]int64{0, 1, 2, 0, 1, 2, 0, 1})
	if err := store.Err(); err != nil {
		t.Fatal(err)
	}

	var rss100 int64
	var first, last float64
	for step := 1; step <= 1000; step++ {
		for i := range host {
			host[i] = float32((i*7+step)%13) / 13
		}
		if err := x.CopyFromFloat32(host); err != nil {
			t.Fatal(err)
		}
		s := NewScope()
		ZeroGrad(params)
		h := s.ReLU(s.BatchNorm(s.Conv2d(x, convW, convB, 1, 1), bnW, bnB, runMean, runVar, true, 0.1, 1e-5))
		h = s.Flatten(s.AvgPool2d(h, 2, 2, 0), 1, -1)
		loss := s.CrossEntropy(s.Linear(h, fcW, fcB), labels, 0.1, Mean)
		s.Backward(loss)
		if err := s.Err(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if step == 1 || step == 1000 {
			v, _ := loss.Item()
			if step == 1 {
				first = v
			} else {
				last = v
			}
		}
		s.Close()
		if err := opt.Step(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if step == 100 {
			runtime.GC()
			rss100 = residentKB(t)
		}
	}
	runtime.GC()
	rss1000 := residentKB(t)
	if last >= first {
		t.Errorf("loss did not fall: %v -> %v", first, last)
	}
	if grow := rss1000 - rss100; grow > 20*1024 {
		t.Errorf("resident memory grew %d kB between step 100 and 1000 (limit 20 MB)", grow)
	}
	t.Logf("loss %.4f -> %.4f, VmRSS %d kB at step 100, %d kB at step 1000", first, last, rss100, rss1000)
	opt.Close()
	ZeroGrad(params)
	store.Close()
	if n := LiveTensors(); n != base {
		t.Errorf("LiveTensors %d after closing everything, want %d", n, base)
	}
}

func TestScopeOwnership(t *testing.T) {
	base := LiveTensors()
	store := NewScope()
	s := NewScope()
	a := s.Ones([]int64{2}, Float32, CPU)
	b := s.AddScalar(a, 1)
	if s.Len() != 2 || LiveTensors() != base+2 {
		t.Fatalf("Len %d, live %d", s.Len(), LiveTensors()-base)
	}
	if store.Adopt(b) != b || store.Len() != 1 || s.Len() != 1 {
		t.Fatalf("after Adopt: store %d, step %d", store.Len(), s.Len())
	}
	s.Close()
	if got, err := b.Float32s(); err != nil || got[0] != 2 {
		t.Fatalf("adopted tensor after its old scope closed: %v %v", got, err)
	}
	a.Free() // already freed by Close: a no-op
	b.Free()
	b.Free()
	if store.Len() != 0 || LiveTensors() != base {
		t.Fatalf("after Free: Len %d, live %d", store.Len(), LiveTensors()-base)
	}
	// Many frees in a long-lived scope must not grow its bookkeeping without bound.
	for range 1000 {
		store.Ones([]int64{1}, Float32, CPU).Free()
	}
	if len(store.ts) > 128 {
		t.Errorf("scope keeps %d slots for 0 tensors", len(store.ts))
	}
	keep := store.Ones([]int64{1}, Float32, CPU)
	for range 200 {
		store.Ones([]int64{1}, Float32, CPU).Free()
	}
	if v, err := keep.Item(); err != nil || v != 1 || store.Len() != 1 {
		t.Errorf("survivor after compaction: %v %v, Len %d", v, err, store.Len())
	}
	// Grad returns an alias; ZeroGrad drops it.
	w := store.Ones([]int64{3}, Float32, CPU)
	_ = w.SetRequiresGrad(true)
	st := NewScope()
	st.Backward(st.Sum(st.MulScalar(w, 3), nil, false))
	if g := st.Grad(w); g == nil {
		t.Fatal("no grad after Backward")
	}
	ZeroGrad([]*Tensor{w})
	if g := st.Grad(w); g != nil {
		t.Errorf("grad after ZeroGrad: %v", g)
	}
	// With grad recording off nothing is tracked.
	st.SetGradEnabled(false)
	if y := st.MulScalar(w, 2); y.RequiresGrad() {
		t.Errorf("op with grad disabled requires grad")
	}
	st.Close()
	store.Close()
	if LiveTensors() != base {
		t.Errorf("live %d after closing", LiveTensors()-base)
	}
}

// TestChildScopeMerge: a child scope's intermediates are freed when it is merged, only the kept
// results move to the parent, gradients still flow through the freed intermediates, and a child's
// error reaches the parent.
func TestChildScopeMerge(t *testing.T) {
	s := NewScope()
	defer s.Close()
	w := s.FromFloat32([]float32{1, 2, 3}, 3)
	_ = w.SetRequiresGrad(true)
	base := LiveTensors()
	c := s.Child()
	h := c.Exp(c.MulScalar(w, 2))
	y := c.Sum(c.Square(h), nil, false)
	s.Merge(c, y)
	if got := LiveTensors() - base; got != 1 || s.Len() != 2 {
		t.Fatalf("after Merge: %d new live tensors and %d in the parent, want 1 and 2", got, s.Len())
	}
	g := s.Gradients([]*Tensor{y}, []*Tensor{w}, false)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	got, _ := g[0].Float32s()
	for i, v := range []float64{1, 2, 3} {
		want := 4 * math.Exp(4*v) // d/dw Σ exp(2w)² = 4·exp(4w)
		if math.Abs(float64(got[i])-want) > 1e-5*want {
			t.Fatalf("gradient %d: %g, want %g", i, got[i], want)
		}
	}
	c = s.Child()
	c.Reshape(w, 7)
	s.Merge(c)
	if s.Err() == nil {
		t.Fatal("the child's error did not reach the parent")
	}
}
