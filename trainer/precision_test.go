package trainer

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hdge-torch/hdge-torch/data"
	"github.com/hdge-torch/hdge-torch/model"
	"github.com/hdge-torch/hdge-torch/torch"
)

// TestBF16StepKeepsHDGEInFP32: under bf16 the convolutions and linear layers compute in bf16, but
// the logits the objective sees, HDGE's contrastive term, its queue and the parameters and Adam
// state stay fp32, and the step's loss is close to the same step in fp32.
func TestBF16StepKeepsHDGEInFP32(t *testing.T) {
	losses := map[torch.Precision]map[string]float64{}
	for _, prec := range []torch.Precision{torch.FP32, torch.BF16} {
		cfg := Defaults()
		cfg.Model, cfg.Norm, cfg.QueueSize, cfg.BatchSize = "wrn-10-1", "batch", 64, 8
		m, err := model.Build(cfg.modelSettings(), 1, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		gen, err := torch.NewGenerator(2, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer gen.Close()
		obj, err := NewObjective(Env{Config: cfg, Classes: 10, Shape: [3]int{1, 12, 12}, Model: m, Gen: gen, Dev: m.Dev})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		opt := NewOptimizer(cfg, m.Parameters())
		defer opt.Close()
		r := rand.New(rand.NewPCG(3, 4))
		b := data.Batch{X: make([]float32, 8*12*12), Y: make([]int64, 8)}
		for i := range b.X {
			b.X[i] = float32(r.NormFloat64())
		}
		for i := range b.Y {
			b.Y[i] = int64(r.IntN(10))
		}
		in := StepInput{Model: m, Opt: opt, Params: m.Parameters(), Obj: obj, Gen: gen, Shape: [3]int{1, 12, 12}, Precision: prec}
		v, err := TrainStep(in, b)
		if err != nil {
			t.Fatal(err)
		}
		losses[prec] = v
		s := torch.NewScope()
		for name, st := range obj.State(s) {
			if name != "queue_ptr" && st.DType() != torch.Float32 {
				t.Errorf("%s: objective state %s is %s, want float32", prec, name, st.DType())
			}
		}
		for k, st := range opt.State() {
			if st.DType() != torch.Float32 && st.Numel() > 1 {
				t.Errorf("%s: optimiser state %s is %s", prec, k, st.DType())
			}
		}
		for _, p := range m.StateDict() {
			if !p.Buffer && p.T.DType() != torch.Float32 {
				t.Errorf("%s: parameter %s is %s", prec, p.Name, p.T.DType())
			}
		}
		// The logits an objective sees are fp32.
		s.SetPrecision(prec)
		s.SetGradEnabled(false)
		x := s.FromFloat32(b.X, 8, 1, 12, 12)
		if d := m.Forward(s, x, false).DType(); d != torch.Float32 {
			t.Errorf("%s: logits are %s", prec, d)
		}
		s.Close()
	}
	for _, k := range []string{"loss", "loss_ce", "loss_gen"} {
		a, b := losses[torch.FP32][k], losses[torch.BF16][k]
		// bf16 keeps 8 bits of mantissa: one rounding is 2^-8 ≈ 0.4 %; through a few layers the
		// loss moves by well under 5 %.
		if math.Abs(a-b) > 0.05*math.Abs(a) {
			t.Errorf("%s: fp32 %v, bf16 %v", k, a, b)
		}
	}
}
