package torch

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The goldens were computed with one intra-op thread; reductions can round differently with more.
	SetNumThreads(1)
	os.Exit(m.Run())
}

// opFunc runs one golden case's op on its inputs.
type opFunc func(t *testing.T, s *Scope, in []*Tensor, p params) []*Tensor

func one(x *Tensor) []*Tensor { return []*Tensor{x} }

func unaryOp(f func(*Scope, *Tensor) *Tensor) opFunc {
	return func(_ *testing.T, s *Scope, in []*Tensor, _ params) []*Tensor { return one(f(s, in[0])) }
}

func binaryOp(f func(*Scope, *Tensor, *Tensor) *Tensor) opFunc {
	return func(_ *testing.T, s *Scope, in []*Tensor, _ params) []*Tensor { return one(f(s, in[0], in[1])) }
}

func scalarOp(f func(*Scope, *Tensor, float64) *Tensor, key string) opFunc {
	return func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor { return one(f(s, in[0], p.f(key))) }
}

func reduceOp(f func(*Scope, *Tensor, []int, bool) *Tensor) opFunc {
	return func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(f(s, in[0], p.ints("dims"), p.b("keep")))
	}
}

func dtypeOf(t *testing.T, name string) DType {
	for d := Float32; d <= Bool; d++ {
		if d.String() == name {
			return d
		}
	}
	if name == "" {
		return Float32
	}
	t.Fatalf("unknown dtype %q", name)
	return 0
}

