package nn

import (
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hdge-torch/hdge-torch/torch"
)

// TestContrastiveGoldens compares SupConLoss and NTXentLoss, value and gradient with respect to
// the features, with the loop-over-anchors reference of testdata/make_contrastive_goldens.py. In
// float64 the two agree to 1e-10 of the value's scale (the same sums in another order); in
// float32, with logits up to 1/0.07 ≈ 14, to 2e-5 of the scale.
func TestContrastiveGoldens(t *testing.T) {
	store := torch.NewScope()
	defer store.Close()
	blob, err := torch.Load(store, filepath.Join("testdata", "contrastive_goldens.pt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range blob {
		if name, ok := strings.CutSuffix(k, ".features"); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) != 9 {
		t.Fatalf("%d golden cases: %v", len(names), names)
	}
	for _, name := range names {
		for _, dt := range []torch.DType{torch.Float64, torch.Float32} {
			t.Run(name+"/"+dt.String(), func(t *testing.T) {
				tol := 1e-10
				if dt == torch.Float32 {
					tol = 2e-5
				}
				s := torch.NewScope()
				defer s.Close()
				params, _ := blob[name+".params"].Float64s()
				f := s.ToDType(blob[name+".features"], dt)
				if err := f.SetRequiresGrad(true); err != nil {
					t.Fatal(err)
				}
				var loss *torch.Tensor
				if params[0] == 0 {
					loss, err = SupConLoss(s, f, blob[name+".labels"], SupConConfig{Temperature: params[1], BaseTemperature: params[2]})
				} else {
					loss, err = NTXentLoss(s, f, params[1])
				}
				if err != nil {
					t.Fatal(err)
				}
				g := s.Gradients([]*torch.Tensor{loss}, []*torch.Tensor{f}, false)
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				got, _ := loss.Item()
				want, _ := blob[name+".loss"].Item()
				if math.IsNaN(got) || math.Abs(got-want) > tol*max(1, math.Abs(want)) {
					t.Errorf("loss %.12g, reference %.12g", got, want)
				}
				gg, _ := g[0].Float64s()
				wg, _ := blob[name+".grad"].Float64s()
				scale := 0.0
				for _, v := range wg {
					scale = max(scale, math.Abs(v))
				}
				for i := range wg {
					if math.IsNaN(gg[i]) || math.Abs(gg[i]-wg[i]) > tol*max(1, scale) {
						t.Fatalf("grad[%d] = %.12g, reference %.12g (largest %g)", i, gg[i], wg[i], scale)
					}
				}
			})
		}
	}
}

// TestNTXentIsUnsupervisedSupCon: the two losses agree where the definitions say they must.
func TestNTXentIsUnsupervisedSupCon(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	gen, err := torch.NewGenerator(3, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	f := s.Normalize(s.Randn(gen, []int64{10, 2, 32}, torch.Float32, torch.CPU), 2, 2, 1e-12)
	nt, err := NTXentLoss(s, f, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := SupConLoss(s, f, nil, SupConConfig{Temperature: 0.2, BaseTemperature: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	// Distinct labels make the supervised loss the unsupervised one.
	distinct := s.Arange(10, torch.Int64, torch.CPU)
	sd, err := SupConLoss(s, f, distinct, SupConConfig{Temperature: 0.2, BaseTemperature: 0.2})
	if err != nil || s.Err() != nil {
		t.Fatal(err, s.Err())
	}
	a, _ := nt.Item()
	b, _ := sc.Item()
	c, _ := sd.Item()
	if math.Abs(a-b) > 1e-5*a || math.Abs(b-c) > 1e-6*b {
		t.Errorf("NT-Xent %v, SupCon without labels %v, with distinct labels %v", a, b, c)
	}
}

func TestContrastiveBadInputs(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	f3 := s.Zeros([]int64{4, 2, 8}, torch.Float32, torch.CPU)
	lab := s.Zeros([]int64{4}, torch.Int64, torch.CPU)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"2-d features", second(SupConLoss(s, s.Zeros([]int64{4, 8}, torch.Float32, torch.CPU), lab, DefaultSupCon())), "want [batch, views >= 1, dim]"},
		{"labels of another batch", second(SupConLoss(s, f3, s.Zeros([]int64{5}, torch.Int64, torch.CPU), DefaultSupCon())), "labels have shape [5] for 4 samples"},
		{"float labels", second(SupConLoss(s, f3, s.Zeros([]int64{4}, torch.Float32, torch.CPU), DefaultSupCon())), "want int64"},
		{"int features", second(SupConLoss(s, s.Zeros([]int64{4, 2, 8}, torch.Int64, torch.CPU), lab, DefaultSupCon())), "want a floating type"},
		{"temperature 0", second(SupConLoss(s, f3, lab, SupConConfig{Temperature: 0, BaseTemperature: 0.07})), "supcon temperature 0"},
		{"base NaN", second(SupConLoss(s, f3, lab, SupConConfig{Temperature: 0.1, BaseTemperature: math.NaN()})), "supcon base temperature NaN"},
		{"nt-xent 3 views", second(NTXentLoss(s, s.Zeros([]int64{4, 3, 8}, torch.Float32, torch.CPU), 0.5)), "3 views, want 2"},
		{"nt-xent 1 view", second(NTXentLoss(s, s.Zeros([]int64{4, 1, 8}, torch.Float32, torch.CPU), 0.5)), "views >= 2"},
		{"nt-xent batch 1", second(NTXentLoss(s, s.Zeros([]int64{1, 2, 8}, torch.Float32, torch.CPU), 0.5)), "no negatives"},
		{"nt-xent temperature", second(NTXentLoss(s, f3, -1)), "nt-xent temperature -1"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
	if s.Err() != nil {
		t.Fatalf("a rejected input reached libtorch: %v", s.Err())
	}
}

func second(_ *torch.Tensor, err error) error { return err }

// TestSupConNoLeak: the loss keeps only its result in s.
func TestSupConNoLeak(t *testing.T) {
	before := torch.LiveTensors()
	s := torch.NewScope()
	f := s.Normalize(s.Randn(nil, []int64{6, 2, 4}, torch.Float32, torch.CPU), 2, 2, 1e-12)
	n := s.Len()
	if _, err := SupConLoss(s, f, s.FromInt64(slices.Repeat([]int64{0, 1}, 3), 6), DefaultSupCon()); err != nil || s.Err() != nil {
		t.Fatal(err, s.Err())
	}
	if s.Len() != n+2 { // the labels and the loss
		t.Errorf("scope grew by %d tensors, want 2", s.Len()-n)
	}
	s.Close()
	if after := torch.LiveTensors(); after != before {
		t.Errorf("%d live tensors after, %d before", after, before)
	}
}
