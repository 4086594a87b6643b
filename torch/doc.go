// Package torch is the Go binding over libtorch used by hdge-torch: tensors, per-step scopes that
// own and free them deterministically, the handful of ops the models need, autograd, fused Adam and
// SGD steps, and torch.save-compatible checkpoints.
//
// Every op is a method on a *Scope and its result belongs to that scope; the first failure sticks on
// the scope (see Scope.Err) so maths reads straight through. The C++ lives in a separate shared
// library (cgo/ built into build/libhdgetorch.so), so this package compiles without torch headers
// and the same Go binary runs against another libtorch by rebuilding only that library.
//
// Mixed precision is a scope setting like grad mode (Scope.SetPrecision): under BF16 or FP16 the
// scope's Conv2d, Linear and Matmul compute in that type from cached converted copies of the float32
// parameters, while parameters, gradients and optimiser state stay float32; ResolvePrecision picks
// the precision a device supports and GradScaler scales float16 losses.
//
// Threads: a Scope and its tensors are used from one goroutine at a time. libtorch's intra-op
// thread count is process-wide; set it with SetNumThreads.
package torch