func generator(t *testing.T, seed int) *Generator {
	g, err := NewGenerator(uint64(seed), CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

var ops = map[string]opFunc{
	"Add": binaryOp((*Scope).Add), "Sub": binaryOp((*Scope).Sub), "Mul": binaryOp((*Scope).Mul),
	"Div": binaryOp((*Scope).Div), "Minimum": binaryOp((*Scope).Minimum), "Maximum": binaryOp((*Scope).Maximum),
	"Eq": binaryOp((*Scope).Eq), "Matmul": binaryOp((*Scope).Matmul),
	"AddScalar": scalarOp((*Scope).AddScalar, "v"), "SubScalar": scalarOp((*Scope).SubScalar, "v"),
	"MulScalar": scalarOp((*Scope).MulScalar, "v"), "DivScalar": scalarOp((*Scope).DivScalar, "v"),
	"Pow": scalarOp((*Scope).Pow, "e"), "LeakyReLU": scalarOp((*Scope).LeakyReLU, "slope"),
	"Neg": unaryOp((*Scope).Neg), "Abs": unaryOp((*Scope).Abs), "Exp": unaryOp((*Scope).Exp),
	"Log": unaryOp((*Scope).Log), "Log1p": unaryOp((*Scope).Log1p), "Sqrt": unaryOp((*Scope).Sqrt),
	"Sign": unaryOp((*Scope).Sign), "Square": unaryOp((*Scope).Square), "ReLU": unaryOp((*Scope).ReLU),
	"Sigmoid": unaryOp((*Scope).Sigmoid), "Tanh": unaryOp((*Scope).Tanh),
	"Sum": reduceOp((*Scope).Sum), "Mean": reduceOp((*Scope).Mean), "LogSumExp": reduceOp((*Scope).LogSumExp),
	"Clamp": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Clamp(in[0], p.f("lo"), p.f("hi")))
	},
	"Where": func(_ *testing.T, s *Scope, in []*Tensor, _ params) []*Tensor {
		return one(s.Where(in[0], in[1], in[2]))
	},
	"Max": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		v, i := s.Max(in[0], p.i("dim"), p.b("keep"))
		return []*Tensor{v, i}
	},
	"Argmax": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Argmax(in[0], p.i("dim"), p.b("keep")))
	},
	"LogSoftmax": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.LogSoftmax(in[0], p.i("dim")))
	},
	"Softmax": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Softmax(in[0], p.i("dim")))
	},
	"Norm": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Norm(in[0], p.f("p"), p.ints("dims"), p.b("keep")))
	},
	"Normalize": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Normalize(in[0], p.f("p"), p.i("dim"), p.f("eps")))
	},
	"CrossEntropy": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.CrossEntropy(in[0], in[1], p.f("ls"), Reduction(p.i("red"))))
	},
	"Gather": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Gather(in[0], p.i("dim"), in[1]))
	},
	"IndexSelect": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.IndexSelect(in[0], p.i("dim"), in[1]))
	},
	"Cat": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor { return one(s.Cat(in, p.i("dim"))) },
	"Stack": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Stack(in, p.i("dim")))
	},
	"Einsum": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Einsum(p.s("eq"), in...))
	},
	"OneHot": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.OneHot(in[0], p.i("n")))
	},
	"Flip": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Flip(in[0], p.ints("dims")...))
	},
	"ReflectPad2d": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.ReflectPad2d(in[0], p.i("l"), p.i("r"), p.i("t"), p.i("b")))
	},
	"Reshape": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Reshape(in[0], p.int64s("shape")...))
	},
	"Transpose": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Transpose(in[0], p.i("d0"), p.i("d1")))
	},
	"Permute": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Permute(in[0], p.ints("dims")...))
	},
	"Narrow": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Narrow(in[0], p.i("dim"), int64(p.i("start")), int64(p.i("length"))))
	},
	"Squeeze": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Squeeze(in[0], p.i("dim")))
	},
	"Unsqueeze": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Unsqueeze(in[0], p.i("dim")))
	},
	"Flatten": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Flatten(in[0], p.i("start"), p.i("end")))
	},
	"ToDType": func(t *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.ToDType(in[0], dtypeOf(t, p.s("dtype"))))
	},
	"ContiguousT": func(_ *testing.T, s *Scope, in []*Tensor, _ params) []*Tensor {
		return one(s.Contiguous(s.Transpose(in[0], 0, 1)))
	},
	"Conv2d": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		var b *Tensor
		if len(in) > 2 {
			b = in[2]
		}
		return one(s.Conv2d(in[0], in[1], b, p.i("stride"), p.i("padding")))
	},
	"Linear": func(_ *testing.T, s *Scope, in []*Tensor, _ params) []*Tensor {
		var b *Tensor
		if len(in) > 2 {
			b = in[2]
		}
		return one(s.Linear(in[0], in[1], b))
	},
	"AvgPool2d": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.AvgPool2d(in[0], p.i("k"), p.i("s"), p.i("p")))
	},
	"MaxPool2d": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.MaxPool2d(in[0], p.i("k"), p.i("s"), p.i("p")))
	},
	"AvgPool2dExcludePad": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.AvgPool2dExcludePad(in[0], p.i("k"), p.i("s"), p.i("p")))
	},
	"InterpolateBilinear": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.InterpolateBilinear(in[0], p.i("h"), p.i("w"), p.b("ac")))
	},
	"Conv2dPadded": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.Conv2dPadded(in[0], in[1], nil, p.i("stride"), p.i("ph"), p.i("pw")))
	},
	"AdaptiveAvgPool2d": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.AdaptiveAvgPool2d(in[0], p.i("oh"), p.i("ow")))
	},
	"Dropout": func(t *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		// A generator seeded as torch.manual_seed seeds the default one draws the same mask.
		g, err := NewGenerator(uint64(p.i("seed")), CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		return one(s.Dropout(in[0], p.f("p"), p.b("train"), g))
	},
	"BatchNorm": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		rm, rv := s.Clone(in[3]), s.Clone(in[4])
		y := s.BatchNorm(in[0], in[1], in[2], rm, rv, p.b("train"), p.f("momentum"), p.f("eps"))
		return []*Tensor{y, rm, rv}
	},
	"BatchNormBare": func(_ *testing.T, s *Scope, in []*Tensor, p params) []*Tensor {
		return one(s.BatchNorm(in[0], nil, nil, nil, nil, p.b("train"), p.f("momentum"), p.f("eps")))
	},
	"Zeros": func(_ *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Zeros(p.int64s("shape"), Float32, CPU))
	},
	"Ones": func(t *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Ones(p.int64s("shape"), dtypeOf(t, p.s("dtype")), CPU))
	},
	"Full": func(_ *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Full(p.int64s("shape"), p.f("v"), Float32, CPU))
	},
	"Arange": func(_ *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Arange(int64(p.i("n")), Int64, CPU))
	},
	"Randn": func(t *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Randn(generator(t, p.i("seed")), p.int64s("shape"), Float32, CPU))
	},
	"Rand": func(t *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.Rand(generator(t, p.i("seed")), p.int64s("shape"), Float32, CPU))
	},
	"RandInt": func(t *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		return one(s.RandInt(generator(t, p.i("seed")), int64(p.i("low")), int64(p.i("high")), p.int64s("shape"), CPU))
	},
	"RandnDefault": func(_ *testing.T, s *Scope, _ []*Tensor, p params) []*Tensor {
		ManualSeed(uint64(p.i("seed")))
		return one(s.Randn(nil, p.int64s("shape"), Float32, CPU))
	},
}

