package torch_test

import (
	"fmt"

	"github.com/hdge-torch/hdge-torch/torch"
)

// A scope owns every tensor its ops make and frees them all on Close; the first error sticks to
// the scope, so a chain of ops reads like the maths and is checked once.
func ExampleScope() {
	s := torch.NewScope()
	defer s.Close()
	w := s.FromFloat32([]float32{1, 2, 3}, 3)
	if err := w.SetRequiresGrad(true); err != nil {
		fmt.Println(err)
		return
	}
	loss := s.Sum(s.Square(w), nil, false) // Σ w², whose gradient is 2w
	s.Backward(loss)
	g, err := s.Grad(w).Float32s()
	if err := s.Err(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(g, err)

	// A mistake is an error value naming the op, not a crash.
	s.Matmul(w, s.FromFloat32([]float32{1, 2}, 2))
	fmt.Println(s.Err() != nil)
	// Output:
	// [2 4 6] <nil>
	// true
}
