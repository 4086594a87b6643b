package torch

import (
	"errors"
	"strings"
	"testing"
)

// expectTorchError checks err is a *Error for op whose message contains want.
func expectTorchError(t *testing.T, err error, op, want string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *torch.Error", err, err)
	}
	if te.Op != op || !strings.Contains(te.Msg, want) {
		t.Fatalf("error %q: want op %q and a message containing %q", err, op, want)
	}
	if strings.Contains(te.Msg, "Exception raised from") {
		t.Errorf("message carries a C++ backtrace: %q", te.Msg)
	}
}

// expectWorks runs a small op in a fresh scope after a failure: the process must be unharmed.
func expectWorks(t *testing.T) {
	t.Helper()
	s := NewScope()
	defer s.Close()
	x := s.Matmul(s.FromFloat32([]float32{1, 2, 3, 4}, 2, 2), s.FromFloat32([]float32{1, 1}, 2, 1))
	got, err := x.Float32s()
	if err != nil || s.Err() != nil || len(got) != 2 || got[0] != 3 || got[1] != 7 {
		t.Fatalf("op after an error: %v %v %v", got, err, s.Err())
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name, op, msg string
		run           func(s *Scope)
	}{
		{"mismatched shapes", "Matmul", "cannot be multiplied", func(s *Scope) {
			s.Matmul(s.Ones([]int64{2, 3}, Float32, CPU), s.Ones([]int64{2, 3}, Float32, CPU))
		}},
		{"broadcast mismatch", "Add", "must match the size", func(s *Scope) {
			s.Add(s.Ones([]int64{3}, Float32, CPU), s.Ones([]int64{4}, Float32, CPU))
		}},
		{"wrong dtype", "IndexSelect", "int", func(s *Scope) {
			s.IndexSelect(s.Ones([]int64{4, 2}, Float32, CPU), 0, s.Ones([]int64{1}, Float32, CPU))
		}},
		{"conv on int64", "Conv2d", "", func(s *Scope) {
			s.Conv2d(s.Ones([]int64{1, 1, 4, 4}, Int64, CPU), s.Ones([]int64{1, 1, 3, 3}, Float32, CPU), nil, 1, 0)
		}},
		{"index out of range", "IndexSelect", "out of range", func(s *Scope) {
			s.IndexSelect(s.Ones([]int64{4, 2}, Float32, CPU), 0, s.FromInt64([]int64{10}))
		}},
		{"gather out of range", "Gather", "out of bounds", func(s *Scope) {
			s.Gather(s.Ones([]int64{2, 3}, Float32, CPU), 1, s.FromInt64([]int64{0, 7}, 2, 1))
		}},
		{"dim out of range", "Sum", "Dimension out of range", func(s *Scope) {
			s.Sum(s.Ones([]int64{2, 3}, Float32, CPU), []int{5}, false)
		}},
		{"channels-last of a 2-d tensor", "ChannelsLast", "rank 4", func(s *Scope) {
			s.ChannelsLast(s.Ones([]int64{2, 3}, Float32, CPU))
		}},
		{"bad reshape", "Reshape", "invalid for input of size", func(s *Scope) {
			s.Reshape(s.Ones([]int64{2, 3}, Float32, CPU), 4, 2)
		}},
		{"data and shape disagree", "FromFloat32", "needs 6 elements", func(s *Scope) {
			s.FromFloat32([]float32{1, 2, 3}, 2, 3)
		}},
		{"cross entropy class out of range", "CrossEntropy", "out of bounds", func(s *Scope) {
			s.CrossEntropy(s.Zeros([]int64{2, 3}, Float32, CPU), s.FromInt64([]int64{0, 5}), 0, Mean)
		}},
		{"backward of non-scalar", "Backward", "scalar", func(s *Scope) {
			x := s.Ones([]int64{3}, Float32, CPU)
			_ = x.SetRequiresGrad(true)
			s.Backward(s.MulScalar(x, 2))
		}},
		{"no CUDA device", "Zeros", "", func(s *Scope) {
			if CUDAAvailable() {
				s.Zeros([]int64{1}, Float32, CUDA(CUDADeviceCount()+3))
				return
			}
			s.Zeros([]int64{1}, Float32, CUDA(0))
		}},
		{"freed input", "Exp", "freed", func(s *Scope) {
			x := s.Ones([]int64{1}, Float32, CPU)
			x.Free()
			s.Exp(x)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewScope()
			c.run(s)
			expectTorchError(t, s.Err(), c.op, c.msg)
			first := s.Err()
			// Sticky: later ops do nothing and the first error stays.
			if r := s.AddScalar(s.Ones([]int64{1}, Float32, CPU), 1); r != nil {
				t.Errorf("op after an error returned a tensor")
			}
			if s.Err() != first {
				t.Errorf("error changed from %v to %v", first, s.Err())
			}
			s.Close()
			expectWorks(t)
		})
	}
}

func TestTensorMethodErrors(t *testing.T) {
	s := NewScope()
	defer s.Close()
	_, err := s.Ones([]int64{3}, Float32, CPU).Item()
	expectTorchError(t, err, "Item", "cannot be converted to Scalar")
	expectWorks(t)
	err = s.Ones([]int64{3}, Float32, CPU).CopyFromFloat32([]float32{1, 2})
	expectTorchError(t, err, "CopyFromFloat32", "3 elements")
	expectWorks(t)
	x := s.Ones([]int64{2}, Float32, CPU)
	y := s.MulScalar(x, 2)
	err = y.SetRequiresGrad(true)
	if err == nil && !y.RequiresGrad() {
		t.Errorf("SetRequiresGrad on a non-leaf neither failed nor took effect")
	}
	x.Free()
	if _, err := x.Float32s(); err == nil {
		t.Errorf("Float32s of a freed tensor succeeded")
	}
	_, err = NewGenerator(1, Device{Kind: "tpu"})
	expectTorchError(t, err, "NewGenerator", "unknown device")
	g, err := NewGenerator(1, CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	expectTorchError(t, g.SetState([]byte{1, 2, 3}), "Generator.SetState", "")
	expectWorks(t)
	if _, err := ParseDevice("gpu"); err == nil {
		t.Errorf("ParseDevice(gpu) succeeded")
	}
	if d, err := ParseDevice("cuda:2"); err != nil || d != CUDA(2) || d.String() != "cuda:2" {
		t.Errorf("ParseDevice(cuda:2) = %v, %v", d, err)
	}
	s.Close()
	s.Close() // idempotent
	if r := s.Ones([]int64{1}, Float32, CPU); r != nil || s.Err() == nil {
		t.Errorf("op on a closed scope: %v, err %v", r, s.Err())
	}
}