// TestOpParity runs every golden case forward and, where PyTorch recorded gradients, backward
// through sum(out_i * gout_i), comparing outputs and input gradients.
func TestOpParity(t *testing.T) {
	g := loadGoldens(t)
	seen := map[string]bool{}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			f, ok := ops[c.Op]
			if !ok {
				t.Fatalf("no Go op for golden op %q", c.Op)
			}
			seen[c.Op] = true
			s := NewScope()
			defer s.Close()
			in := make([]*Tensor, len(c.Inputs))
			for i, gt := range c.Inputs {
				in[i] = gt.tensor(t, s, c.Grad[i])
			}
			outs := f(t, s, in, c.Params)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if len(outs) != len(c.Outputs) {
				t.Fatalf("%d outputs, want %d", len(outs), len(c.Outputs))
			}
			for i, o := range outs {
				expectClose(t, "output "+string(rune('0'+i)), o, c.Outputs[i], c.Atol, c.Rtol)
			}
			if c.Grads == nil {
				return
			}
			var loss *Tensor
			for i, gout := range c.Gouts {
				if gout == nil {
					continue
				}
				term := s.Sum(s.Mul(outs[i], gout.tensor(t, s, false)), nil, false)
				if loss == nil {
					loss = term
				} else {
					loss = s.Add(loss, term)
				}
			}
			s.Backward(loss)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			for i, want := range c.Grads {
				if want == nil {
					continue
				}
				expectClose(t, "grad of input "+string(rune('0'+i)), s.Grad(in[i]), want, c.Atol, c.Rtol)
			}
		})
	}
	for name := range ops {
		if !seen[name] {
			t.Errorf("op %s has no golden case", name)
		}
	}
}

// TestGradientsParity checks Gradients (torch.autograd.grad) for an input gradient of an energy
// (logsumexp of an MLP's logits), the quantity SGLD-style samplers need.
func TestGradientsParity(t *testing.T) {
	g := loadGoldens(t).Gradients
	s := NewScope()
	defer s.Close()
	x := g["x"].tensor(t, s, true)
	w1, w2 := g["w1"].tensor(t, s, false), g["w2"].tensor(t, s, false)
	energy := s.LogSumExp(s.Linear(s.Tanh(s.Linear(x, w1, nil)), w2, nil), []int{1}, false)
	grads := s.Gradients([]*Tensor{energy}, []*Tensor{x}, false)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	expectClose(t, "energy", energy, g["energy"], 1e-5, 1e-5)
	expectClose(t, "d energy / dx", grads[0], g["grad"], 1e-5, 1e-5)
	if gx := s.Grad(x); gx != nil {
		t.Errorf("Gradients accumulated into x.grad")
	}
	// createGraph makes the input gradient differentiable (a gradient penalty needs this). The
	// first call freed the graph (retain_graph defaults to create_graph), so rebuild it.
	energy = s.LogSumExp(s.Linear(s.Tanh(s.Linear(x, w1, nil)), w2, nil), []int{1}, false)
	grads = s.Gradients([]*Tensor{energy}, []*Tensor{x}, true)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	pen := s.Sum(s.Square(grads[0]), nil, false)
	s.Backward(pen)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if gx := s.Grad(x); gx == nil {
		t.Errorf("second-order backward left no gradient on x")
	}
}
