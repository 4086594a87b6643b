package sampler

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/nn"
	"github.com/hdge-torch/hdge-torch/torch"
)

func newGen(t testing.TB, seed uint64) *torch.Generator {
	t.Helper()
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func floats(t testing.TB, x *torch.Tensor) []float64 {
	t.Helper()
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// quadratic is E(x) = -‖x - m‖²/2 per sample over x [N, D], whose gradient is m - x: SGLD on it
// is the AR(1) chain x ← x + lr·(m - x) + std·ξ, with stationary mean m and variance
// std²/(lr·(2 - lr)) per coordinate.
func quadratic(m *torch.Tensor) Energy {
	return func(s *torch.Scope, x, _ *torch.Tensor) *torch.Tensor {
		return s.MulScalar(s.Sum(s.Square(s.Sub(x, m)), []int{1}, false), -0.5)
	}
}

func TestSGLDMovesByTheEnergyGradient(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	g := newGen(t, 1)
	mv := []float32{1, -2, 0.5}
	m := s.FromFloat32(mv, 1, 3)
	x0v := []float32{0, 0, 0, 3, 1, -1}
	x0 := s.FromFloat32(x0v, 2, 3)
	const lr = 0.3
	for steps := 1; steps <= 4; steps++ {
		x, err := SGLD(s, g, quadratic(m), x0, nil, Config{Steps: steps, LR: lr, Std: 0})
		if err != nil {
			t.Fatal(err)
		}
		got := floats(t, x)
		for i, v := range x0v {
			want := float64(v)
			for k := 0; k < steps; k++ {
				want += lr * (float64(mv[i%3]) - want)
			}
			if math.Abs(got[i]-want) > 1e-6 {
				t.Fatalf("%d steps, element %d: got %v, want %v", steps, i, got[i], want)
			}
		}
	}
	if v := floats(t, x0); v[3] != 3 {
		t.Fatalf("x0 was changed: %v", v)
	}
	total := func(s *torch.Scope, x, _ *torch.Tensor) *torch.Tensor { return s.Sum(x, nil, false) }
	if _, err := SGLD(s, g, total, x0, nil, Config{Steps: 1, LR: 1}); err == nil || !strings.Contains(err.Error(), "one value per sample") {
		t.Errorf("a scalar energy: %v", err)
	}
	if _, err := SGLD(s, nil, quadratic(m), x0, nil, Config{Steps: 1, LR: 1}); err == nil {
		t.Error("SGLD without a generator was accepted")
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
}

func TestSGLDReachesTheStationaryDistribution(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	g := newGen(t, 2)
	const n, lr, std = 4000, 0.1, 0.3
	m := s.FromFloat32([]float32{2, -1}, 1, 2)
	x0 := s.Zeros([]int64{n, 2}, torch.Float32, torch.CPU)
	x, err := SGLD(s, g, quadratic(m), x0, nil, Config{Steps: 200, LR: lr, Std: std})
	if err != nil {
		t.Fatal(err)
	}
	v := floats(t, x)
	wantVar := std * std / (lr * (2 - lr))
	for d, mean := range []float64{2, -1} {
		var sum, sq float64
		for i := 0; i < n; i++ {
			sum += v[2*i+d]
		}
		mu := sum / n
		for i := 0; i < n; i++ {
			sq += (v[2*i+d] - mu) * (v[2*i+d] - mu)
		}
		vr := sq / (n - 1)
		if se := math.Sqrt(wantVar / n); math.Abs(mu-mean) > 4*se {
			t.Errorf("dim %d: mean %.4f, want %.4f ± %.4f", d, mu, mean, 4*se)
		}
		// The sample variance of n normals has relative standard error √(2/n) ≈ 2.2 %.
		if math.Abs(vr/wantVar-1) > 4*math.Sqrt(2.0/n) {
			t.Errorf("dim %d: variance %.4f, want %.4f", d, vr, wantVar)
		}
	}
}

func TestConfigValidateNamesTheFlag(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		flag string
	}{
		{Config{Steps: 0, LR: 1, Std: 0.01}, "--sgld-steps"},
		{Config{Steps: -3, LR: 1, Std: 0.01}, "--sgld-steps"},
		{Config{Steps: 20, LR: 0, Std: 0.01}, "--sgld-lr"},
		{Config{Steps: 20, LR: math.NaN(), Std: 0.01}, "--sgld-lr"},
		{Config{Steps: 20, LR: 1, Std: -0.01}, "--sgld-std"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.flag)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultSettings().Validate(10); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod  func(*Settings)
		flag string
	}{
		{func(st *Settings) { st.SGLD.Steps = 0 }, "--sgld-steps"},
		{func(st *Settings) { st.BufferSize = -1 }, "--buffer-size"},
		{func(st *Settings) { st.ReinitFreq = 2 }, "--reinit-freq"},
		{func(st *Settings) { st.Cond, st.BufferSize = true, 10001 }, "--sgld-cond"},
	} {
		st := DefaultSettings()
		c.mod(&st)
		if err := st.Validate(10); err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("settings %+v: error %v, want one naming %s", st, err, c.flag)
		}
	}
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 1)
	if _, err := NewReplayBuffer(store, g, 0, []int64{1, 2, 2}, 0, torch.CPU); err == nil || !strings.Contains(err.Error(), "--buffer-size") {
		t.Errorf("size 0: %v", err)
	}
	if _, err := NewReplayBuffer(store, g, 105, []int64{1, 2, 2}, 10, torch.CPU); err == nil || !strings.Contains(err.Error(), "--buffer-size") {
		t.Errorf("size 105 with 10 classes: %v", err)
	}
	b, err := NewReplayBuffer(store, g, 100, []int64{1, 2, 2}, 0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	for _, p := range []float64{-0.1, 1.5, math.NaN()} {
		if _, _, _, err := b.Draw(s, g, 4, nil, p); err == nil || !strings.Contains(err.Error(), "--reinit-freq") {
			t.Errorf("reinit %v: %v", p, err)
		}
	}
	if _, _, _, err := b.Draw(s, g, 0, nil, 0.05); err == nil {
		t.Error("a draw of 0 chains was accepted")
	}
}

// TestReinitFrequency: each start is fresh noise with probability reinit, and otherwise a buffer
// chain (here all 5, outside the noise's range).
func TestReinitFrequency(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 7)
	b, err := NewReplayBuffer(store, g, 1000, []int64{1, 2, 2}, 0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	store.FillInPlace(b.Samples(), 5)
	const n = 10000
	for _, p := range []float64{0, 0.05, 0.3, 1} {
		s := torch.NewScope()
		x0, _, _, err := b.Draw(s, g, n, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		v := floats(t, x0)
		fresh := 0
		for i := 0; i < n; i++ {
			row := v[4*i : 4*i+4]
			isNoise := true
			for _, u := range row {
				if u < -1 || u > 1 {
					isNoise = false
				}
			}
			if isNoise {
				fresh++
			} else if row[0] != 5 || row[3] != 5 {
				t.Fatalf("sample %d is neither noise nor a buffer chain: %v", i, row)
			}
		}
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(fresh)-n*p) > 4*sd {
			t.Errorf("reinit %.2f: %d of %d fresh, want %.0f ± %.0f", p, fresh, n, n*p, 4*sd)
		}
		s.Close()
	}
}

// slotBuffer is a buffer whose slot j holds the value j everywhere, so a draw shows its slots.
func slotBuffer(t *testing.T, store *torch.Scope, g *torch.Generator, size, classes int) *ReplayBuffer {
	t.Helper()
	b, err := NewReplayBuffer(store, g, size, []int64{1, 2, 2}, classes, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, size*4)
	for i := range v {
		v[i] = float32(i / 4)
	}
	if err := b.Samples().CopyFromFloat32(v); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConditionalDrawsComeFromTheLabelsBlock(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 3)
	const size, classes, n = 200, 10, 2000
	b := slotBuffer(t, store, g, size, classes)
	s := torch.NewScope()
	defer s.Close()
	given := make([]int64, n)
	for i := range given {
		given[i] = int64(i % classes)
	}
	for _, y := range []*torch.Tensor{s.FromInt64(given), nil} {
		x0, idx, labels, err := b.Draw(s, g, n, y, 0)
		if err != nil {
			t.Fatal(err)
		}
		lv, err := labels.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		slots, _ := idx.Int64s()
		v := floats(t, x0)
		count := make([]int, classes)
		perSlot := make(map[int64]bool)
		for i := 0; i < n; i++ {
			slot := int64(v[4*i])
			if slot != slots[i] {
				t.Fatalf("sample %d holds slot %d, idx says %d", i, slot, slots[i])
			}
			if c := slot / (size / classes); c != lv[i] {
				t.Fatalf("sample %d with label %d came from slot %d (class block %d)", i, lv[i], slot, c)
			}
			count[lv[i]]++
			perSlot[slot] = true
		}
		if len(perSlot) != size {
			t.Errorf("draws reached %d of %d slots", len(perSlot), size)
		}
		if y == nil {
			// Uniform labels: each class's count is Binomial(n, 1/C), sd ≈ 13.4.
			for c, k := range count {
				if math.Abs(float64(k)-n/classes) > 4*math.Sqrt(n*0.1*0.9) {
					t.Errorf("class %d drawn %d times of %d", c, k, n)
				}
			}
		}
	}
	unc := slotBuffer(t, store, g, size, 0)
	if _, _, _, err := unc.Draw(s, g, 4, s.FromInt64([]int64{0, 1, 2, 3}), 0); err == nil {
		t.Error("labels for an unconditional buffer were accepted")
	}
}

func TestSampleWritesBackInPlace(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 4)
	b := slotBuffer(t, store, g, 50, 0)
	before := b.Samples()
	s := torch.NewScope()
	defer s.Close()
	m := s.FromFloat32([]float32{0.5, 0.5, 0.5, 0.5}, 1, 4)
	flat := func(e Energy) Energy {
		return func(s *torch.Scope, x, y *torch.Tensor) *torch.Tensor { return e(s, s.Flatten(x, 1, -1), y) }
	}
	x, labels, err := b.Sample(s, g, flat(quadratic(m)), 8, nil, 0, Config{Steps: 3, LR: 0.5, Std: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if labels != nil {
		t.Error("an unconditional sample has labels")
	}
	if b.Samples() != before {
		t.Fatal("the buffer tensor was replaced instead of written in place")
	}
	xs, buf := floats(t, x), floats(t, b.Samples())
	changed := 0
	for j := 0; j < 50; j++ {
		if buf[4*j] != float64(j) {
			changed++
		}
	}
	for i := 0; i < 8; i++ {
		found := false
		for j := 0; j < 50 && !found; j++ {
			found = xs[4*i] == buf[4*j] && xs[4*i+3] == buf[4*j+3]
		}
		if !found {
			t.Errorf("sample %d (%v) is not in the buffer", i, xs[4*i:4*i+4])
		}
	}
	if changed == 0 || changed > 8 {
		t.Errorf("%d slots changed by a draw of 8", changed)
	}
}

func sampleOnce(t *testing.T, b *ReplayBuffer, g *torch.Generator, e Energy) []float64 {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	x, _, err := b.Sample(s, g, e, 16, nil, 0.2, Config{Steps: 5, LR: 1, Std: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	return floats(t, x)
}

// TestCheckpointResumesTheChains: a buffer and generator restored from a checkpoint file give the
// very draw the original run would have made next.
func TestCheckpointResumesTheChains(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	mk := func(seed uint64) (*ReplayBuffer, *torch.Generator, Energy) {
		g := newGen(t, seed)
		b, err := NewReplayBuffer(store, g, 100, []int64{1, 2, 2}, 10, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		m := store.FromFloat32([]float32{0.5, -0.5, 0, 1}, 1, 4)
		e := func(s *torch.Scope, x, y *torch.Tensor) *torch.Tensor {
			d := s.Sub(s.Flatten(x, 1, -1), m)
			// y shifts the energy's centre so that the labels matter.
			d = s.Sub(d, s.MulScalar(s.Unsqueeze(s.ToDType(y, torch.Float32), 1), 0.1))
			return s.MulScalar(s.Sum(s.Square(d), []int{1}, false), -0.5)
		}
		return b, g, e
	}
	b, g, e := mk(11)
	sampleOnce(t, b, g, e)
	path := filepath.Join(t.TempDir(), "buffer.pt")
	s := torch.NewScope()
	if err := torch.Save(path, b.Tensors(s)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	state, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	want := sampleOnce(t, b, g, e)

	b2, g2, e2 := mk(99)
	ls := torch.NewScope()
	defer ls.Close()
	named, err := torch.Load(ls, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.LoadTensors(named); err != nil {
		t.Fatal(err)
	}
	if err := g2.SetState(state); err != nil {
		t.Fatal(err)
	}
	got := sampleOnce(t, b2, g2, e2)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("resumed draw differs at %d: %v, want %v", i, got[i], want[i])
		}
	}

	unc, err := NewReplayBuffer(store, g2, 100, []int64{1, 2, 2}, 0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := unc.LoadTensors(named); err == nil || !strings.Contains(err.Error(), "--sgld-cond") {
		t.Errorf("a conditional buffer loaded into an unconditional one: %v", err)
	}
	small, err := NewReplayBuffer(store, g2, 50, []int64{1, 2, 2}, 10, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if err := small.LoadTensors(named); err == nil || !strings.Contains(err.Error(), "--buffer-size") {
		t.Errorf("a 100-chain buffer loaded into a 50-chain one: %v", err)
	}
}

func TestSameSeedSameSamplesAndGlobalGeneratorUntouched(t *testing.T) {
	global, err := torch.DefaultGeneratorState()
	if err != nil {
		t.Fatal(err)
	}
	run := func() []float64 {
		store := torch.NewScope()
		defer store.Close()
		g := newGen(t, 5)
		b, err := NewReplayBuffer(store, g, 64, []int64{1, 2, 2}, 4, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		m := store.FromFloat32([]float32{1, 1, 1, 1}, 1, 4)
		e := func(s *torch.Scope, x, _ *torch.Tensor) *torch.Tensor {
			return quadratic(m)(s, s.Flatten(x, 1, -1), nil)
		}
		a := sampleOnce(t, b, g, e)
		s := torch.NewScope()
		defer s.Close()
		sr, err := ShortRun(s, g, e, 8, []int64{1, 2, 2}, nil, torch.CPU, Config{Steps: 3, LR: 1, Std: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		return append(a, floats(t, sr)...)
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different sample at %d: %v vs %v", i, a[i], b[i])
		}
	}
	after, err := torch.DefaultGeneratorState()
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(global) {
		t.Fatal("sampling drew from libtorch's global generator")
	}
}

func smallWRN(t testing.TB, store *torch.Scope, g *torch.Generator, width int) *nn.WideResNet {
	t.Helper()
	m, err := nn.NewWideResNet(nn.Init{Store: store, Gen: g, Dev: torch.CPU},
		nn.WRNConfig{Depth: 10, Width: width, Classes: 10, InChannels: 3, Norm: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNoLeakOverManySteps(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 6)
	m := smallWRN(t, store, g, 1)
	b, err := NewReplayBuffer(store, g, 40, []int64{3, 8, 8}, 10, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	e := JEMEnergy(m.Forward)
	step := func() {
		s := torch.NewScope()
		defer s.Close()
		if _, _, err := b.Sample(s, g, e, 4, nil, 0.05, Config{Steps: 5, LR: 1, Std: 0.01}); err != nil {
			t.Fatal(err)
		}
	}
	step()
	live := torch.LiveTensors()
	for i := 0; i < 20; i++ {
		step()
	}
	if d := torch.LiveTensors() - live; d != 0 {
		t.Fatalf("%d tensors leaked over 100 SGLD steps", d)
	}
	// Within one scope, each step's intermediates go with its child scope: the caller's scope
	// ends holding only the draw's results whatever the chain length.
	held := func(steps int) int {
		s := torch.NewScope()
		defer s.Close()
		if _, _, err := b.Sample(s, g, e, 4, nil, 0.05, Config{Steps: steps, LR: 1, Std: 0.01}); err != nil {
			t.Fatal(err)
		}
		return s.Len()
	}
	if a, z := held(1), held(10); a != z {
		t.Fatalf("the caller's scope holds %d tensors after 1 step, %d after 10", a, z)
	}
}

// TestWRNEnergyRises: SGLD on a WideResNet's logsumexp energy raises the energy of the samples.
func TestWRNEnergyRises(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 8)
	m := smallWRN(t, store, g, 1)
	e := JEMEnergy(m.Forward)
	s := torch.NewScope()
	defer s.Close()
	x0 := uniformNoise(s, g, []int64{8, 3, 16, 16}, torch.CPU)
	meanE := func(x *torch.Tensor) float64 {
		c := s.Child()
		c.SetGradEnabled(false)
		v := floats(t, e(c, x, nil))
		s.Merge(c)
		var sum float64
		for _, u := range v {
			sum += u
		}
		return sum / float64(len(v))
	}
	prev := meanE(x0)
	x := x0
	for round := 0; round < 3; round++ {
		next, err := SGLD(s, g, e, x, nil, Config{Steps: 5, LR: 1, Std: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		cur := meanE(next)
		t.Logf("after %d steps: mean energy %.5f (was %.5f)", 5*(round+1), cur, prev)
		if !(cur > prev) {
			t.Fatalf("energy fell from %.5f to %.5f", prev, cur)
		}
		prev, x = cur, next
	}
	// The conditional energy climbs too.
	y := s.FromInt64([]int64{0, 1, 2, 3, 4, 5, 6, 7})
	condE := func(x *torch.Tensor) float64 {
		c := s.Child()
		c.SetGradEnabled(false)
		v := floats(t, e(c, x, y))
		s.Merge(c)
		var sum float64
		for _, u := range v {
			sum += u
		}
		return sum
	}
	xc, err := SGLD(s, g, e, x0, y, Config{Steps: 10, LR: 1, Std: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if a, z := condE(x0), condE(xc); !(z > a) {
		t.Fatalf("conditional energy fell from %.5f to %.5f", a, z)
	}
}

func TestBytes(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(t, 1)
	b, err := NewReplayBuffer(store, g, 100, []int64{3, 32, 32}, 10, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Bytes(), int64(100*3*32*32*4); got != want {
		t.Fatalf("Bytes %d, want %d", got, want)
	}
	if b.Samples().Numel()*4 != b.Bytes() {
		t.Fatal("Bytes disagrees with the tensor")
	}
}

// BenchmarkSGLD times JEM's default chain (20 steps) on a wrn-10-2 at batch 64 on 32×32×3, beside
// one gradient of the logsumexp energy with respect to the parameters (a classifier training
// step's backward) for the ratio: a JEM step costs about Steps+1 of the latter.
func BenchmarkSGLD(b *testing.B) {
	store := torch.NewScope()
	defer store.Close()
	g := newGen(b, 1)
	m := smallWRN(b, store, g, 2)
	e := JEMEnergy(m.Forward)
	buf, err := NewReplayBuffer(store, g, 10000, []int64{3, 32, 32}, 0, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	b.Run("chain", func(b *testing.B) {
		for b.Loop() {
			s := torch.NewScope()
			if _, _, err := buf.Sample(s, g, e, 64, nil, 0.05, cfg); err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N*cfg.Steps), "ms/step")
	})
	b.Run("param-gradient", func(b *testing.B) {
		for b.Loop() {
			s := torch.NewScope()
			x := uniformNoise(s, g, []int64{64, 3, 32, 32}, torch.CPU)
			s.Backward(s.Mean(e(s, x, nil), nil, false))
			if err := s.Err(); err != nil {
				b.Fatal(err)
			}
			torch.ZeroGrad(m.Parameters())
			s.Close()
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/step")
	})
}

// The buffer is filled a block of chains at a time to keep its creation's memory at the buffer's
// size; the chains must still start from the values of one U(-1, 1) draw of the whole buffer, so
// that a run's chains do not depend on the block size.
func TestBufferStartsFromOneDraw(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	size := 2*noiseBlock + 37
	b, err := NewReplayBuffer(store, newGen(t, 7), size, []int64{1, 3, 3}, 0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	want := floats(t, uniformNoise(store, newGen(t, 7), []int64{int64(size), 1, 3, 3}, torch.CPU))
	got := floats(t, b.Samples())
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("chain %d value %d is %v, want %v from one draw", i/9, i%9, got[i], want[i])
		}
		if got[i] < -1 || got[i] >= 1 {
			t.Fatalf("value %d is %v, outside [-1, 1)", i, got[i])
		}
	}
}
